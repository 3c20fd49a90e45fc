"""Keep a long-running server's disk bounded: idle sessions' folders, and Gradio's stray temp files.

Sweeping happens on access, not on a timer thread: at most once every `every` seconds, the request that
finds the last sweep too old runs one (a few directory listings; it skips if another request is already
sweeping). An idle server therefore keeps its last sessions until someone comes back, which bounds disk use
just as well and needs no thread to start or stop. Uploaded and generated files in Gradio's cache are aged
out by Gradio itself (`gr.Blocks(delete_cache=...)`, set in demo/__init__.py); what Gradio never deletes is
the empty `tmpXXXXXXXX` file that gr.File leaves at the top of its temp folder for every file it hands
over (gradio/components/file.py, NamedTemporaryFile(delete=False)), and the emptied `<hash>/` folders.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

from demo.jobs import JobManager
from demo.workspace import Workspaces

log = logging.getLogger("snapfit.housekeeping")
STRAY_GRACE = 60.0  # seconds: an empty temp file younger than this may still be in use by a request


class Housekeeper:
    def __init__(self, workspaces: Workspaces, jobs: JobManager, temp_dir: str | Path | None, every: float = 300.0,
                 clock: Callable[[], float] | None = None) -> None:
        self.workspaces, self.jobs = workspaces, jobs
        self.temp_dir = Path(temp_dir) if temp_dir else None
        self.every = every
        self.clock = clock or workspaces.clock
        self._last = self.clock()
        self._busy = threading.Lock()

    def maybe_sweep(self) -> None:
        """Sweep if the last sweep is older than `every` seconds (called on every workspace lookup)."""
        if self.clock() - self._last < self.every or not self._busy.acquire(blocking=False):
            return
        try:
            self._sweep()
        except Exception:  # cleaning up must never break the request that happened to trigger it
            log.exception("sweep failed")
        finally:
            self._busy.release()

    def sweep(self) -> dict:
        """Sweep now: returns what was removed (dropped workspace keys, stray temp files)."""
        with self._busy:
            return self._sweep()

    def _sweep(self) -> dict:
        self._last = self.clock()
        dropped = self.workspaces.sweep(self.jobs.last_active)
        strays = clean_gradio_temp(self.temp_dir, self.clock(), self.workspaces.ttl) if self.temp_dir else 0
        return dict(workspaces=dropped, temp_files=strays)


def clean_gradio_temp(temp_dir: Path, now: float | None = None, ttl: float = 4 * 3600.0) -> int:
    """Remove Gradio's stray empty `tmp*` files at the top of its temp folder (older than a minute), and hash
    folders emptied by Gradio's own cache cleaning (older than `ttl`). Returns how many entries went."""
    now = time.time() if now is None else now
    removed = 0
    try:
        entries = list(temp_dir.iterdir())
    except FileNotFoundError:
        return 0
    for entry in entries:
        try:
            st = entry.lstat()
            if entry.is_file() and not entry.is_symlink() and entry.name.startswith("tmp") and st.st_size == 0:
                if now - st.st_mtime > STRAY_GRACE:
                    entry.unlink()
                    removed += 1
            elif entry.is_dir() and not entry.is_symlink() and now - st.st_mtime > ttl and not any(entry.iterdir()):
                entry.rmdir()
                removed += 1
        except OSError:  # gone meanwhile, or filled again by a concurrent upload: leave it
            continue
    return removed
