"""What every tab's handlers share: the workspaces, the job manager, and whether the Hub is reachable."""
from __future__ import annotations

import functools
import inspect
import logging
import time
from dataclasses import asdict, dataclass

import gradio as gr

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


def user_errors(fn):
    """Show any failure as a readable gr.Error, never a traceback or Gradio's bare "Error".

    A UserError's message is shown as is (long quoted inputs shortened); anything else is logged with its
    traceback and shown as "Internal error (Type): message" on one line, like a failed job. The app keeps
    serving either way.
    """
    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def gen_wrapper(*args, **kwargs):
            try:
                yield from fn(*args, **kwargs)
            except gr.Error:
                raise
            except Exception as exc:
                raise _as_gr_error(fn, exc) from exc
        return gen_wrapper

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except Exception as exc:
            raise _as_gr_error(fn, exc) from exc
    return wrapper


def _as_gr_error(fn, exc: Exception) -> gr.Error:
    if not isinstance(exc, UserError):
        log.error("%s failed", fn.__name__, exc_info=exc)
    return gr.Error(failure_message(exc), duration=None)
