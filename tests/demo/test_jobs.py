"""JobManager: queueing, running, stopping, failures, owner isolation and following.

Runs are sequenced with threading.Events, never with timing thresholds; every wait has a generous cap so a
bug fails the test instead of hanging it.
"""
import logging
import threading
import time

import pytest

from demo.jobs import OUT_OF_MEMORY, JobManager
from engine.errors import UserError

WAIT = 5.0  # seconds; only ever reached when something is broken


def drain(manager, job, owner="alice", start=0):
    """Follow a job to its end; returns every yielded (events, job) pair."""
    items = list(manager.follow(job.id, owner, start=start, timeout=WAIT))
    assert job.finished, f"{job} did not finish within {WAIT}s"
    return items


def events_of(items):
    return [event for batch, _ in items for event in batch]


def yields(*items):
    def run(token):
        yield from items

    return run


def blocking(started: threading.Event, release: threading.Event, *items):
    """A run that signals it started, yields `items`, then waits for `release`."""

    def run(token):
        started.set()
        yield from items
        assert release.wait(WAIT)

    return run


def test_job_runs_and_follow_yields_every_event_in_order():
    manager = JobManager()
    job = manager.submit("alice", "train", yields(*range(5)))
    items = drain(manager, job)
    assert events_of(items) == [0, 1, 2, 3, 4]
    assert job.events == [0, 1, 2, 3, 4]
    assert job.status == "done" and job.error is None
    assert items[-1][1] is job and items[-1][1].finished
    assert job.started is not None and job.ended is not None and job.ended >= job.started
    assert len(job.id) == 32
    assert manager.running_count() == 0 and manager.queued_count() == 0


def test_second_job_waits_for_the_only_slot_then_runs():
    manager = JobManager(max_running=1)
    started, release = threading.Event(), threading.Event()
    first = manager.submit("alice", "train", blocking(started, release, "a"))
    assert started.wait(WAIT)
    second = manager.submit("bob", "train", yields("b"))
    assert second.status == "queued"
    assert manager.queue_position(second) == 1
    assert manager.queue_position(first) == 0
    assert manager.running_count() == 1 and manager.queued_count() == 1

    release.set()
    drain(manager, first)
    drain(manager, second, owner="bob")
    assert first.status == second.status == "done"
    assert second.events == ["b"]
    assert second.started >= first.ended
    assert manager.queue_position(second) == 0


def test_queue_is_fifo_across_owners():
    manager = JobManager(max_running=1)
    started, release = threading.Event(), threading.Event()
    order = []
    first = manager.submit("alice", "train", blocking(started, release))
    assert started.wait(WAIT)

    def record(name):
        def run(token):
            order.append(name)
            yield name

        return run

    jobs = [manager.submit(owner, "train", record(owner)) for owner in ("bob", "carol", "alice")]
    assert [manager.queue_position(j) for j in jobs] == [1, 2, 3]
    release.set()
    drain(manager, first)
    for job in jobs:
        drain(manager, job, owner=job.owner)
    assert order == ["bob", "carol", "alice"]


def test_two_slots_run_two_jobs_at_once():
    manager = JobManager(max_running=2)
    release = threading.Event()
    starts = [threading.Event(), threading.Event()]
    jobs = [manager.submit("alice", "train", blocking(s, release)) for s in starts]
    # Both have started while neither has been released: they overlap.
    assert all(s.wait(WAIT) for s in starts)
    assert manager.running_count() == 2 and manager.queued_count() == 0
    release.set()
    for job in jobs:
        drain(manager, job)
    assert [j.status for j in jobs] == ["done", "done"]


def test_stopping_a_running_job_ends_it_stopped():
    manager = JobManager()
    started = threading.Event()

    def run(token):
        step = 0
        while not token.stopped:
            step += 1
            yield step
            started.set()
            time.sleep(0.01)  # stands in for one training step
        yield "saved"

    job = manager.submit("alice", "train", run)
    assert started.wait(WAIT)
    assert manager.stop(job.id, "alice") is True
    drain(manager, job)
    assert job.status == "stopped" and job.error is None
    assert job.events[-1] == "saved"


