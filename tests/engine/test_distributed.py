"""Training over several processes: torchrun, 2 processes, gloo on the CPU, a tiny generated dataset.

One run (the `finetune` strategy: an epoch of the head on cached features, then an epoch of all layers under
DistributedDataParallel) serves most tests. `python -m torch.distributed.run` is torchrun without relying on
the console script being on PATH.
"""
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from engine import data as data_lib
from engine import distributed, multilabel, sample
from engine.evaluate import confusion_matrix
from engine.export import load_model_folder
from engine.train import HEAD_LR, Learner, TrainConfig, decode_once, epoch_batches, fit
from tests.engine.test_cli import save_folder
from tests.live_app import free_port

ROOT = Path(__file__).resolve().parents[2]
TRAIN = ["--model", "resnet10t", "--img-size", "32", "--no-bf16"]  # fp32: the comparisons below are exact to ~1e-6

# Loaded by every Python process through PYTHONPATH: records, per rank, each write (open for writing, mkdir,
# rename, rmtree) under SNAPFIT_WATCH, so the test sees which process wrote the model folder.
WATCH = textwrap.dedent("""
    import os, sys
    if os.environ.get("SNAPFIT_WATCH") and "RANK" in os.environ:
        _fd = os.open(os.path.join(os.environ["SNAPFIT_WATCH_LOG"], "rank" + os.environ["RANK"]), os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        _WRITES = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
        def _hook(event, args):
            if event == "open":
                path, mode, flags = args
                writes = any(c in mode for c in "wax+") if isinstance(mode, str) else bool((flags or 0) & _WRITES)
            elif event in ("os.mkdir", "os.rename", "os.replace", "shutil.rmtree"):
                path, writes = args[0], True
            else:
                return
            if writes and isinstance(path, (str, os.PathLike)) and os.fspath(path).startswith(os.environ["SNAPFIT_WATCH"]):
                os.write(_fd, (event + " " + os.fspath(path) + "\\n").encode())
        sys.addaudithook(_hook)
""")


def torchrun(*args, processes=2, extra_env=None):
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1") | (extra_env or {})
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(processes), "--master-addr", "127.0.0.1",
           "--master-port", str(free_port()), "-m", "engine", "train", "--recipe", "scratch", *args]  # args may name another
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, cwd=ROOT)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """3 classes of 35 images: 7 validation images per class, 21 in all, an odd number, so a sharding that
    padded the validation set to a multiple of 2 would count an image twice."""
    images, labels = sample.generate(n_per_class=35, seed=3)
    keep = [i for i, y in enumerate(labels) if y < 3]
    return save_folder(tmp_path_factory.mktemp("ddp") / "data", [images[i] for i in keep], [labels[i] for i in keep],
                       list(sample.CLASSES[:3]))


@pytest.fixture(scope="module")
def run(folder, tmp_path_factory):
    """The 2-process run: (completed process, model folder, {rank: what it wrote under the folder's parent})."""
    tmp = tmp_path_factory.mktemp("ddp-run")
    (tmp / "site").mkdir()
    (tmp / "site" / "sitecustomize.py").write_text(WATCH)
    logs, out = tmp / "writes", tmp / "runs" / "model"
    logs.mkdir()
    r = torchrun("--data", str(folder), *TRAIN, "--strategy", "finetune", "--freeze-epochs", "1", "--epochs", "1",
                 "--batch-size", "8", "--out", str(out),
                 extra_env=dict(PYTHONPATH=f"{tmp / 'site'}{os.pathsep}{ROOT}", SNAPFIT_WATCH=str(out.parent), SNAPFIT_WATCH_LOG=str(logs)))
    writes = {int(p.name.removeprefix("rank")): p.read_text().splitlines() for p in logs.iterdir()}
    return r, out, writes


def test_two_processes_finish_and_only_rank_0_reports(run):
    r, out, _ = run
    assert r.returncode == 0, r.stderr
    results = [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]
    assert len(results) == 1 and results[0]["kind"] == "finished" and Path(results[0]["model_dir"]) == out
    assert r.stderr.count("epoch 1:") == 1 and r.stderr.count("epoch 2:") == 1  # rank 1 printed no progress
    assert "2 processes (gloo)" in r.stderr


def test_the_model_folder_is_written_once_by_rank_0(run):
    r, out, writes = run
    assert r.returncode == 0, r.stderr
    assert sorted(writes) == [0, 1]  # both ranks were watched
    assert writes[1] == []
    assert any(w.startswith("os.rename") for w in writes[0]) and any(w.endswith("metrics.json") for w in writes[0])
    assert sorted(p.name for p in out.parent.iterdir()) == ["model"]  # no temporary or second folder left behind


