"""Where an expected problem is told on the page: a `Notice` beside the button a person pressed.

Gradio shows a raised gr.Error as a red toast and puts an "Error" badge over every output of the event, hiding
what they held: a failed Hub load blanked the dataset that was still loaded. So for a request from the page, an
expected problem (a UserError) is returned as text in the action's notice, and every other output keeps its value
(demo/context.py, `user_errors`). API callers still get the error itself: for them the notice does not exist.
"""
from __future__ import annotations

import gradio as gr
from gradio.context import LocalContext

PAGE = "app"  # the x-gradio-user header Gradio's own front end sends; gradio_client sends "api"

from gradio.events import Dependency

class Notice(gr.Markdown):
    """A Markdown line that is not part of the API (like a Button's state): only the page shows it.

    Gradio writes a type stub for every component class it sees (demo/notice.pyi, kept in git so that it is not
    rewritten on each start).
    """

    is_template = True  # Gradio: draw it with the parent's front-end component, Markdown

    @property
    def skip_api(self) -> bool:
        return True
    from typing import Callable, Literal, Sequence, Any, TYPE_CHECKING
    from gradio.blocks import Block
    if TYPE_CHECKING:
        from gradio.components import Timer
        from gradio.components.base import Component


def notice(elem_id: str) -> Notice:
    return Notice("", elem_id=elem_id, elem_classes=["snapfit-notice"])


def text(message: str) -> str:
    """A problem as the notice shows it."""
    return f"⚠️ {message}"


def from_page() -> bool:
    """Whether the event being handled was sent by the app's own page (not by an API client)."""
    request = LocalContext.request.get(None)
    headers = getattr(request, "headers", None) or {}
    return headers.get("x-gradio-user") == PAGE