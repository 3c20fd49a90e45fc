"""A run cut into chunks at epoch boundaries (as on a ZeroGPU Space) ends with exactly the weights of one
uninterrupted run: engine/checkpoint.py saves and restores everything a run depends on."""
from dataclasses import fields
from pathlib import Path

import pytest
import torch

from engine import checkpoint as checkpoint_module
from engine.checkpoint import RunState, load
from engine.errors import UserError
from engine.train import TrainConfig, decode_once, fit

RECIPES = {
    # finetune: a head-only phase on cached features, then all layers; augmentation, mixup (numpy draws) and
    # dropout exercise every random generator a run uses
    "finetune+mixup": dict(model="resnet10t", weights="scratch", strategy="finetune", freeze_epochs=1, epochs=3,
                           batch_size=32, img_size=32, augment="standard", mixup=0.4, drop_rate=0.2, lr=3e-3),
    "progressive+resize": dict(model="resnet10t", weights="scratch", strategy="progressive", epochs=3, batch_size=32,
                               img_size=32, progressive_resize=True, augment="light", lr=3e-3, patience=5),
}


@pytest.fixture(scope="module")
def decoded(small_shapes):
    return decode_once(small_shapes, 32)


@pytest.mark.parametrize("recipe", RECIPES)
def test_chunks_end_with_the_weights_of_one_run(decoded, tmp_path, recipe):
    cfg = TrainConfig(**RECIPES[recipe], bf16=False)
    whole = list(fit(decoded, cfg, str(tmp_path / "whole")))
    assert whole[-1].kind == "finished"

    checkpoint, calls, events = tmp_path / "run.ckpt", 0, []
    while True:  # a budget of 0 s: every call ends after its first epoch
        calls += 1
        chunk = list(fit(decoded, cfg, str(tmp_path / "chunked"), checkpoint=str(checkpoint), time_budget=0))
        events += chunk
        if chunk[-1].kind != "paused":
            break
        assert Path(chunk[-1].model_dir, "model.safetensors").is_file()  # the best epoch so far is on disk
        assert load(checkpoint).epoch == chunk[-1].epochs_done
    epochs = sum(1 for e in whole if e.kind == "epoch_end")
    assert calls == epochs and events[-1].kind == "finished"
    assert not checkpoint.exists()  # finished: nothing left to resume
    assert (tmp_path / "chunked" / "model.safetensors").read_bytes() == (tmp_path / "whole" / "model.safetensors").read_bytes()
    same = [(e.epoch, e.train_loss, e.val_loss) for e in events if e.kind == "epoch_end"]
    assert same == [(e.epoch, e.train_loss, e.val_loss) for e in whole if e.kind == "epoch_end"]
    assert [e.step for e in events if e.kind == "step"] == [e.step for e in whole if e.kind == "step"]


def test_a_generous_budget_never_pauses(decoded, tmp_path):
    cfg = TrainConfig(model="resnet10t", weights="scratch", epochs=2, batch_size=32, img_size=32)
    events = list(fit(decoded, cfg, str(tmp_path / "m"), checkpoint=str(tmp_path / "c"), time_budget=3600))
    assert events[-1].kind == "finished" and not any(e.kind == "paused" for e in events)


def test_the_checkpoint_is_the_documented_run_state(decoded, tmp_path):
    """The file holds RunState's fields, each described in engine/checkpoint.py's docstring, and nothing that
    depends on a private class; a checkpoint of another format is refused with a message saying what to do."""
    cfg = TrainConfig(model="resnet10t", weights="scratch", epochs=2, batch_size=32, img_size=32, bf16=False)
    ckpt = tmp_path / "run.ckpt"
    paused = list(fit(decoded, cfg, str(tmp_path / "m"), checkpoint=str(ckpt), time_budget=0))[-1]
    assert paused.kind == "paused"
    saved = torch.load(ckpt, weights_only=True)
    assert set(saved) == {f.name for f in fields(RunState)}
    assert all(name in checkpoint_module.__doc__ for name in saved)
    assert saved["format"] == checkpoint_module.FORMAT and saved["epoch"] == 1 and saved["epochs_in_phase"] == 1
    assert saved["phase_step"] == saved["step"] > 0 and saved["optimizer"] is not None  # half-way through the phase
    assert len(saved["history"]) == 1 and saved["best_epoch"] == 1 and saved["best_weights"].keys() == saved["model"].keys()
    saved["format"] = 0
    torch.save(saved, ckpt)
    with pytest.raises(UserError, match="another Snapfit version .* delete it"):
        list(fit(decoded, cfg, str(tmp_path / "m"), checkpoint=str(ckpt), time_budget=0))