def test_every_process_ends_with_the_same_weights(run):
    r, out, _ = run
    record = json.loads((out / "metrics.json").read_text())["distributed"]
    assert record["processes"] == 2 and record["backend"] == "gloo" and record["global_batch_size"] == 16
    # each rank hashed its own state dict (BatchNorm statistics included) after the last step and once the best epoch's
    # weights were back in place: the last epoch trained every layer under DDP, the best may be the head-only first
    assert len(record["last_sha256"]) == 2 and record["last_sha256"][0] == record["last_sha256"][1]
    saved = record["saved_sha256"]
    assert len(saved) == 2 and saved[0] == saved[1] == distributed.state_hash(load_file(out / "model.safetensors"))


def test_validation_metrics_count_every_image_once(run, folder):
    """The gathered predictions equal those of one process running the saved model over the validation split."""
    r, out, _ = run
    metrics = json.loads((out / "metrics.json").read_text())
    decoded = decode_once(data_lib.load(str(folder)), 32, 0.2, 0)
    assert len(decoded.val) % 2 == 1 and metrics["num_val"] == len(decoded.val)
    model, _ = load_model_folder(out)
    logits = Learner(decoded, TrainConfig(model="resnet10t", img_size=32, bf16=False), model=model).predict_val()
    assert metrics["confusion_matrix"] == confusion_matrix(decoded.val.y, logits.argmax(1), 3).tolist()
    assert metrics["val_accuracy"] == pytest.approx((logits.argmax(1) == decoded.val.y).float().mean().item())


def test_head_on_cached_features_matches_one_process_with_the_global_batch(run, folder, tmp_path):
    """The first epoch trained the head on features embedded half by each rank. With equal halves of every
    batch and averaged gradients it is the same computation as one process with twice the batch."""
    r, out, _ = run
    history = json.loads((out / "metrics.json").read_text())["history"]
    # finetune's head-only epochs train at the head LR (engine.train.HEAD_LR), so the one-process head run does too
    cfg = TrainConfig(model="resnet10t", strategy="head", epochs=1, lr=HEAD_LR, img_size=32, batch_size=16, bf16=False)
    one = next(e for e in fit(data_lib.load(str(folder)), cfg, str(tmp_path / "one")) if e.kind == "epoch_end")
    assert history[0]["train_loss"] == pytest.approx(one.train_loss, abs=1e-5)
    assert history[0]["val_loss"] == pytest.approx(one.val_loss, abs=1e-5) and history[0]["val_acc"] == one.val_acc


# Loaded through PYTHONPATH: the process of rank SNAPFIT_HANG_RANK stops answering at its third training step,
# as one on a machine that froze or lost its network would.
HANG = textwrap.dedent("""
    import os, time
    if os.environ.get("SNAPFIT_HANG_RANK") == os.environ.get("RANK"):
        import torch
        _steps = [0]
        def _hang(module, args):
            if hasattr(module, "pretrained_cfg") and module.training:
                _steps[0] += 1
                if _steps[0] == 3:
                    time.sleep(600)
        torch.nn.modules.module.register_module_forward_pre_hook(_hang)
""")


def test_a_process_that_stops_answering_ends_the_run_with_one_line(folder, tmp_path):
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "sitecustomize.py").write_text(HANG)
    r = torchrun("--data", str(folder), "--out", str(tmp_path / "model"), "--epochs", "2", "--batch-size", "16", *TRAIN,
                 extra_env=dict(PYTHONPATH=f"{tmp_path / 'site'}{os.pathsep}{ROOT}", SNAPFIT_HANG_RANK="1",
                                SNAPFIT_DIST_TIMEOUT="5"))
    assert r.returncode != 0
    assert "error: lost contact with another training process (Timed out" in r.stderr, r.stderr[-3000:]
    assert "raise SNAPFIT_DIST_TIMEOUT (now 5 s)" in r.stderr
    assert "[rank0]: Traceback" not in r.stderr  # rank 0's own report is the one line
    assert not (tmp_path / "model").exists()


def test_a_zip_is_loaded_as_in_one_process_split_included(tmp_path):
    """Under torchrun the first process unpacks the zip and the others read what it unpacked: the run must still
    honour --split and record how the data was loaded, as a single process does."""
    images, labels = sample.generate(n_per_class=20, seed=4)
    keep = [i for i, y in enumerate(labels) if y < 2]
    root = tmp_path / "shapes"
    save_folder(root / "train", [images[i] for i in keep[:30]], [labels[i] for i in keep[:30]], list(sample.CLASSES[:2]))
    save_folder(root / "val", [images[i] for i in keep[30:]], [labels[i] for i in keep[30:]], list(sample.CLASSES[:2]))
    archive = shutil.make_archive(str(tmp_path / "shapes"), "zip", root_dir=root)
    shutil.rmtree(root)
    r = torchrun("--data", archive, "--split", "train", "--out", str(tmp_path / "model"), "--epochs", "1", "--batch-size", "8",
                 *TRAIN)
    assert r.returncode == 0, r.stderr[-3000:]
    metrics = json.loads((tmp_path / "model" / "metrics.json").read_text())
    assert metrics["num_train"] + metrics["num_val"] == len(keep[:30])  # the train/ folder only
    assert metrics["data"]["load"] == dict(source=archive, split="train")


