"""Two people on one server, in two separate Chromium contexts (separate storage, as two browsers): they train
at the same time with one training slot, see only their own job, queue place, model and log, and each finds
its own job again after closing or reloading its tab. The first training is held at a step by a gate in the
server's job thread (tests/faults.py), so "while it runs" is arranged, not timed."""
from __future__ import annotations

import re

import pytest

from tests.e2e.conftest import VIEWPORT
from tests.e2e.test_browser import TRAIN_TIMEOUT, assert_calm, open_app, start_training, tab, wait_for_text
from tests.faults import Fault, injected

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
RUNNING = re.compile(r"Preparing|Epoch \d").search



def test_two_browsers_share_the_server_not_their_work(app, browser, tmp_path):
    from playwright.sync_api import expect

    url, jobs = app
    expect.set_options(timeout=30_000)
    one, two = browser.new_context(viewport=VIEWPORT), browser.new_context(viewport=VIEWPORT)
    try:
        a, b = one.new_page(), two.new_page()
        with injected(Fault(hold=True)) as fault:
            open_app(a, url)
            open_app(b, url)
            start_training(a, epochs=1)
            assert fault.wait_arrived(1), "the first training never started"
            wait_for_text(a, "#train-status", RUNNING, timeout=60)
            start_training(b, epochs=2)
            wait_for_text(b, "#train-status", "Waiting for a free training slot: position 1 in the queue", timeout=60)
            assert len({job.owner for job in jobs.submitted}) == 2

            # A closes its tab and comes back in a new one; B reloads. Each finds its own job, not the other's.
            a.close()
            a = one.new_page()
            open_app(a, url)
            tab(a, "Train").click()
            wait_for_text(a, "#train-status", RUNNING, timeout=60)
            b.reload()
            open_app(b, url)
            tab(b, "Train").click()
            wait_for_text(b, "#train-status", "position 1 in the queue", timeout=60)
            expect(b.get_by_label("number input for Epochs", exact=True)).to_have_value("2")
            expect(a.get_by_label("number input for Epochs", exact=True)).to_have_value("1")
            b.screenshot(path=str(tmp_path / "queued.png"), full_page=True)
            queued = next(job for job in jobs.submitted if job.status == "queued")
            # B's run, once it starts, is held in turn (its own thread only), so A's model exists while B has none.
            with injected(Fault(hold=True, thread_prefix=f"snapfit-job-train-{queued.id[:8]}")) as second:
                fault.release.set()
                wait_for_text(a, "#train-status", "Finished", timeout=TRAIN_TIMEOUT)
                assert second.wait_arrived(1)
                wait_for_text(b, "#train-status", RUNNING, timeout=60)
                tab(b, "Evaluate").click()
                b.get_by_role("button", name="Evaluate the model", exact=True).click()
                expect(b.locator("#eval-notice")).to_contain_text("no trained model yet")  # calm: beside the button
                assert_calm(b)

        tab(b, "Train").click()
        wait_for_text(b, "#train-status", "Finished", timeout=TRAIN_TIMEOUT)
        expect(a.get_by_label("Log", exact=True)).not_to_have_value(re.compile(r"epoch 2:"))
        expect(b.get_by_label("Log", exact=True)).to_have_value(re.compile(r"epoch 2:"))
        runs = sorted(jobs.submitted, key=lambda job: job.started)
        assert [job.status for job in runs] == ["done", "done"] and runs[1].started >= runs[0].ended
    finally:
        one.close()
        two.close()
