"""How long someone waits for the message when the connection to the Hub breaks mid-download.

    PYTHONPATH=. python benchmarks/hub_faults.py [--baseline]

Serves a small dataset and resnet10t's weights from the local Hub stand-in (tests/hub_read_standin.py) over
real HTTP, cuts a file mid-way (every read of it, resumes included), or lets the server go away there, and
times the engine's real code path, with the libraries' real retries and waits, until it gives its one-line
message. `--baseline` also times a streamed read with datasets' own retry settings (20 more rounds, 5 s apart),
which the engine lowers to one (engine/hub_data.py STREAM_RETRIES): about 9 minutes, hence optional.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import pytest  # noqa: E402  (its MonkeyPatch undoes what each arm changes)
from arms import machine  # noqa: E402

import engine  # noqa: E402,F401  (before timm)
from engine import data, hub_data, models  # noqa: E402
from engine.errors import UserError  # noqa: E402
from tests.hub_read_standin import (  # noqa: E402
    DATASET,
    MODEL,
    TRAIN_FILE,
    WEIGHTS,
    WEIGHTS_CUT,
    HubReadStandIn,
    go_online,
    sample_dataset,
    sample_weights,
)


def arm(name: str, path: str, cut: int, go_away: bool, call, repo: Path, files: dict, **engine_settings) -> float:
    with HubReadStandIn() as server, pytest.MonkeyPatch.context() as mp, tempfile.TemporaryDirectory() as cache:
        server.add_folder("dataset", DATASET, repo)
        server.add("model", f"timm/{MODEL}", files)
        go_online(server, mp, Path(cache))
        for key, value in engine_settings.items():
            mp.setattr(hub_data, key, value)
        server.cut[path], server.go_away_at_cut = cut, go_away
        start = time.perf_counter()
        try:
            call()
            message = "(no error!)"
        except UserError as exc:
            message = str(exc)
        seconds = time.perf_counter() - start
    print(f"{name:58s} {seconds:6.1f} s  {len(server.file_gets(path)):3d} GETs  {message[:70]}", flush=True)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--baseline", action="store_true", help="also time datasets' own retry settings (~9 minutes)")
    args = parser.parse_args()
    print(machine())
    repo = sample_dataset(Path(tempfile.mkdtemp(prefix="snapfit-hub-")) / "pets")
    files = sample_weights()[1]
    stream = lambda: data.load(f"hub:{DATASET}", max_per_class=2)
    download = lambda: data.load(f"hub:{DATASET}")
    weights = lambda: models.create(MODEL, 3, weights="pretrained")
    print(f"{'fault':58s} {'waited':>8s}  {'reads of the file':>9s}  message")
    ours = arm("streamed dataset, file cut at 5 of 20 kB", TRAIN_FILE, 5000, False, stream, repo, files)
    arm("streamed dataset, server gone at 5 kB", TRAIN_FILE, 5000, True, stream, repo, files)
    arm("downloaded dataset, file cut at 5 of 20 kB", TRAIN_FILE, 5000, False, download, repo, files)
    arm("pretrained weights, file cut at 15 of 21.8 MB", WEIGHTS, WEIGHTS_CUT, False, weights, repo, files)
    arm("pretrained weights, server gone at 15 MB", WEIGHTS, WEIGHTS_CUT, True, weights, repo, files)
    if args.baseline:
        base = arm("baseline: streamed, file cut, datasets' own retries", TRAIN_FILE, 5000, False, stream, repo, files,
                   STREAM_RETRIES=20, STREAM_RETRY_WAIT_S=5)
        print(f"a lost connection in a streamed read is reported {base / ours:.0f}x sooner than with datasets' own retries")


if __name__ == "__main__":
    main()
