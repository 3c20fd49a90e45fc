"""Fixtures for calling the app's handlers directly, without a server."""
from types import SimpleNamespace

import gradio as gr
import pytest

from demo import build_page
from demo.context import Context
from demo.jobs import JobManager
from demo.workspace import Workspaces


@pytest.fixture
def ctx(tmp_path):
    return Context(Workspaces(tmp_path / "ws"), JobManager(), offline=True)


@pytest.fixture
def ui(ctx):
    """The page as the app builds it (not launched): what the tabs share."""
    with gr.Blocks():
        return build_page(ctx)


@pytest.fixture
def from_page():
    """Handle calls as Gradio does for the app's own page: its requests carry x-gradio-user: app."""
    from gradio.context import LocalContext

    token = LocalContext.request.set(SimpleNamespace(headers={"x-gradio-user": "app"}))
    yield
    LocalContext.request.reset(token)
