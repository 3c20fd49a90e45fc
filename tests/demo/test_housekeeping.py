"""Sessions' folders are cleaned after their time-to-live, never while their job runs; Gradio's stray temp
files go too; many sessions coming and going leave the folder count at its floor. The clock is injected."""
import logging
import os
import threading
import time

import pytest
from gradio.utils import get_upload_folder
from gradio_client import handle_file

from demo.housekeeping import STRAY_GRACE, Housekeeper, clean_gradio_temp
from demo.jobs import JobManager
from demo.workspace import DEFAULT_TTL, Workspaces, ttl_from_env
from tests.faults import Fault, injected
from tests.live_app import TINY_TRAIN, TrackingJobs, client, colour_zip, live_app

WAIT = 5.0


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def folders(root) -> set:
    return {p.name for p in root.iterdir()}


def test_an_idle_workspace_is_dropped_after_its_ttl_and_not_before(tmp_path):
    clock = Clock()
    spaces = Workspaces(tmp_path, ttl=100, clock=clock)
    old, fresh = spaces.get(None), spaces.get(None)
    (old.folder / "model").mkdir()
    clock.now += 60
    spaces.get(fresh.key)  # used again: its clock restarts
    clock.now += 60
    assert spaces.sweep() == [old.key]
    assert folders(tmp_path) == {fresh.key}
    assert not spaces.known(old.key) and spaces.known(fresh.key)
    assert spaces.get(old.key).key != old.key  # a dropped key gets a new, empty workspace


def test_a_running_job_keeps_its_workspace_and_the_ttl_counts_from_its_end(tmp_path):
    clock, jobs = Clock(), JobManager()
    spaces = Workspaces(tmp_path, ttl=100, clock=clock)
    ws = spaces.get(None)
    started, release = threading.Event(), threading.Event()

    def run(token):
        started.set()
        assert release.wait(WAIT)
        yield "done"

    job = jobs.submit(ws.key, "train", run)
    assert started.wait(WAIT)
    clock.now += 10_000
    assert spaces.sweep(jobs.last_active) == []  # hours idle, but its training still runs
    release.set()
    list(jobs.follow(job.id, ws.key, timeout=WAIT))
    assert job.finished
    job.ended = clock.now  # the job ended "now" on the injected clock
    clock.now += 60
    assert spaces.sweep(jobs.last_active) == []
    clock.now += 60
    assert spaces.sweep(jobs.last_active) == [ws.key]
    assert folders(tmp_path) == set()


def test_folders_left_by_an_earlier_server_go_once_they_are_old(tmp_path):
    stale, recent, other = tmp_path / ("a" * 32), tmp_path / ("b" * 32), tmp_path / "my-photos"
    for folder in (stale, recent, other):
        folder.mkdir()
    (tmp_path / ("c" * 32)).write_text("a file named like a workspace")
    for path in (stale, other, tmp_path / ("c" * 32)):
        os.utime(path, (0, 0))
    spaces = Workspaces(tmp_path, ttl=100)
    spaces.sweep()
    assert folders(tmp_path) == {"b" * 32, "my-photos", "c" * 32}  # only an old folder named like a workspace goes


def test_gradio_stray_empty_temp_files_are_removed(tmp_path):
    now = 1_000_000.0
    stray, young, full = tmp_path / "tmpab12cd", tmp_path / "tmpyoung", tmp_path / "tmpfull"
    cached, empty_old, empty_young = tmp_path / ("a" * 64), tmp_path / ("b" * 64), tmp_path / ("c" * 64)
    for path in (stray, young):
        path.touch()
    full.write_bytes(b"data")
    for path in (cached, empty_old, empty_young):
        path.mkdir()
    (cached / "upload.png").write_bytes(b"png")
    old = now - STRAY_GRACE - 1
    for path in (stray, full, cached, empty_old):
        os.utime(path, (old - 1000, old - 1000))
    os.utime(young, (now, now))
    os.utime(empty_young, (now, now))
    assert clean_gradio_temp(tmp_path, now, ttl=500) == 2
    assert folders(tmp_path) == {"tmpyoung", "tmpfull", "a" * 64, "c" * 64}
    assert clean_gradio_temp(tmp_path / "missing", now) == 0


