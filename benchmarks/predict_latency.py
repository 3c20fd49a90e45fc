"""Latency of the app's `predict` endpoint through gradio_client against a bare timm forward pass.

    python benchmarks/predict_latency.py [--model resnet18] [--img-size 224] [--calls 50]

Saves a model folder (random weights: the Hub is not needed) at the given size, starts the app in its own
process on a local port (as `python app.py` runs it), loads the folder through the Classify tab's upload
endpoint, and classifies the same PNG `--calls` times (after warm-up calls), without and with the Grad-CAM
overlay. The baseline is the same model, loaded by plain timm, run on the already preprocessed image in this
process. An endpoint that does nothing shows the floor that gradio_client and Gradio's queue cost by themselves
(gradio_client 2.7 polls for results every 50 ms). The same /predict is also called through Gradio's HTTP API
(upload, POST, read the event stream) with one httpx connection pool, as a web page or a service would. Prints
p50/p95 and the p50 overhead of the endpoint on both paths (target < 30 ms for resnet18 at 224 px on CPU,
without Grad-CAM).
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import httpx  # noqa: E402
import torch  # noqa: E402
from arms import machine, timed  # noqa: E402

from engine import models, sample  # noqa: E402
from engine.export import save_model_folder  # noqa: E402
from engine.predict import Predictor  # noqa: E402
from tests.live_app import client, free_port  # noqa: E402


def percentiles(ms: list[float]) -> tuple[float, float]:
    q = statistics.quantiles(ms, n=20)
    return statistics.median(ms), q[18]  # p50, p95


def connect(url: str, server: subprocess.Popen):
    deadline = time.monotonic() + 120
    while True:
        try:
            return client(url)
        except Exception:
            if server.poll() is not None or time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="resnet18")
    p.add_argument("--img-size", type=int, default=224)
    p.add_argument("--calls", type=int, default=50)
    args = p.parse_args()
    print(machine())
    from gradio_client import handle_file

    with tempfile.TemporaryDirectory() as tmp:
        model, _ = models.create(args.model, len(sample.CLASSES))
        folder = save_model_folder(model, Path(tmp) / "model", list(sample.CLASSES), models.data_config(model, args.img_size), {})
        image = Path(tmp) / "shape.png"
        sample.generate(1, seed=5)[0][0].resize((args.img_size, args.img_size)).save(image)

        predictor = Predictor.from_folder(folder)
        x = predictor.normalize(predictor.tensor(str(image))[None])
        with torch.no_grad():
            bare = timed(lambda: predictor.model(x), args.calls)

        port = free_port()
        server = subprocess.Popen([sys.executable, "app.py", "--port", str(port)], cwd=ROOT, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL, env=dict(os.environ, PYTHONPATH=str(ROOT)))
        try:
            url = f"http://127.0.0.1:{port}/"
            api = connect(url, server)
            files = [handle_file(str(folder / name)) for name in ("model.safetensors", "config.json")]
            api.predict(files, api_name="/load_model")
            floor = timed(lambda: api.predict(api_name="/stop_training"), args.calls)  # an endpoint that does nothing
            endpoint = timed(lambda: api.predict(handle_file(str(image)), False, False, api_name="/predict"), args.calls)
            with_cam = timed(lambda: api.predict(handle_file(str(image)), False, True, api_name="/predict"), args.calls)
            http = timed(lambda: http_predict(url, api.session_hash, image), args.calls)
        finally:
            server.terminate()
            server.wait()

    print(f"{args.model} at {args.img_size} px, {args.calls} calls each, {torch.get_num_threads()} threads")
    print(f"{'path':<44}{'p50 ms':>9}{'p95 ms':>9}")
    rows = [("bare timm forward (preprocessed tensor)", bare), ("an endpoint doing nothing (client + queue)", floor),
            ("/predict through gradio_client", endpoint),
            ("/predict with the Grad-CAM overlay", with_cam),
            ("/predict through Gradio's HTTP API (httpx)", http)]
    for name, ms in rows:
        p50, p95 = percentiles(ms)
        print(f"{name:<44}{p50:>9.1f}{p95:>9.1f}")
    for name, ms in [("gradio_client", endpoint), ("the HTTP API", http)]:
        overhead = percentiles(ms)[0] - percentiles(bare)[0]
        print(f"endpoint overhead through {name} at p50: {overhead:.1f} ms (target < 30 ms); "
              f"ratio {percentiles(ms)[0] / percentiles(bare)[0]:.2f}x")
    print(f"gradio_client and the queue alone take {percentiles(floor)[0]:.1f} ms")


def http_predict(url: str, session_hash: str, image: Path) -> list:
    """Upload the image and call /predict the way curl or a web page does: POST /gradio_api/call/predict, then
    read the result from its event stream (https://www.gradio.app/guides/querying-gradio-apps-with-curl)."""
    with open(image, "rb") as f:
        path = HTTP.post(f"{url}gradio_api/upload", files={"files": (image.name, f, "image/png")}).json()[0]
    data = [{"path": path, "meta": {"_type": "gradio.FileData"}}, False, False, None]  # image, TTA, Grad-CAM, session key
    event = HTTP.post(f"{url}gradio_api/call/predict", json={"data": data, "session_hash": session_hash}).json()["event_id"]
    with HTTP.stream("GET", f"{url}gradio_api/call/predict/{event}") as stream:
        lines = list(stream.iter_lines())
    if "event: complete" not in lines:
        raise RuntimeError(f"/predict failed: {lines}")
    return lines


HTTP = httpx.Client(timeout=60)  # one connection pool, as a browser or a service calling the API keeps


if __name__ == "__main__":
    main()
