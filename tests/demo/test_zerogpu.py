"""ZeroGPU chunking (demo/zerogpu.py): each chunk is one `spaces.GPU` call; the chunks add up to the same model as
one run, and Stop reaches the chunk running in the GPU worker.

The `spaces` package only exists on Hugging Face's runtime, so `ForkingSpaces` stands in for it and does what its
`GPU` decorator does with a generator function (spaces/zero/wrappers.py, summed up in demo/zerogpu.py): fork a
worker process, send it the call's arguments pickled through a fork-context SimpleQueue (ForkingPickler, as the
real one: CPU tensors go through shared memory), run the generator there, and send every yielded value back
pickled. Nothing reaches the worker by inheritance, and nothing comes back but what pickles.
"""
import dataclasses
import functools
import importlib
import inspect
import json
import multiprocessing
import os
import pickle
import sys
import time

import pytest
import torch

from engine.stopping import StopToken
from engine.train import TrainConfig, decode_once, fit

HUNG_AFTER_S = 60
CFG = TrainConfig(model="resnet10t", weights="scratch", epochs=3, batch_size=32, img_size=32, lr=3e-3, bf16=False)


class ForkingSpaces:
    """The `spaces` module as a ZeroGPU Space has it, less the GPU: `calls` lists each call's duration, `pids` the
    process each ran in. Like spaces, one worker per decorated function is forked at its first call and serves
    the later ones while it lives; a call abandoned half-way (its results no longer wanted) ends it."""

    def __init__(self) -> None:
        self.calls: list[int] = []
        self.pids: list[int] = []
        self.workers: dict = {}

    def GPU(self, task=None, *, duration=None):  # noqa: N802 (the real name and signature)
        if task is None:
            return functools.partial(self.GPU, duration=duration)
        assert inspect.isgeneratorfunction(task), "the stand-in serves generator functions, as train_chunk is"

        @functools.wraps(task)
        def call(*args, **kwargs):
            self.calls.append(duration)
            worker, arg_queue, res_queue = self._worker(task)
            self.pids.append(worker.pid)
            # pickles now: an unpicklable argument raises here, as in spaces, and the worker waits on for a call
            arg_queue.put((args, kwargs))
            done, heard = False, time.monotonic()
            try:
                while True:
                    if not res_queue._reader.poll(0.2):
                        if not worker.is_alive() and not res_queue._reader.poll(0):
                            raise RuntimeError(f"GPU task aborted (the worker ended with code {worker.exitcode})")
                        if time.monotonic() - heard > HUNG_AFTER_S:  # spaces waits 20 minutes; a test need not
                            raise RuntimeError(f"GPU task hung: nothing from the worker for {HUNG_AFTER_S} s")
                        continue
                    kind, value = res_queue.get()
                    heard = time.monotonic()
                    if kind == "error":
                        done = True
                        raise value
                    if kind == "end":
                        done = True
                        return
                    yield value
            finally:
                if not done:  # abandoned or aborted: whatever the worker still sends would reach the next call
                    self._end(task)

        return call

    def _worker(self, task):
        worker = self.workers.get(task)
        if worker is None or not worker[0].is_alive():
            fork = multiprocessing.get_context("fork")
            arg_queue, res_queue = fork.SimpleQueue(), fork.SimpleQueue()
            # forked before any call's arguments are in a queue: they can only arrive pickled
            process = fork.Process(target=_serve, args=(task, arg_queue, res_queue), daemon=True)
            process.start()
            worker = self.workers[task] = (process, arg_queue, res_queue)
        return worker

    def _end(self, task) -> None:
        process, arg_queue, res_queue = self.workers.pop(task)
        process.kill()
        process.join()
        arg_queue.close()
        res_queue.close()

    def close(self) -> None:
        for task in list(self.workers):
            self._end(task)


def _serve(task, arg_queue, res_queue) -> None:
    """The worker: runs each call's generator, sending every value back pickled; an error is sent back to be raised."""
    while True:
        args, kwargs = arg_queue.get()
        try:
            for value in task(*args, **kwargs):
                res_queue.put(("ok", value))  # a value that does not pickle ends the call with that error
        except BaseException as exc:  # noqa: BLE001 - sent back and raised in the caller, as spaces does
            try:
                res_queue.put(("error", exc))
            except Exception:  # noqa: BLE001 - the error itself does not pickle
                res_queue.put(("error", RuntimeError(f"{type(exc).__name__}: {exc}")))
        else:
            res_queue.put(("end", None))


@pytest.fixture(scope="module")
def decoded(small_shapes):
    return decode_once(small_shapes, 32)


@pytest.fixture
def zerogpu(monkeypatch):
    """demo.zerogpu imported where a `spaces` package exists: (the module, the stand-in)."""
    spaces = ForkingSpaces()
    monkeypatch.setitem(sys.modules, "spaces", spaces)
    module = importlib.reload(importlib.import_module("demo.zerogpu"))
    yield module, spaces
    spaces.close()
    monkeypatch.delitem(sys.modules, "spaces")
    importlib.reload(module)


@pytest.fixture
def slow_steps():
    """Every training forward pass of the network takes at least 20 ms more, in this process and in workers forked
    from it (they inherit torch's global hooks), as steps on real photos would: a stop requested after the first
    step has a whole epoch of time to arrive before the epoch could end anyway."""
    def pause(module, args):
        if module.training and type(module).__name__ == "ResNet":
            time.sleep(0.02)

    handle = torch.nn.modules.module.register_module_forward_pre_hook(pause)
    yield
    handle.remove()