STOP_AFTER = 2  # epochs of the interrupted run that end normally


def interrupted(decoded, cfg, out_dir, checkpoint, monkeypatch, how: str):
    """Run until STOP_AFTER epochs have ended and a few steps of the next, then end it `how`: asked to stop (the
    Stop button), or failing (a crash in a step). Checkpoints at every epoch end (EVERY = 0)."""
    from engine.stopping import StopToken

    monkeypatch.setattr(checkpoint_module, "EVERY", 0.0)
    stop, ends, steps = StopToken(), 0, 0
    run = fit(decoded, cfg, str(out_dir), stop, checkpoint=str(checkpoint))
    try:
        for event in run:
            ends += event.kind == "epoch_end"
            steps += event.kind == "step" and ends == STOP_AFTER
            if steps == 2:
                if how == "fail":
                    run.throw(RuntimeError("the machine ran out of memory"))
                stop.stop()
    except RuntimeError:
        pass
    monkeypatch.setattr(checkpoint_module, "EVERY", 60.0)


@pytest.mark.parametrize("how", ["stop", "fail"])
def test_a_stopped_or_failed_run_resumes_to_the_weights_of_one_run(decoded, tmp_path, monkeypatch, how):
    cfg = TrainConfig(**RECIPES["finetune+mixup"], bf16=False)
    whole = list(fit(decoded, cfg, str(tmp_path / "whole")))
    ckpt = checkpoint_module.beside(tmp_path / "run")
    interrupted(decoded, cfg, tmp_path / "run", ckpt, monkeypatch, how)
    assert ckpt.is_file() and load(ckpt).epoch == STOP_AFTER  # the last epoch boundary, not the partial epoch
    resumed = list(fit(decoded, cfg, str(tmp_path / "run"), checkpoint=str(ckpt)))
    assert resumed[-1].kind == "finished" and not ckpt.exists()
    assert (tmp_path / "run" / "model.safetensors").read_bytes() == (tmp_path / "whole" / "model.safetensors").read_bytes()
    assert [e.val_loss for e in resumed if e.kind == "epoch_end"] == [e.val_loss for e in whole if e.kind == "epoch_end"][STOP_AFTER:]


def test_a_resume_with_another_model_or_other_data_is_refused(decoded, small_shapes, tmp_path, monkeypatch):
    cfg = TrainConfig(**RECIPES["finetune+mixup"], bf16=False)
    ckpt = checkpoint_module.beside(tmp_path / "run")
    interrupted(decoded, cfg, tmp_path / "run", ckpt, monkeypatch, "stop")
    other_model = TrainConfig(**dict(RECIPES["finetune+mixup"], model="resnet14t"), bf16=False)
    with pytest.raises(UserError, match="checkpoint of another run .*model 'resnet10t' there, 'resnet14t' here"):
        list(fit(decoded, other_model, str(tmp_path / "run"), checkpoint=str(ckpt)))
    other_images = decode_once(small_shapes, 32, seed=1)  # the same images, split otherwise
    with pytest.raises(UserError, match="other images"):
        list(fit(other_images, cfg, str(tmp_path / "run"), checkpoint=str(ckpt)))
    with pytest.raises(UserError, match="other data"):
        list(fit(decode_once(small_shapes, 48), cfg, str(tmp_path / "run"), checkpoint=str(ckpt)))
    assert ckpt.is_file()  # refused, not consumed
