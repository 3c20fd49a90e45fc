"""demo/compute.py: the app's model calls run one at a time on one thread, which ends when idle."""
import threading
import time

import pytest

from demo.compute import ComputeThread
from engine.errors import UserError


def test_calls_run_in_order_on_one_thread_and_return_their_results():
    ct = ComputeThread(idle_seconds=60)
    names = {ct.run(lambda: threading.current_thread().name) for _ in range(5)}
    assert names == {"snapfit-compute"}
    assert ct.run(sum, [1, 2, 3]) == 6 and ct.run(lambda a, b=0: a - b, 5, b=2) == 3


def test_an_exception_reaches_the_caller_unchanged_and_the_thread_goes_on():
    ct = ComputeThread(idle_seconds=60)
    with pytest.raises(UserError, match="bad image"):
        ct.run(lambda: (_ for _ in ()).throw(UserError("bad image")))
    assert ct.run(lambda: 42) == 42


def test_callers_on_many_threads_never_overlap():
    ct, running, most = ComputeThread(idle_seconds=60), [0], [0]

    def work():
        running[0] += 1
        most[0] = max(most[0], running[0])
        time.sleep(0.01)
        running[0] -= 1

    callers = [threading.Thread(target=ct.run, args=(work,)) for _ in range(8)]
    for t in callers:
        t.start()
    for t in callers:
        t.join()
    assert most[0] == 1


def test_the_thread_ends_when_idle_and_a_later_call_starts_a_new_one():
    ct = ComputeThread(idle_seconds=0.2)
    first = ct.run(threading.get_ident)
    assert ct.alive
    deadline = time.monotonic() + 10
    while ct.alive and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not ct.alive and first not in {t.ident for t in threading.enumerate()}  # gone, with its OpenMP team
    assert ct.run(lambda: 7) == 7 and ct.alive
