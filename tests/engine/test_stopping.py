"""StopToken (engine/stopping.py): in memory by default; made shareable, its pickled copies in other processes see
stop() through a flag file, at a cost per look that no training step notices."""
import gc
import multiprocessing
import os
import pickle
import threading
import time

import pytest

from engine.stopping import StopToken


def test_an_ordinary_token_stops_in_memory_and_refuses_to_be_pickled():
    token = StopToken()
    assert not token.stopped and token.flag_file is None
    threading.Thread(target=token.stop).start()  # the Stop button's thread
    deadline = time.monotonic() + 5
    while not token.stopped and time.monotonic() < deadline:
        time.sleep(0.001)
    assert token.stopped and token.flag_file is None  # no file was needed
    with pytest.raises(TypeError, match="cannot pickle a StopToken that is not shareable"):
        pickle.dumps(StopToken())


def _wait_for_stop(token_bytes: bytes, ready, seen) -> None:
    token = pickle.loads(token_bytes)
    ready.set()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if token.stopped:
            seen.put(True)
            return
        time.sleep(0.001)
    seen.put(False)


def test_a_shareable_token_stops_its_copy_in_a_forked_process():
    """The copy is unpickled in a process forked *before* it was sent (as ZeroGPU's worker), so the only way the stop
    can reach it is the flag file."""
    fork = multiprocessing.get_context("fork")
    ready, seen = fork.Event(), fork.SimpleQueue()
    token = StopToken().shareable()
    data = pickle.dumps(token)
    child = fork.Process(target=_wait_for_stop, args=(data, ready, seen))
    child.start()
    try:
        assert ready.wait(20)
        time.sleep(0.05)
        assert child.is_alive()  # still waiting: it did not see a stop that was never asked
        token.stop()
        assert seen.get() is True
    finally:
        child.join(20)
    assert child.exitcode == 0


def test_a_copy_knows_a_stop_asked_before_it_was_made_even_before_the_token_was_shareable():
    token = StopToken()
    token.stop()
    copy = pickle.loads(pickle.dumps(token.shareable()))
    assert copy.stopped and os.path.exists(token.flag_file)
    assert token.shareable() is token  # once shareable it stays so, with the same file
    assert pickle.loads(pickle.dumps(token)).flag_file == token.flag_file


def test_the_flag_file_goes_with_the_token_that_made_it_not_with_its_copies(tmp_path):
    token = StopToken().shareable(str(tmp_path))
    copy = pickle.loads(pickle.dumps(token))
    token.stop()
    flag = token.flag_file
    assert os.path.dirname(flag) == str(tmp_path) and os.path.exists(flag) and copy.stopped
    del copy
    gc.collect()
    assert os.path.exists(flag)
    del token
    gc.collect()
    assert not os.path.exists(flag)
