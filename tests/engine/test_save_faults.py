"""A crash while a model folder, its zip or its ONNX file is written never leaves one that looks complete:
neither an exception mid-write nor the process being killed (SIGKILL) mid-write."""
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import timm

from engine import export
from engine.errors import UserError
from engine.export import check_model_folder, save_model_folder, zip_model_folder

ROOT = Path(__file__).resolve().parents[2]
CLASSES = ["a", "b"]


def tiny_model():
    return timm.create_model("resnet10t", pretrained=False, num_classes=len(CLASSES))


def save(out_dir, model=None, epoch=1):
    return save_model_folder(model or tiny_model(), out_dir, CLASSES, dict(input_size=(3, 32, 32), mean=(0.5,) * 3, std=(0.5,) * 3),
                             dict(best_epoch=epoch))


def test_an_exception_mid_write_leaves_no_folder_and_keeps_the_previous_one(tmp_path, monkeypatch):
    out = save(tmp_path / "model", epoch=1)

    def breaks(*args, **kwargs):
        raise OSError("disk full (injected)")

    monkeypatch.setattr(export.json, "dumps", breaks)  # after the weights and config.json, before metrics.json
    with pytest.raises(OSError, match="injected"):
        save(tmp_path / "model", epoch=2)
    with pytest.raises(OSError, match="injected"):
        save(tmp_path / "fresh")
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]  # no half-written fresh/, no temp folders
    check_model_folder(out)
    assert export.read_metrics(out)["best_epoch"] == 1  # the earlier save, whole


def test_a_failed_zip_leaves_no_zip(tmp_path, monkeypatch):
    out = save(tmp_path / "model")

    def breaks(base_name, *args, **kwargs):
        Path(f"{base_name}.zip").write_bytes(b"PK\x03\x04 truncated")
        raise OSError("disk full (injected)")

    monkeypatch.setattr(export.shutil, "make_archive", breaks)
    with pytest.raises(OSError):
        zip_model_folder(out, out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]  # neither model.zip nor a partial one


KILLED_MID_SAVE = textwrap.dedent("""
    import sys, time
    import engine  # noqa: F401  (before timm)
    import timm
    from engine import export

    real_dumps = export.json.dumps
    def hang(*args, **kwargs):  # weights and config.json are written by now; metrics.json comes next
        print("writing", flush=True)
        time.sleep(600)
        return real_dumps(*args, **kwargs)
    export.json.dumps = hang
    model = timm.create_model("resnet10t", pretrained=False, num_classes=2)
    export.save_model_folder(model, sys.argv[1], ["a", "b"], dict(input_size=(3, 32, 32), mean=(0.5,) * 3, std=(0.5,) * 3), {})
""")


@pytest.mark.parametrize("existing", [False, True])
def test_a_process_killed_mid_save_leaves_no_folder_that_looks_complete(tmp_path, existing):
    out = tmp_path / "model"
    if existing:
        save(out, epoch=1)
    script = tmp_path / "save.py"
    script.write_text(KILLED_MID_SAVE)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, str(script), str(out)], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout.readline().strip() == "writing"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    partial = [p for p in tmp_path.iterdir() if p.name.startswith(".model.tmp-")]
    assert len(partial) == 1 and (partial[0] / "model.safetensors").is_file()  # killed at the worst moment
    if existing:
        check_model_folder(out)
        assert export.read_metrics(out)["best_epoch"] == 1
    else:
        assert not out.exists()
        with pytest.raises(UserError):
            check_model_folder(out)


def test_the_onnx_file_appears_only_when_complete(tmp_path, monkeypatch):
    pytest.importorskip("onnx")
    out = save(tmp_path / "model")
    import onnx

    def breaks(proto, path, *args, **kwargs):
        Path(path).write_bytes(b"half an onnx file")
        raise OSError("disk full (injected)")

    monkeypatch.setattr(onnx, "save", breaks)
    with pytest.raises(OSError):
        export.to_onnx(out, tmp_path / "model.onnx")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