def test_stopping_a_queued_job_means_it_never_starts():
    manager = JobManager(max_running=1)
    started, release = threading.Event(), threading.Event()
    first = manager.submit("alice", "train", blocking(started, release))
    assert started.wait(WAIT)
    ran = threading.Event()

    def never(token):
        ran.set()
        yield "should not happen"

    queued = manager.submit("alice", "train", never)
    assert manager.stop(queued.id, "alice") is True
    assert queued.status == "stopped" and queued.started is None and queued.ended is not None
    assert manager.queued_count() == 0
    assert drain(manager, queued)[-1][1].status == "stopped"

    release.set()
    drain(manager, first)
    assert first.status == "done"  # stopping one job leaves the others alone
    assert not ran.is_set() and queued.events == []


def test_stopping_a_finished_job_changes_nothing():
    manager = JobManager()
    job = manager.submit("alice", "train", yields(1))
    drain(manager, job)
    assert manager.stop(job.id, "alice") is True
    assert job.status == "done"


def fails_with(exc):
    def run(token):
        yield "before"
        raise exc

    return run


def test_internal_error_fails_the_job_logs_the_traceback_and_the_manager_carries_on(caplog):
    manager = JobManager()
    with caplog.at_level(logging.ERROR, logger="snapfit.jobs"):
        broken = manager.submit("alice", "train", fails_with(KeyError("boom")))
        drain(manager, broken)
    assert broken.status == "failed"
    assert broken.error == "Internal error (KeyError): 'boom'"
    assert broken.events == ["before"]
    record = next(r for r in caplog.records if r.name == "snapfit.jobs")
    assert record.exc_info is not None and "boom" in caplog.text and "Traceback" in caplog.text

    after = manager.submit("alice", "train", yields("fine"))
    drain(manager, after)
    assert after.status == "done" and after.events == ["fine"]
    assert manager.running_count() == 0


def test_user_error_message_is_shown_as_is():
    manager = JobManager()
    job = manager.submit("alice", "train", fails_with(UserError("Pick at least two classes.")))
    drain(manager, job)
    assert job.status == "failed" and job.error == "Pick at least two classes."


@pytest.mark.parametrize(
    "exc",
    [
        MemoryError(),
        RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"),
        RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: not enough memory"),
    ],
)
def test_out_of_memory_gets_a_plain_message(exc):
    manager = JobManager()
    job = manager.submit("alice", "train", fails_with(exc))
    drain(manager, job)
    assert job.status == "failed" and job.error == OUT_OF_MEMORY
    assert "batch size" in job.error and "image size" in job.error


def test_other_owners_cannot_see_stop_or_follow_a_job():
    manager = JobManager()
    started, release = threading.Event(), threading.Event()
    job = manager.submit("alice", "train", blocking(started, release, "secret"))
    assert started.wait(WAIT)

    assert manager.get(job.id, "mallory") is None
    assert manager.latest("mallory") is None
    assert manager.stop(job.id, "mallory") is False
    assert not job.stop_token.stopped
    # follow() for someone else yields nothing at all rather than raising.
    assert list(manager.follow(job.id, "mallory", timeout=WAIT)) == []

    assert manager.get(job.id, "alice") is job
    release.set()
    drain(manager, job)
    assert job.status == "done"


def test_unknown_or_missing_ids():
    manager = JobManager()
    assert manager.get(None, "alice") is None
    assert manager.get("", "alice") is None
    assert manager.get("0" * 32, "alice") is None
    assert manager.stop("0" * 32, "alice") is False
    assert list(manager.follow("0" * 32, "alice")) == []


def test_latest_is_newest_per_owner_and_kind():
    manager = JobManager(max_running=2)
    a_train = manager.submit("alice", "train", yields())
    a_lr = manager.submit("alice", "lr_find", yields())
    b_train = manager.submit("bob", "train", yields())
    assert manager.latest("alice") is a_lr
    assert manager.latest("alice", "train") is a_train
    assert manager.latest("bob") is b_train
    assert manager.latest("bob", "lr_find") is None
    for job in (a_train, a_lr, b_train):
        drain(manager, job, owner=job.owner)


