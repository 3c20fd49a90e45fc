"""What every tab's handlers share: the workspaces, the job manager, and whether the Hub is reachable."""
from __future__ import annotations

import functools
import inspect
import logging
import time
from dataclasses import asdict, dataclass

import gradio as gr

from demo import notice as notices
from demo.housekeeping import Housekeeper
from demo.jobs import JobManager, failure_message
from demo.space import Place
from demo.workspace import Workspace, Workspaces
from engine import config
from engine.config import DEFAULT_RECIPE
from engine.errors import UserError


@dataclass
class Context:
    workspaces: Workspaces
    jobs: JobManager
    offline: bool
    place: Place = Place()  # a laptop, or a (ZeroGPU) Space: defaults and caps follow
    housekeeper: Housekeeper | None = None  # sweeps idle sessions' files now and then (see demo/housekeeping.py)

    def workspace(self, key) -> Workspace:
        if self.housekeeper is not None:
            self.housekeeper.maybe_sweep()
        return self.workspaces.get(key)

    def recipe(self, name: str = DEFAULT_RECIPE) -> dict:
        """Every training value of a named recipe (engine/config.py), within this place's caps. The Train tab
        starts from the default one online and offline (its weights are built in); on a Space, a recipe asking for
        more epochs or pixels than the Space allows is cut down to the cap rather than refused."""
        cfg, caps = config.recipe(name), self.place.limits
        values = asdict(cfg)
        for field, cap in (("epochs", caps.epochs_cap(cfg.resolved_strategy())), ("freeze_epochs", caps.max_epochs),
                           ("img_size", caps.max_img_size), ("batch_size", caps.max_batch_size)):
            values[field] = min(values[field], cap)
        return values

    def stop_latest(self, key, kind: str) -> None:
        """Ask the workspace's running job of this kind to stop (it ends after its current step)."""
        ws = self.workspace(key)
        job = self.jobs.latest(ws.key, kind)
        if job is not None and not job.finished:
            self.jobs.stop(job.id, ws.key)

    def follow(self, owner: str, job, interval: float):
        """A job's new events and latest state, at most once per `interval` seconds (always the final state).

        Pages only need a few updates a second; the events in between are batched, never dropped.
        """
        pending, last = [], 0.0
        job_id = job.id
        for new_events, job in self.jobs.follow(job_id, owner, start=0):  # noqa: B020 (job: its latest state)
            pending += new_events
            now = time.monotonic()
            if job.finished or now - last >= interval:
                yield pending, job
                pending, last = [], now


log = logging.getLogger("snapfit.demo")


def user_errors(fn=None, *, notice: str = "notice"):
    """Show any failure in words, never a traceback or Gradio's bare "Error".

    An expected problem (a UserError) sent from the page is returned as text in the tab's notice beside the action
    (the handler's second argument, a tab's UI, names it: its attribute `notice`), and every other output keeps
    its value; a successful call clears that notice. From an API client, or where there is no notice, it is raised
    as a gr.Error with the message as is (long quoted inputs shortened). The terminal gets one line per expected
    problem (its traceback only at debug level). Anything else is a bug: logged with its traceback and shown as
    "Internal error (Type): message" on one line, like a failed job. The app keeps serving either way.
    """
    if fn is None:
        return functools.partial(user_errors, notice=notice)
    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def gen_wrapper(*args, **kwargs):
            place = _notice_of(args, notice)
            try:
                for update in fn(*args, **kwargs):
                    if place is not None and isinstance(update, dict):
                        update, place = {place: "", **update}, None  # cleared with the first update
                    yield update
            except gr.Error:
                raise
            except Exception as exc:
                yield _failure(fn, exc, _notice_of(args, notice))
        return gen_wrapper

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        place = _notice_of(args, notice)
        try:
            result = fn(*args, **kwargs)
        except gr.Error:
            raise
        except Exception as exc:
            return _failure(fn, exc, place)
        return {place: "", **result} if place is not None and isinstance(result, dict) else result
    return wrapper


def _notice_of(args: tuple, name: str):
    """The notice of the tab whose UI a handler was given (handlers take the context, then the UI)."""
    return getattr(args[1], name, None) if len(args) > 1 else None


def _failure(fn, exc: Exception, place) -> dict:
    """What the page gets for a failed call: the notice's text (an expected problem, from the page), else a gr.Error."""
    message = failure_message(exc)
    if not isinstance(exc, UserError):
        log.error("%s failed", fn.__name__, exc_info=exc)
    else:
        log.warning("%s: %s", fn.__name__, message)  # expected: one line, not a traceback
        log.debug("%s: the UserError's traceback", fn.__name__, exc_info=exc)
        if place is not None and notices.from_page():
            return {place: notices.text(message)}
    # print_exception=False: a bug's traceback is logged above, once; an expected problem needs none
    raise gr.Error(message, duration=None, print_exception=False) from exc
