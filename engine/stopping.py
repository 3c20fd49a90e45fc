"""How a caller asks long-running engine work (training, the LR finder) to stop early and keep what it has."""
from __future__ import annotations

import threading


class StopToken:
    """Passed into a generator; `stop()` asks it to end after the current step and save what it has."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def stop(self) -> None:
        self._event.set()

    @property
    def stopped(self) -> bool:
        return self._event.is_set()
