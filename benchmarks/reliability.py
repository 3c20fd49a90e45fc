"""Reliability figures for the README: sessions held at once, bad inputs tried, faults injected, and in each
case crashes and data lost (both should be 0).

    PYTHONPATH=. python benchmarks/reliability.py [--sessions 8] [--max-jobs 2]

Starts the app in this process (offline, the launch settings app.py uses) and drives it only through its
public API with gradio_client, as users' browsers would:
1. `--sessions` clients at once, each on its own thread with its own dataset (a different set of colour
   classes), load it, train, and classify; `--max-jobs` trainings run at a time, the rest queue. A session
   that sees a class that is not its own, or another's file, counts as an isolation breach.
2. Every bad input of the test suite's catalogue (tests/bad_inputs.py) goes to its endpoint; an answer that
   is Gradio's bare error, a traceback, or no answer at all is a crash.
3. Faults injected into real training runs (tests/faults.py): a worker exception, out of memory (CUDA's and
   the host's), a stop, a closed tab, and the dataset's files overwritten mid-epoch while images are decoded per
   batch. After each, the app must answer, and the session's model (the earlier one, or the best epoch of the
   failed run) must still load and classify (else: data lost); every model a run saved must be complete.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from arms import machine  # noqa: E402

_TMP = tempfile.mkdtemp(prefix="snapfit-reliability-")
os.environ.setdefault("GRADIO_TEMP_DIR", os.path.join(_TMP, "gradio"))

import torch  # noqa: E402
from gradio_client import handle_file  # noqa: E402

import engine  # noqa: E402,F401  (before timm)
from demo.workspace import Workspaces  # noqa: E402
from engine.export import check_model_folder  # noqa: E402
from tests.bad_inputs import Files, baseline, call, catalog, unclear  # noqa: E402
from tests.faults import Fault, injected  # noqa: E402
from tests.live_app import COLOURS, TINY_TRAIN, TrackingJobs, client, colour_png, colour_zip, live_app  # noqa: E402

PALETTE = sorted(COLOURS)


def labels(c, png) -> set:
    return {x["label"] for x in c.predict(handle_file(png), api_name="/predict")[0]["confidences"]}


def one_session(url: str, i: int, folder: Path, png: Path) -> dict:
    """Load a dataset of its own, train, classify: what it saw, and whether anything was not its own."""
    classes = [PALETTE[(i + k) % len(PALETTE)] for k in range(2 + i % 2)]  # 2 or 3 colours, a different set each
    c = client(url)
    summary = c.predict(handle_file(colour_zip(folder / f"s{i}.zip", classes, per_class=10, seed=i)), api_name="/load_zip")[0]
    status, *_, download = c.submit(**TINY_TRAIN, api_name="/train").result(timeout=900)
    seen = labels(c, png)
    return dict(ok=status.startswith("Finished") and f"in {len(classes)} classes" in summary, breach=seen != set(classes),
                download=download)


def sessions(url: str, n: int, folder: Path, png: Path, jobs: TrackingJobs) -> dict:
    peak, stop = [0], threading.Event()

    def watch():  # how many trainings ran at the same moment, at most
        while not stop.wait(0.05):
            peak[0] = max(peak[0], jobs.running_count())

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    t = time.perf_counter()
    with ThreadPoolExecutor(n) as pool:
        results = list(pool.map(lambda i: one_session(url, i, folder, png), range(n)))
    stop.set()
    models = [j.events[-1].model_dir for j in jobs.submitted if j.status == "done"]
    complete = sum(1 for m in models if _complete(m))
    return dict(sessions=n, finished=sum(r["ok"] for r in results), breaches=sum(r["breach"] for r in results),
                peak_trainings=peak[0], models=len(models), lost=len(models) - complete, seconds=time.perf_counter() - t)


def _complete(model_dir) -> bool:
    try:
        check_model_folder(model_dir)
        return True
    except Exception:
        return False


def bad_inputs(url: str, folder: Path) -> dict:
    c, files = client(url), Files(folder / "files")
    cases, base = catalog(files), baseline(files)
    tried = unclear_answers = crashes = 0
    for name, params in cases.items():
        for param, values in (params or {None: [None]}).items():
            for value in values:
                kwargs = dict(base.get(name, {}), **({param: value} if param else {}))
                try:
                    kind, text = call(c, name, kwargs)
                except Exception:  # no answer at all
                    crashes += 1
                    continue
                tried += 1
                unclear_answers += unclear(kind, text) is not None
    return dict(tried=tried, unclear=unclear_answers, crashes=crashes + (not _answers(url)))


def _answers(url: str) -> bool:
    try:
        return "900 images" in client(url).predict("builtin:shapes", api_name="/load_data")[0]
    except Exception:
        return False


FAULTS = [
    ("worker exception", lambda: Fault(after_validation=True, exc=RuntimeError("injected worker fault"))),
    ("CUDA out of memory", lambda: Fault(after_validation=True, exc=torch.OutOfMemoryError("CUDA out of memory (injected)"))),
    ("host out of memory", lambda: Fault(after_validation=True, exc=MemoryError())),
    ("stop mid-epoch", lambda: Fault(after_validation=True, hold=True)),
    ("tab closed mid-run", lambda: Fault(hold=True)),
    ("image broken mid-epoch", lambda: Fault(after_validation=True, hold=True)),  # last: it breaks the session's files
]
TWO_EPOCHS = dict(TINY_TRAIN, epochs=2, batch_size=8)


def faults(url: str, folder: Path, png: Path, jobs: TrackingJobs, home: Path) -> dict:
    c = client(url)
    c.predict(handle_file(colour_zip(folder / "faults.zip")), api_name="/load_zip")
    assert c.submit(**TINY_TRAIN, api_name="/train").result(timeout=900)[0].startswith("Finished")
    before = labels(c, png)
    crashes = lost = 0
    rows = []
    for name, make in FAULTS:
        with injected(make()) as fault:
            page = c.submit(**TWO_EPOCHS, api_name="/train")
            if fault.hold:
                assert fault.wait_arrived(1)
                if name.startswith("stop"):
                    c.predict(api_name="/stop_training")
                elif name.startswith("image"):  # decoded per batch (memory budget 0): the next batch finds it
                    for image in (home / jobs.submitted[-1].owner / "data").rglob("*.png"):
                        image.write_bytes(b"overwritten during training")
                else:
                    page.cancel()
                fault.release.set()
            status = page.result(timeout=900)[0] if not name.startswith("tab") else _wait(jobs.submitted[-1])
        job = jobs.submitted[-1]
        answered = _answers(url)
        kept = labels(c, png) == before  # the session's model (the earlier one, or the new one) still classifies
        saved = getattr(job.events[-1], "model_dir", None)  # a failed run saves its best epoch if one ended
        complete = _complete(saved) if saved else job.status == "failed"
        crashes += not answered
        lost += not (kept and complete)
        rows.append((name, job.status, str(status)[:90]))
    return dict(injected=len(FAULTS), crashes=crashes, lost=lost, rows=rows)


def _wait(job, timeout: float = 900.0) -> str:
    deadline = time.monotonic() + timeout
    while not job.finished and time.monotonic() < deadline:
        time.sleep(0.1)
    return job.status


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sessions", type=int, default=8)
    parser.add_argument("--max-jobs", type=int, default=2)
    args = parser.parse_args()
    print(machine())
    folder = Path(_TMP)
    png = colour_png(folder / "red.png")
    jobs = TrackingJobs(max_running=args.max_jobs)
    with live_app(jobs, Workspaces(folder / "home")) as url:
        s = sessions(url, args.sessions, folder, png, jobs)
        b = bad_inputs(url, folder)
        os.environ["SNAPFIT_MEMORY_BUDGET_MB"] = "0"  # faults: decode per batch, as datasets beyond memory are
        f = faults(url, folder, png, jobs, folder / "home")
    print(f"Sessions: {s['sessions']} at once ({args.max_jobs} trainings at a time, peak {s['peak_trainings']}), "
          f"{s['finished']} trained and classified, isolation breaches {s['breaches']}, "
          f"{s['models']} model folders, incomplete {s['lost']} ({s['seconds']:.0f} s)")
    print(f"Bad inputs: {b['tried']} tried, unclear answers {b['unclear']}, crashes {b['crashes']}")
    print(f"Faults: {f['injected']} injected, crashes {f['crashes']}, data lost {f['lost']}")
    for name, status, text in f["rows"]:
        print(f"  {name:20s} {status:8s} {text}")
    saved = [j.events[-1].model_dir for j in jobs.submitted if j.kind == "train" and j.events and
             getattr(j.events[-1], "model_dir", None)]  # finished, stopped, or failed after an epoch
    models_lost_later = sum(not _complete(m) for m in saved)
    print(f"Model folders saved by training runs: {len(saved)}, no longer complete at the end: {models_lost_later}")
    print("\n| what | count | unclear answers | crashes | data lost |\n|---|---|---|---|---|")
    print(f"| sessions at once, each with its own data, model, job and files | {s['sessions']} | isolation breaches: "
          f"{s['breaches']} | 0 | {s['lost']} |")
    print(f"| bad inputs over every endpoint | {b['tried']} | {b['unclear']} | {b['crashes']} | {models_lost_later} |")
    print(f"| faults injected into training | {f['injected']} | 0 | {f['crashes']} | {f['lost']} |")

if __name__ == "__main__":
    main()
