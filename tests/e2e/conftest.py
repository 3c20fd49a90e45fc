"""Browser-test fixtures: a live Snapfit server on a free port, and Debian's Chromium driven by Playwright.

The tests skip (with the reason) when Chromium or Playwright is missing, except on CI (CI=true), where a
missing browser is a broken set-up and fails loudly instead. Never run `playwright install` here: the tests
use /usr/bin/chromium (Debian's package), not a downloaded browser.
"""
from __future__ import annotations

import os
import socket
import tempfile

# tests/conftest.py (always loaded first) sets the offline/quiet environment and imports engine.
import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update"]
VIEWPORT = {"width": 1280, "height": 900}


def _on_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def _unavailable(reason: str):
    if _on_ci():
        pytest.fail(f"{reason} (CI=true: browser tests must run on CI, so this fails instead of skipping)")
    pytest.skip(reason)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def browser():
    """One headless Chromium for the whole session; each test opens its own context (fresh localStorage)."""
    if not os.path.exists(CHROMIUM):
        _unavailable(f"{CHROMIUM} is missing: install Debian's chromium package (apt-get install -y chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("Python playwright is not installed (pip install -r requirements-dev.txt)")
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser):
    yield from new_page(browser)


def new_page(browser, **context_options):
    """A page in a fresh context of `browser` (fresh localStorage), closed after the test."""
    from playwright.sync_api import expect

    # Generous: the server shares two CPU cores with training. Long waits (training) use their own limits.
    expect.set_options(timeout=30_000)
    context = browser.new_context(viewport=VIEWPORT, **context_options)
    context.set_default_timeout(30_000)
    try:
        yield context.new_page()
    finally:
        context.close()


@pytest.fixture
def app():
    """A fresh Snapfit server (offline mode, its own workspaces and job manager) and its URL.

    On teardown every job the test started is asked to stop and awaited, so no training thread from one
    test keeps the CPU busy during the next.
    """
    from demo import build_demo, launch_kwargs
    from demo.workspace import Workspaces
    from tests.live_app import TrackingJobs

    jobs = TrackingJobs(max_running=1)
    demo = build_demo(offline=True, workspaces=Workspaces(tempfile.mkdtemp(prefix="ws-")), jobs=jobs)
    _, url, _ = demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=_free_port(), quiet=True,
                            **launch_kwargs())
    try:
        yield url, jobs
    finally:
        jobs.stop_all(timeout=60)
        demo.close()
