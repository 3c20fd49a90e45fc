"""ZeroGPU chunking (demo/zerogpu.py): each chunk is one `spaces.GPU` call; the chunks add up to the same model as
one run. The `spaces` package only exists on Hugging Face's runtime, so a stand-in records the calls."""
import importlib
import sys
import types

import pytest

from engine.stopping import StopToken
from engine.train import TrainConfig, fit, prepare

CFG = TrainConfig(model="resnet10t", weights="scratch", epochs=3, batch_size=32, img_size=32, lr=3e-3, bf16=False)


@pytest.fixture(scope="module")
def prepared(small_shapes):
    return prepare(small_shapes, 32)


@pytest.fixture
def zerogpu(monkeypatch):
    """demo.zerogpu imported where a `spaces` package exists; `calls` lists the duration of every GPU call."""
    calls = []

    def GPU(duration):  # noqa: N802 (the real name)
        def decorate(fn):
            def run(*args, **kwargs):
                calls.append(duration)
                yield from fn(*args, **kwargs)
            return run
        return decorate

    monkeypatch.setitem(sys.modules, "spaces", types.SimpleNamespace(GPU=GPU))
    module = importlib.reload(importlib.import_module("demo.zerogpu"))
    yield module, calls
    monkeypatch.delitem(sys.modules, "spaces")
    importlib.reload(module)


def test_without_spaces_the_decorator_changes_nothing():
    from demo import zerogpu

    def f():
        return 1

    assert "spaces" not in sys.modules and zerogpu.gpu(60)(f) is f


def test_a_run_in_gpu_calls_gives_the_model_of_one_run(zerogpu, prepared, tmp_path):
    module, calls = zerogpu
    events = list(module.train_in_chunks(prepared, CFG, str(tmp_path / "chunked"), StopToken(), budget=0))
    assert calls == [module.CHUNK_SECONDS] * 3  # one GPU call per epoch with a budget that fits only one
    assert [e.kind for e in events].count("paused") == 2 and events[-1].kind == "finished"
    list(fit(prepared, CFG, str(tmp_path / "whole")))
    assert (tmp_path / "chunked" / "model.safetensors").read_bytes() == (tmp_path / "whole" / "model.safetensors").read_bytes()
    assert not (tmp_path / "chunked.resume.pt").exists()


def test_stop_between_gpu_calls_keeps_the_best_epoch(zerogpu, prepared, tmp_path):
    module, calls = zerogpu
    stop, events = StopToken(), []
    for event in module.train_in_chunks(prepared, CFG, str(tmp_path / "m"), stop, budget=0):
        events.append(event)
        if event.kind == "paused":
            stop.stop()  # as the Stop button would while the chunk ran in the GPU worker
    assert events[-1].kind == "stopped" and events[-1].epochs_done == 1 and len(calls) == 1
    assert (tmp_path / "m" / "model.safetensors").is_file() and not (tmp_path / "m.resume.pt").exists()
