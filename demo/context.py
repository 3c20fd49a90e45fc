"""What every tab's handlers share: the workspaces, the job manager, and whether the Hub is reachable."""
from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from demo.jobs import JobManager
from demo.workspace import Workspace, Workspaces
from engine.errors import UserError


@dataclass
class Context:
    workspaces: Workspaces
    jobs: JobManager
    offline: bool

    def workspace(self, key) -> Workspace:
        return self.workspaces.get(key)


def user_errors(fn):
    """Turn a UserError into a gr.Error (a readable message in the page, not a traceback)."""
    import functools
    import inspect

    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def gen_wrapper(*args, **kwargs):
            try:
                yield from fn(*args, **kwargs)
            except UserError as exc:
                raise gr.Error(str(exc), duration=None) from exc
        return gen_wrapper

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except UserError as exc:
            raise gr.Error(str(exc), duration=None) from exc
    return wrapper