def test_without_spaces_the_decorator_changes_nothing():
    from demo import zerogpu

    def f():
        return 1

    assert "spaces" not in sys.modules and zerogpu.gpu(60)(f) is f


def test_a_run_in_gpu_calls_gives_the_model_of_one_run(zerogpu, decoded, tmp_path):
    module, spaces = zerogpu
    # the server's own CPU work (decoding, predictions) starts PyTorch's thread pool before the worker is forked:
    # without demo.zerogpu.one_cpu_thread_when_forked the worker would wait forever on its first parallel operation
    torch.randn(2_000_000).mul_(2).sum()
    events = list(module.train_in_chunks(decoded, CFG, str(tmp_path / "chunked"), StopToken(), budget=0))
    assert spaces.calls == [module.CHUNK_SECONDS] * 3  # one GPU call per epoch with a budget that fits only one
    assert [e.kind for e in events].count("paused") == 2 and events[-1].kind == "finished"
    # all three in the worker, which saved the model folder there, from weights resumed through the checkpoint
    assert len(set(spaces.pids)) == 1 and os.getpid() not in spaces.pids
    assert json.loads((tmp_path / "chunked" / "metrics.json").read_text())["pid"] == spaces.pids[0]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the worker ran (sums over another number of threads round differently)
    try:
        list(fit(decoded, CFG, str(tmp_path / "whole")))
    finally:
        torch.set_num_threads(threads)
    assert (tmp_path / "chunked" / "model.safetensors").read_bytes() == (tmp_path / "whole" / "model.safetensors").read_bytes()
    assert not (tmp_path / "chunked.resume.pt").exists()


def test_stop_pressed_while_a_chunk_runs_ends_it_in_the_worker_after_the_current_step(zerogpu, decoded, tmp_path,
                                                                                      slow_steps):
    module, spaces = zerogpu
    cfg = dataclasses.replace(CFG, batch_size=4)  # 24 steps an epoch
    stop, events = StopToken(), []
    for event in module.train_in_chunks(decoded, cfg, str(tmp_path / "m"), stop, budget=0):
        events.append(event)
        if event.kind == "step" and not stop.stopped:
            stop.stop()  # as the Stop button does, from the server process, while the worker trains
    kinds = [e.kind for e in events]
    started = next(e for e in events if e.kind == "started")
    # the worker itself stopped within its first epoch: no pause, no second call, far fewer steps than an epoch
    assert kinds[-1] == "stopped" and "paused" not in kinds and kinds.count("epoch_end") <= 1 and len(spaces.calls) == 1
    assert 1 <= kinds.count("step") <= 3 < started.steps_per_epoch
    metrics = json.loads((tmp_path / "m" / "metrics.json").read_text())
    assert metrics["pid"] == spaces.pids[0] != os.getpid()  # what it had was saved there, in the worker
    assert not (tmp_path / "m.resume.pt").exists()


def test_stop_between_gpu_calls_keeps_the_best_epoch(zerogpu, decoded, tmp_path):
    module, spaces = zerogpu
    stop, events = StopToken(), []
    for event in module.train_in_chunks(decoded, CFG, str(tmp_path / "m"), stop, budget=0):
        events.append(event)
        if event.kind == "paused":
            stop.stop()  # after the worker's last step of this chunk, before the next call
    assert events[-1].kind == "stopped" and events[-1].epochs_done == 1 and len(spaces.calls) == 1
    assert (tmp_path / "m" / "model.safetensors").is_file() and not (tmp_path / "m.resume.pt").exists()


def test_the_stand_in_really_pickles_so_an_unpicklable_argument_fails(zerogpu, decoded, tmp_path):
    """What made chunked training fail on a real ZeroGPU Space: a plain StopToken (a threading.Event inside) given
    to the GPU function. The stand-in refuses it as spaces does, before any worker runs the function."""
    module, spaces = zerogpu
    chunk = module.train_chunk(decoded, CFG, str(tmp_path / "m"), StopToken(), str(tmp_path / "m.resume.pt"), 0)
    with pytest.raises(TypeError, match="cannot pickle a StopToken that is not shareable"):
        next(chunk)
    with pytest.raises((TypeError, AttributeError, pickle.PicklingError), match="(?i)pickle"):
        next(module.train_chunk(decoded, CFG, str(tmp_path / "m"), lambda: False, str(tmp_path / "m.resume.pt"), 0))
    assert len(spaces.calls) == 2 and not (tmp_path / "m").exists()


def test_an_error_in_the_worker_reaches_the_caller(zerogpu, decoded, tmp_path):
    """A UserError raised in the worker (here: a model name that does not exist) comes back pickled and is raised."""
    from engine.errors import UserError

    module, _ = zerogpu
    cfg = dataclasses.replace(CFG, model="no_such_model")
    with pytest.raises(UserError, match="no_such_model"):
        list(module.train_in_chunks(decoded, cfg, str(tmp_path / "m"), StopToken(), budget=0))


def test_lazily_decoded_data_crosses_to_the_worker_too(small_shapes):
    """Beyond the memory budget, Decoded holds LazyImages (the labelled images, decoded per batch): it pickles, and
    the copy decodes the same pixels."""
    lazy = decode_once(small_shapes, 32, memory_budget_mb=0)
    assert not isinstance(lazy.train.x, torch.Tensor)
    copy = pickle.loads(pickle.dumps(lazy))
    assert torch.equal(copy.train.x[[0, 5]], lazy.train.x[[0, 5]]) and torch.equal(copy.val.y, lazy.val.y)
