"""Bad inputs for every endpoint of the app, and how to tell a clear answer from a crash.

Shared by tests/demo/test_bad_inputs.py and benchmarks/reliability.py. Malformed files are made on the spot
in a folder of the caller's.
"""
from __future__ import annotations

import io
import json
import stat
import struct
import time
import zipfile
from pathlib import Path

import numpy as np
from gradio_client import handle_file
from gradio_client.exceptions import AppError
from hypothesis import strategies as st
from PIL import Image

from tests.live_app import GENERIC_ERROR

WORDS = ["", " ", "nope", "../../etc/passwd", "/etc/passwd", "x" * 5000, "hf-hub:evil/model", "NaN", "-0", "1e309",
         "builtin:shapes\x00", "<script>alert(1)</script>", "resnet81", "zip://../../etc"]
NUMBERS = [None, -1, 0, 1.5, -1e9, 1e9, 10**18, True, "abc", "", [1, 2], {"a": 1}]
CHOICES = [None, "", "nope", 3, "AUTO", "../auto"]
# Anything JSON can carry, for hypothesis (NaN and infinity cannot travel as JSON: see test_bad_inputs.py).
JUNK = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(2**63), max_value=2**63),
                 st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=30), st.sampled_from(WORDS),
                 st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=4), st.integers(), max_size=2))
NO_PARAMS = ("/stop_training", "/stop_lr_find", "/evaluate", "/export_onnx", "/capture_train", "/capture_download",
             "/capture_use", "/resume_training",
             "/clean_apply", "/clean_undo", "/clean_download")  # called as is, in a fresh session
STREAMS = {"/train": "/stop_training", "/lr_find": "/stop_lr_find"}  # streaming endpoint -> how to stop what it started