def test_too_few_validation_images_for_the_processes(tmp_path):
    images, labels = sample.generate(n_per_class=3, seed=0)
    keep = [i for i, y in enumerate(labels) if y == 0] + [i for i, y in enumerate(labels) if y == 1][:1]  # 3 circles, 1 square
    data = save_folder(tmp_path / "data", [images[i] for i in keep], [labels[i] for i in keep], list(sample.CLASSES[:2]))
    r = torchrun("--data", str(data), *TRAIN, "--epochs", "1", "--out", str(tmp_path / "model"))
    assert r.returncode != 0 and not (tmp_path / "model").exists()
    message = "3 training and 1 validation images are too few for 2 processes (each needs at least one of each)"
    assert f"error: {message}" in r.stderr and f"error (rank 1): {message}" in r.stderr  # a clear exit, not a hang


def test_other_commands_refuse_to_run_under_torchrun(monkeypatch, capsys, tmp_path):
    from engine.__main__ import main

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    assert main(["lr-find", "--out", str(tmp_path)]) == 2
    assert capsys.readouterr().err == ("error (rank 1): Only `train` runs over several processes: "
                                       "run `python -m engine lr-find` without torchrun.\n")


@pytest.mark.parametrize("n,processes", [(10, 2), (9, 2), (7, 3), (2, 4)])
def test_training_shards_are_equal_and_cover_every_item(n, processes):
    order = torch.randperm(n)
    shards = [distributed.shard_order(order, r, processes) for r in range(processes)]
    assert len({len(s) for s in shards}) == 1  # the same number of batches on every process
    assert set(torch.cat(shards).tolist()) == set(range(n))
    assert len(torch.cat(shards)) - n == -n % processes  # only the padding repeats items


def test_one_process_batches_as_before(small_shapes):
    """Alone, the sharded epoch is exactly data_lib.batches' shuffled epoch: the single-process run is unchanged."""
    decoded = decode_once(small_shapes, 32)
    learner = Learner(decoded, TrainConfig(model="resnet10t", img_size=32, batch_size=32))
    reference = torch.Generator().manual_seed(0)
    for mixing in (False, True):
        expected = list(data_lib.batches(len(decoded.train), 32, True, reference, drop_last=mixing))
        got = epoch_batches(learner, len(decoded.train), mixing, learner.generator)
        assert len(got) == len(expected) and all(torch.equal(a, b) for a, b in zip(got, expected))


def test_only_a_lost_process_reads_as_one():
    gloo = RuntimeError("[/__w/pytorch/third_party/gloo/gloo/transport/tcp/unbound_buffer.cc:78] Timed out waiting 5000ms "
                        "for recv operation to complete")
    message = distributed.lost_peer_message(gloo)
    assert message.startswith("lost contact with another training process (Timed out waiting 5000ms") and "unbound" not in message
    assert distributed.lost_peer_message(RuntimeError("mat1 and mat2 shapes cannot be multiplied")) is None
    assert distributed.lost_peer_message(ValueError("timed out")) is None


def test_a_multi_label_run_scores_every_validation_image_once(tmp_path):
    """Multi-label under torchrun: the mAP and thresholds saved are those of the saved model on the whole
    validation set, as one process computes them."""
    r = torchrun("--data", "builtin:shapes-multi", *TRAIN, "--epochs", "1", "--batch-size", "32", "--out", str(tmp_path / "m"))
    assert r.returncode == 0, r.stderr[-2000:]
    metrics = json.loads((tmp_path / "m" / "metrics.json").read_text())
    decoded = decode_once(data_lib.load("builtin:shapes-multi"), 32, 0.2, 0)
    assert metrics["multi_label"] is True and metrics["num_val"] == len(decoded.val)
    model, config = load_model_folder(tmp_path / "m")
    probs = Learner(decoded, TrainConfig(model="resnet10t", img_size=32, bf16=False), model=model).predict_val().sigmoid()
    assert metrics["val_map"] == pytest.approx(multilabel.mean_average_precision(probs, decoded.val.y), abs=1e-4)
    assert config["thresholds"] == metrics["thresholds"]
