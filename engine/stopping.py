"""How a caller asks long-running engine work (training, the LR finder) to stop early and keep what it has.

In one process a StopToken is a `threading.Event`: the Stop button's thread sets it, the training loop reads it
after every step. Some work runs in another process, though: on a ZeroGPU Space every `@spaces.GPU` call sends
its arguments, pickled, to a worker process forked from the server (demo/zerogpu.py), so the loop reads a
*copy* of the token, and an Event (a lock inside) cannot even be pickled. `shareable()` therefore gives the token
a flag file: `stop()` creates it, and a copy unpickled in any process on the same machine reads `stopped` as
"the file exists". Only a shareable token pickles; pickling any other one fails at once and says why, so a stop
that could never arrive is never sent silently.

Cost: a look at a copy's `stopped` is one stat() of a file that does not exist, about a microsecond
(tests/engine/test_stopping.py measures it); a training step takes milliseconds. The token that made the
file answers from its Event, as every token that never crossed a process does.
"""
from __future__ import annotations

import os
import tempfile
import threading
import uuid
import weakref


class StopToken:
    """Passed into a generator; `stop()` asks it to end after the current step and save what it has."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._flag: str | None = None  # the flag file, once shareable

    def stop(self) -> None:
        self._event.set()
        if self._flag is not None:
            _touch(self._flag)

    @property
    def stopped(self) -> bool:
        if self._event.is_set():
            return True
        if self._flag is not None and os.path.exists(self._flag):
            self._event.set()  # from now on the fast path
            return True
        return False

    @property
    def flag_file(self) -> str | None:
        """The file that says "stopped" to copies in other processes (None until `shareable()`)."""
        return self._flag

    def shareable(self, folder: str | None = None) -> StopToken:
        """Make this token work across processes (see the module docstring) and return it. The flag file lies in
        `folder` (default: the temporary folder, which a forked worker shares) and is removed with this token."""
        if self._flag is None:
            flag = os.path.join(folder or tempfile.gettempdir(), f"snapfit-stop-{os.getpid()}-{uuid.uuid4().hex}")
            self._flag = flag
            # only the process that made the file removes it: a forked child holds a copy of this very object
            weakref.finalize(self, _remove_if_owner, flag, os.getpid())
            if self._event.is_set():  # stop() ran before the flag existed (another thread): say it in the file too
                _touch(flag)
        return self

    def __getstate__(self) -> dict:
        if self._flag is None:
            # "pickle" in the message: the `spaces` package turns such errors into a PicklingError for the caller
            raise TypeError("cannot pickle a StopToken that is not shareable: call token.shareable() before it goes "
                            "to another process, so that stop() here reaches the copy there")
        return dict(flag=self._flag, stopped=self.stopped)

    def __setstate__(self, state: dict) -> None:
        self._event = threading.Event()
        self._flag = state["flag"]  # a copy: it reads the flag file but never removes it
        if state["stopped"]:
            self._event.set()


def _touch(path: str) -> None:
    with open(path, "a"):
        pass


def _remove_if_owner(path: str, owner_pid: int) -> None:
    if os.getpid() == owner_pid:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