class Files:
    """Malformed (and a few well-formed) files, written into `folder` when first asked for."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)

    def _write(self, name: str, data: bytes) -> str:
        path = self.folder / name
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        return str(path)

    def garbage(self, name="garbage.png"):
        return self._write(name, np.random.default_rng(0).integers(0, 256, 2048, dtype=np.uint8).tobytes())

    def empty(self, name="empty.png"):
        return self._write(name, b"")

    def text(self, name="notes.png"):
        return self._write(name, b"this is text, not a picture\n")

    def png(self, size=(32, 32), mode="RGB", name=None) -> str:
        buf = io.BytesIO()
        Image.new(mode, size).save(buf, "PNG")
        return self._write(name or f"{mode}-{size[0]}x{size[1]}.png", buf.getvalue())

    def truncated(self):
        return self._write("truncated.png", Path(self.png((64, 64))).read_bytes()[:70])

    def zip(self, name: str, members: dict[str, bytes], symlinks=()) -> str:
        path = self.folder / name
        if not path.exists():
            with zipfile.ZipFile(path, "w") as z:
                for member, data in members.items():
                    z.writestr(member, data)
                for member in symlinks:
                    info = zipfile.ZipInfo(member)
                    info.external_attr = (stat.S_IFLNK | 0o777) << 16
                    z.writestr(info, "/etc/passwd")
        return str(path)

    def bomb(self) -> str:
        """A zip whose directory claims 3 x 4 GB of contents (a real bomb's signature) while holding 3 bytes."""
        path = Path(self.zip("bomb.zip", {f"a/{i}.png": b"x" for i in range(3)}))
        data = bytearray(path.read_bytes())
        at = data.find(b"PK\x01\x02")
        while at != -1:  # central directory entries: uncompressed size at offset 24
            data[at + 24:at + 28] = struct.pack("<I", 0xFFFFFFFE)
            at = data.find(b"PK\x01\x02", at + 4)
        path.write_bytes(bytes(data))
        return str(path)


def catalog(files: Files) -> dict[str, dict[str, list]]:
    """endpoint -> parameter -> bad values (file values go through handle_file)."""
    png = Path(files.png()).read_bytes()
    f = handle_file
    images = [None, f(files.garbage()), f(files.empty()), f(files.text()), f(files.truncated()),
              f(files.png((8000, 7000), "L")), f(files.png((1, 1))), f(files.garbage("image.svg")), "/etc/passwd", ""]
    zips = [None, f(files.garbage("not-a.zip")), f(files.zip("empty.zip", {})), f(files.bomb()),
            f(files.zip("traversal.zip", {"../../evil/a.png": png, "ok/b.png": png})),
            f(files.zip("absolute.zip", {"/tmp/evil/a.png": png})),
            f(files.zip("symlink.zip", {"a/1.png": png}, symlinks=["b/link.png"])),
            f(files.zip("one-class.zip", {f"cats/{i}.png": png for i in range(4)})),
            f(files.zip("no-images.zip", {"cats/a.txt": b"x", "dogs/b.txt": b"y"})),
            f(files.zip("all-broken.zip", {"cats/a.png": b"x", "dogs/b.png": b"y"})),
            f(files.garbage("image.png")), "/etc/passwd", ""]
    config = json.dumps({"architecture": "resnet10t", "num_classes": 2, "label_names": ["a", "b"]}).encode()
    models = [None, [], [f(files.garbage("model.safetensors")), f(files._write("config.json", config))],
              [f(files._write("bad/config.json", b"{not json")), f(files.garbage("model.safetensors"))],
              [f(files.garbage("model.safetensors"))], [f(files.garbage("weights.png"))],
              [f(files.zip("pickled.zip", {"model.pth": b"\x80\x04cos\nsystem\n.", "config.json": b"{}"}))],
              [f(files.zip("traversal-model.zip", {"../../model.safetensors": b"x", "config.json": config}))],
              "/etc/passwd"]
    sketches = [None, {}, "x", {"background": None, "layers": [], "composite": None},
                {"background": None, "layers": [], "composite": f(files.png((64, 64), "RGBA", "blank.png"))},
                {"background": None, "layers": [], "composite": f(files.garbage())}]
    training = dict(model=WORDS + [None, 7], weights=CHOICES + ["/etc/passwd"], strategy=CHOICES, epochs=NUMBERS,
                    lr=[-1, 0, 1e6, 1e-12, "fast", True], batch_size=NUMBERS, img_size=NUMBERS + [5000],
                    val_fraction=[0, 1, -0.5, 2, "half"], augment=CHOICES, mixup=[-1, "x"], cutmix=[-1, 1e9],
                    label_smoothing=[-0.1, 1, 5], weight_decay=[-1, 5, None], freeze_epochs=[-1, 1.5, 1e9],
                    freeze_layers=[-3, 1e9], lr_mult=[0, -5, 0.5], drop_rate=[-0.1, 1, 3], drop_path_rate=[1, -1],
                    patience=[-1, 0.5], grad_clip=[-1, "x"], accum_steps=[0, -1, 10**6], bf16=CHOICES,
                    channels_last=CHOICES, seed=[-1, 2**40, 1.5, "x", None], progressive_resize=[None, "yes", 5],
                    head_lr=[-1, 0, 1e6, "fast", True], freeze_bn=CHOICES)
    return {
        "/load_data": dict(source=WORDS + [None, 123, ["a"], {"path": "/etc/passwd"}]),
        "/load_zip": dict(path=zips),
        "/load_hub": dict(dataset_id=WORDS + [None, 123], max_per_class=[-1, 0, 1.5, 1e12, "x", None],
                          config=WORDS[:6], split=WORDS[:6], image_column=WORDS[:6], label_column=WORDS[:6]),
        "/load_folder": dict(files=[None, [], [f(files.garbage())], [f(files.text())]],
                             paths=["", "not json", '["../../x.png"]', '["/etc/passwd"]', '{"a": 1}', None, "[]"]),
        "/train": training,
        # The LR finder checks its training settings with the Train tab's code: one bad value each is enough.
        "/lr_find": dict(start=[-1, 0, 100, "x", None], end=[-1, 0, 1e-9, None], n=[0, -5, 1, 1e9, "x"],
                         **{name: values[:1] for name, values in training.items()}),
        "/preview_augmentation": dict(augment=CHOICES, img_size=NUMBERS + [10**6], seed=[-1, 2**40, "x", None]),
        "/cell_images": dict(actual_name=CHOICES, predicted_name=CHOICES),
        "/predict": dict(img=images, use_tta=[None, "yes", 5], show_cam=[None, "no", []]),
        "/predict_sketch": dict(drawing=sketches, use_tta=[None, "yes"], show_cam=[5]),
        "/load_model": dict(files=models),
        "/push_to_hub": dict(repo_id=WORDS + [None, "a/b/c", "me/..", "me/model.git", "x" * 200 + "/m"],
                             hub_token=["", None, "hf_" + "x" * 5000, "\n"], make_private=[None, "yes", 5]),
        "/use_lr": dict(choice=CHOICES + [1e-3]),
        "/clean_rank": dict(class_name=CHOICES + WORDS, split=CHOICES + ["both", "test"]),
        "/clean_duplicates": dict(threshold=NUMBERS + [0.2, 2]),
        "/use_run": dict(name=WORDS + [None, 123, "model-20250101-000000-abcd"]),
        "/capture_add_class": dict(text=WORDS + [None, 123, "a/b", "__MACOSX", "tab\there"]),
        "/capture_upload": dict(files=[None, []] + [[i] for i in images if i] + [[f(files.png()), f(files.garbage())]],
                                current=CHOICES + WORDS),
        **{name: {} for name in NO_PARAMS},
    }


# A valid value for each parameter without a default, so each bad value is tried alone.
def baseline(files: Files) -> dict[str, dict]:
    return {"/predict": dict(img=handle_file(files.png())),
            "/predict_sketch": dict(drawing={"background": None, "layers": [], "composite": handle_file(files.png((64, 64)))}),
            "/cell_images": dict(actual_name=None, predicted_name=None), "/load_zip": dict(path=None),
            "/load_model": dict(files=None),
            "/load_hub": dict(dataset_id="builtin:shapes", max_per_class=100, config="", split="", image_column="",
                              label_column=""),
            "/load_folder": dict(files=[handle_file(files.png(name="a.png"))], paths='["cats/a.png"]'),
            "/push_to_hub": dict(repo_id="me/model", hub_token="hf_x"), "/use_lr": dict(choice=None),
            "/capture_add_class": dict(text="circle"), "/clean_rank": dict(class_name="all classes", split="validation"),
            "/clean_duplicates": dict(threshold=0.8),
            "/capture_upload": dict(files=[handle_file(files.png())], current="circle")}


def call(client, api_name: str, kwargs: dict, timeout: float = 120.0) -> tuple[str, str]:
    """Send one request: ("ok" | "error" | "queued", what came back). "queued": a training the input did not
    prevent (the value was valid after all) was waiting for the busy slot, and has been stopped."""
    if api_name not in STREAMS:
        try:
            return "ok", str(client.predict(**kwargs, api_name=api_name))[:300]
        except AppError as exc:
            return "error", str(exc)
    job = client.submit(**kwargs, api_name=api_name)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = job.done()
        if any("Waiting for a free" in str(out[0]) for out in job.outputs()):
            client.predict(api_name=STREAMS[api_name])
            job.result(timeout=timeout)
            return "queued", ""
        if done:
            try:
                return "ok", str(job.result())[:300]
            except AppError as exc:
                return "error", str(exc)
        time.sleep(0.05)
    raise AssertionError(f"{api_name} {kwargs} neither answered nor queued within {timeout:.0f} s")


def unclear(kind: str, text: str) -> str | None:
    """Why an answer is not a clear one (None when it is)."""
    if kind != "error":
        return None
    if not text.strip() or text.strip() in ("Error", "None"):
        return "empty message"
    if GENERIC_ERROR in text:
        return "Gradio's generic error (an exception nobody turned into a message)"
    if "Traceback" in text or 'File "/' in text:
        return "a traceback"
    if len(text) > 1500:
        return f"{len(text)} characters"
    return None