def test_the_housekeeper_sweeps_at_most_every_so_often(tmp_path):
    clock = Clock()
    spaces = Workspaces(tmp_path / "home", ttl=100, clock=clock)
    keeper = Housekeeper(spaces, JobManager(), tmp_path / "gradio", every=50, clock=clock)
    ws = spaces.get(None)
    clock.now += 40
    keeper.maybe_sweep()  # too soon since the last sweep: nothing happens
    clock.now += 70
    assert spaces.known(ws.key)
    keeper.maybe_sweep()
    assert not spaces.known(ws.key)


@pytest.mark.parametrize("value, expected", [(None, DEFAULT_TTL), ("90", 90.0), ("1.5", 1.5), ("soon", DEFAULT_TTL),
                                             ("0", DEFAULT_TTL), ("-5", DEFAULT_TTL), ("inf", DEFAULT_TTL)])
def test_ttl_comes_from_the_environment(monkeypatch, caplog, value, expected):
    if value is None:
        monkeypatch.delenv("SNAPFIT_SESSION_TTL", raising=False)
    else:
        monkeypatch.setenv("SNAPFIT_SESSION_TTL", value)
    with caplog.at_level(logging.WARNING, logger="snapfit.workspace"):
        assert ttl_from_env() == expected
    assert ("SNAPFIT_SESSION_TTL" in caplog.text) == (value not in (None, "90", "1.5"))


@pytest.mark.slow
def test_many_sessions_come_and_go_and_the_folder_count_returns_to_its_floor(tmp_path):
    """Eight sessions upload a dataset (one trains on it); hours later only the training one is left, and
    once it has ended and its time-to-live passed, nothing but the session asking is left."""
    clock = Clock(time.time())  # real time, so that files' real ages compare with it
    spaces, jobs = Workspaces(tmp_path / "home", ttl=3600, clock=clock), TrackingJobs()
    upload, dataset = get_upload_folder(), handle_file(colour_zip(tmp_path / "d.zip", per_class=4))
    with live_app(jobs, spaces) as url, injected(Fault(hold=True)) as fault:
        sessions = [client(url) for _ in range(8)]
        for c in sessions:
            assert "12 images in 3 classes" in c.predict(dataset, api_name="/load_zip")[0]
        training = sessions[0].submit(**TINY_TRAIN, api_name="/train")
        assert fault.wait_arrived(1)
        assert len(folders(spaces.root)) == 8
        strays = [p for p in os.scandir(upload) if p.name.startswith("tmp") and p.is_file() and p.stat().st_size == 0]
        assert strays, "gr.File left no stray temp file: Gradio changed, revisit demo/housekeeping.py"

        clock.now += 4 * 3600  # everyone left hours ago; session 0's training still runs
        client(url).predict(api_name="/stop_training")  # a newcomer's request triggers the sweep
        assert len(folders(spaces.root)) == 2  # the training session and the newcomer
        assert not any(os.path.exists(p.path) for p in strays)

        fault.release.set()
        assert training.result(timeout=300)[0].startswith("Finished")
        clock.now = max(clock.now, jobs.submitted[0].ended) + 4 * 3600
        client(url).predict(api_name="/stop_training")
        assert len(folders(spaces.root)) == 1  # the floor: only the session that just asked


def test_the_app_ages_gradios_cache_on_the_same_ttl_and_lets_quick_actions_overlap(tmp_path):
    from demo import CONCURRENCY, QUEUE_SIZE, build_demo

    demo = build_demo(offline=True, workspaces=Workspaces(tmp_path, ttl=400), jobs=JobManager())
    assert demo.delete_cache == (100, 400)
    assert demo._queue.default_concurrency_limit == CONCURRENCY > 1 and demo._queue.max_size == QUEUE_SIZE
    streams = [fn for fn in demo.fns.values() if fn.name in ("train", "lr_find", "reattach")]
    assert len(streams) == 4 and all(fn.concurrency_limit is None for fn in streams)  # they only wait on a job