def test_follow_from_a_cursor_yields_only_later_events():
    manager = JobManager()
    started, release = threading.Event(), threading.Event()

    def run(token):
        yield from ["a", "b", "c"]
        started.set()
        assert release.wait(WAIT)
        yield from ["d", "e"]

    job = manager.submit("alice", "train", run)
    assert started.wait(WAIT)
    follower = manager.follow(job.id, "alice", start=3, timeout=WAIT)
    first_batch, _ = next(follower)  # a page re-attaching after it had already drawn three events
    release.set()
    rest = list(follower)
    assert first_batch + events_of(rest) == ["d", "e"]
    assert rest[-1][1].status == "done"


def test_follow_on_a_finished_job_yields_final_state_once_and_ends():
    manager = JobManager()
    job = manager.submit("alice", "train", yields(1, 2, 3))
    drain(manager, job)
    assert list(manager.follow(job.id, "alice", start=3)) == [([], job)]
    assert list(manager.follow(job.id, "alice", start=1)) == [([2, 3], job)]
    assert list(manager.follow(job.id, "alice")) == [([1, 2, 3], job)]


def test_follow_reports_queue_position_changes_and_heartbeats():
    manager = JobManager(max_running=1)
    started, release = threading.Event(), threading.Event()
    first = manager.submit("alice", "train", blocking(started, release))
    assert started.wait(WAIT)
    second = manager.submit("bob", "train", yields("x"))

    follower = manager.follow(second.id, "bob", heartbeat=0.05, timeout=WAIT)
    assert next(follower) == ([], second) and manager.queue_position(second) == 1
    assert next(follower) == ([], second)  # nothing changed: a heartbeat, so a page can tick its clock
    assert second.status == "queued"
    release.set()
    rest = list(follower)
    assert events_of(rest) == ["x"]
    assert rest[-1][1].status == "done"
    drain(manager, first)


def test_follow_gives_up_after_its_timeout():
    manager = JobManager()
    started, release = threading.Event(), threading.Event()
    job = manager.submit("alice", "train", blocking(started, release))
    assert started.wait(WAIT)
    items = list(manager.follow(job.id, "alice", poll=0.01, timeout=0.05))
    assert items and not job.finished
    release.set()
    drain(manager, job)


def test_finished_jobs_are_pruned_on_submit():
    manager = JobManager(keep_seconds=0)
    old = manager.submit("alice", "train", yields(1))
    drain(manager, old)
    new = manager.submit("alice", "train", yields(2))
    assert manager.get(old.id, "alice") is None
    assert manager.get(new.id, "alice") is new
    drain(manager, new)


def test_max_running_must_be_positive():
    with pytest.raises(ValueError):
        JobManager(max_running=0)


@pytest.mark.parametrize("value, expected", [("2", 2), (" 3 ", 3), (None, 1), ("", 1)])
def test_from_env_reads_max_jobs(monkeypatch, value, expected):
    if value is None:
        monkeypatch.delenv("SNAPFIT_MAX_JOBS", raising=False)
    else:
        monkeypatch.setenv("SNAPFIT_MAX_JOBS", value)
    assert JobManager.from_env().max_running == expected


@pytest.mark.parametrize("value", ["lots", "0", "-1", "1.5"])
def test_from_env_falls_back_to_one_on_garbage(monkeypatch, caplog, value):
    monkeypatch.setenv("SNAPFIT_MAX_JOBS", value)
    with caplog.at_level(logging.WARNING, logger="snapfit.jobs"):
        assert JobManager.from_env().max_running == 1
    assert "SNAPFIT_MAX_JOBS" in caplog.text


def test_jobs_module_stays_ui_free():
    import demo.jobs

    source = open(demo.jobs.__file__, encoding="utf-8").read()
    assert "import gradio" not in source and "import torch" not in source
