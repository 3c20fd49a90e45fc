"""What the training options promise, checked on what really happens to the network (resnet10t from scratch, 3
classes of generated shapes, seconds per test): strategies and freeze_layers freeze exactly what they say,
weights and BatchNorm statistics alike, and train the rest; patience stops a run; progressive resizing and
cutmix/mixup change what the network is given.

Only the public API is used: `fit` and its events, the model folder, `models.create` / `models.layer_groups`.
The network while it trains is seen from outside through `Watch`: a global forward pre-hook finds it (the
outermost module of its class, called in training mode) and records what it is given; `fit` is a generator, so
at each EpochEnd the network is paused at the end of that epoch and its state can be copied.
(tests/engine/test_pretrained.py checks frozen groups on the pretrained EfficientNet-Lite; these cover a network
from scratch, every strategy and the epoch-by-epoch course of `progressive`.)
"""
import dataclasses
import functools
import itertools

import pytest
import torch
from timm.models.resnet import ResNet

from engine import data as data_lib
from engine import models, sample
from engine.events import EpochEnd, Log
from engine.export import load_model_folder
from engine.train import TrainConfig, decode_once, fit

CFG = TrainConfig(model="resnet10t", weights="scratch", epochs=1, batch_size=16, img_size=32, lr=1e-2, bf16=False,
                  augment="none")
N_GROUPS = 6  # resnet10t's layer groups: stem, layer1..layer4, classifier


@pytest.fixture(scope="module")
def data32():
    """3 classes of generated shapes, 16 each, decoded at 32 px: 39 to train on (3 batches of 16), 9 to validate."""
    images, labels = sample.generate(n_per_class=16, seed=2)
    keep = [i for i, y in enumerate(labels) if y < 3]
    labelled = data_lib.LabelledImages(list(sample.CLASSES[:3]), [images[i] for i in keep], [labels[i] for i in keep],
                                       "shapes")
    return decode_once(labelled, 32)


class Watch:
    """Runs fit() and watches the network it trains (see the module docstring)."""

    def __init__(self, keep_inputs: bool = False) -> None:
        self.keep_inputs = keep_inputs
        self.events: list = []
        self.model: torch.nn.Module | None = None
        self.first_train_state: dict | None = None  # the network at its first training forward pass
        self.epochs_before_first_train_call: int | None = None
        self.states: dict[int, dict] = {}  # epoch -> the network at its end
        self.sizes: dict[int, set[int]] = {}  # epoch -> input sizes of its training forward passes
        self.inputs: list[torch.Tensor] = []  # the training batches as the network got them (keep_inputs)

    def _hook(self, module, args) -> None:
        if not (isinstance(module, ResNet) and module.training):
            return
        x = args[0]
        if self.model is None:
            self.model, self.epochs_before_first_train_call = module, self._epochs_done()
            self.first_train_state = copy_state(module)
        self.sizes.setdefault(self._epochs_done() + 1, set()).add(x.shape[-1])
        if self.keep_inputs:
            self.inputs.append(x.detach().float().clone())

    def _epochs_done(self) -> int:
        return sum(isinstance(e, EpochEnd) for e in self.events)

    def run(self, data, cfg: TrainConfig, out) -> list:
        handle = torch.nn.modules.module.register_module_forward_pre_hook(self._hook)
        try:
            for event in fit(data, cfg, str(out)):
                self.events.append(event)
                if isinstance(event, EpochEnd) and self.model is not None:
                    self.states[event.epoch] = copy_state(self.model)
        finally:
            handle.remove()
        assert self.events[-1].kind == "finished", self.events[-1]
        return self.events

    def epochs(self) -> int:
        return self._epochs_done()


def copy_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def initial_state(cfg: TrainConfig, size: int) -> dict[str, torch.Tensor]:
    """The network fit() starts from: it seeds torch with cfg.seed right before building it."""
    torch.manual_seed(cfg.seed)
    model, _ = models.create(cfg.model, 3, cfg.weights, img_size=size)
    return copy_state(model)


def saved_state(out) -> dict[str, torch.Tensor]:
    return copy_state(load_model_folder(out)[0])


@functools.cache
def group_names() -> list[list[str]]:
    """State-dict names of each layer group (models.layer_groups: stem first, classifier last); a BatchNorm's
    statistics go with the group of its weight."""
    model, _ = models.create("resnet10t", 3)
    names = {id(p): n for n, p in model.named_parameters()}
    groups = [[names[id(p)] for p in group] for group in models.layer_groups(model)]
    owner = {n.rsplit(".", 1)[0]: i for i, group in enumerate(groups) for n in group}
    for name, _ in model.named_buffers():
        groups[owner[name.rsplit(".", 1)[0]]].append(name)
    assert len(groups) == N_GROUPS and sum(map(len, groups)) == len(model.state_dict())
    return groups


def is_bn_stat(name: str) -> bool:
    return name.endswith(("running_mean", "running_var", "num_batches_tracked"))


def check_frozen_below(before: dict, after: dict, first_trainable: int, when: str) -> None:
    """Groups before `first_trainable` are bit-identical, weights and BatchNorm statistics; every tensor of the
    others changed."""
    for i, names in enumerate(group_names()):
        moved = [k for k in names if not torch.equal(before[k], after[k])]
        if i < first_trainable:
            assert moved == [], f"{when}: group {i} should be frozen but changed: {moved[:4]}"
        else:
            assert moved == names, f"{when}: group {i} should train but kept {sorted(set(names) - set(moved))[:4]}"
    assert any(is_bn_stat(k) for k in itertools.chain(*group_names()[:first_trainable])) or first_trainable == 0


# ---------------------------------------------------------------------------------------------- freezing


def test_head_trains_the_classifier_and_nothing_else(data32, tmp_path):
    cfg = dataclasses.replace(CFG, strategy="head", epochs=3)
    watch = Watch()
    watch.run(data32, cfg, tmp_path / "m")
    assert watch.model is None  # the whole network never ran in training mode: only the head, on cached features
    check_frozen_below(initial_state(cfg, 32), saved_state(tmp_path / "m"), N_GROUPS - 1, "head")


def test_finetune_trains_only_the_head_in_its_frozen_epochs_then_everything(data32, tmp_path):
    cfg = dataclasses.replace(CFG, strategy="finetune", freeze_epochs=2, epochs=1)
    watch = Watch()
    watch.run(data32, cfg, tmp_path / "m")
    assert watch.epochs() == 3 and watch.epochs_before_first_train_call == 2
    # the network as the frozen epochs left it (seen at its first forward pass once unfrozen, before any step)
    check_frozen_below(initial_state(cfg, 32), watch.first_train_state, N_GROUPS - 1, "after the frozen epochs")
    check_frozen_below(watch.first_train_state, watch.states[3], 0, "the unfrozen epoch")


@pytest.mark.parametrize("strategy,freeze_layers,epochs,first_trainable", [
    ("full", 0, 1, [0]),  # everything trains
    ("full", 2, 1, [2]),  # the stem and layer1 stay as they were
    ("progressive", 0, 4, [4, 3, 2, 1]),  # one more group from the top every epoch (the classifier and layer4 first)
    ("progressive", 3, 3, [4, 3, 3]),  # ... never below freeze_layers
])
def test_each_epoch_trains_exactly_the_groups_it_should(data32, tmp_path, strategy, freeze_layers, epochs, first_trainable):
    cfg = dataclasses.replace(CFG, strategy=strategy, freeze_layers=freeze_layers, epochs=epochs)
    watch = Watch()
    watch.run(data32, cfg, tmp_path / "m")
    before = initial_state(cfg, 32)
    assert all(torch.equal(before[k], v) for k, v in watch.first_train_state.items())  # it started from the seed
    for epoch, first in enumerate(first_trainable, start=1):
        check_frozen_below(before, watch.states[epoch], first, f"{strategy}, freeze_layers={freeze_layers}, epoch {epoch}")
        before = watch.states[epoch]


# ---------------------------------------------------------------------------------------------- early stopping


def test_patience_stops_a_run_whose_validation_loss_stops_improving(data32, tmp_path):
    """A learning rate so small that nothing is learned: the validation loss cannot improve after the first epoch,
    so with patience 2 the run ends after epoch 3 of 12, says so, and saves a model; without patience all 12 run."""
    cfg = dataclasses.replace(CFG, strategy="head", epochs=12, lr=1e-8, patience=2)
    events = list(fit(data32, cfg, str(tmp_path / "patient")))
    assert [e.epoch for e in events if isinstance(e, EpochEnd)] == [1, 2, 3]
    assert any(isinstance(e, Log) and "Early stopping" in e.message and "2 epochs" in e.message for e in events)
    assert events[-1].kind == "finished" and load_model_folder(tmp_path / "patient")
    events = list(fit(data32, dataclasses.replace(cfg, patience=0), str(tmp_path / "all")))
    assert sum(isinstance(e, EpochEnd) for e in events) == 12
    assert not any(isinstance(e, Log) and "Early stopping" in e.message for e in events)


# ---------------------------------------------------------------------------------------------- what the network is given


def test_progressive_resizing_starts_at_half_size_and_ends_at_full(data32, tmp_path):
    cfg = dataclasses.replace(CFG, strategy="full", epochs=3, progressive_resize=True)
    watch = Watch()
    watch.run(data32, cfg, tmp_path / "m")
    sizes = [watch.sizes[e] for e in (1, 2, 3)]
    assert all(len(s) == 1 for s in sizes), sizes  # one size for a whole epoch
    first, middle, last = (s.pop() for s in sizes)
    assert (first, last) == (16, 32) and first < middle < last


def normalized_sources(data, out) -> torch.Tensor:
    """The training images as the network would get them unmixed (no augmentation): normalised with the
    mean and std the model folder records."""
    pre = load_model_folder(out)[1]["pretrained_cfg"]
    mean, std = (torch.tensor(pre[k]).view(1, 3, 1, 1) for k in ("mean", "std"))
    return (data.train.x.float() / 255.0 - mean) / std


def pasted_rectangle(match_a: torch.Tensor, match_b: torch.Tensor) -> bool:
    """Is every pixel from image a or image b, with those of one of them filling a rectangle in the other?
    (match_x: row x col, True where the pixel equals image x's.)"""
    if not bool((match_a | match_b).all()):
        return False
    for outer, inner in ((match_a, match_b), (match_b, match_a)):
        rest = ~outer
        rows, cols = rest.any(1).nonzero(), rest.any(0).nonzero()
        if len(rows) and bool(inner[rows.min():rows.max() + 1, cols.min():cols.max() + 1].all()):
            return True
    return False


def test_cutmix_pastes_a_rectangle_of_another_training_image(data32, tmp_path):
    cfg = dataclasses.replace(CFG, strategy="full", epochs=1, cutmix=1.0, batch_size=8)
    watch = Watch(keep_inputs=True)
    watch.run(data32, cfg, tmp_path / "m")
    sources = normalized_sources(data32, tmp_path / "m")
    inputs = torch.cat(watch.inputs)
    assert len(inputs) == len(sources) // 8 * 8  # every full batch of 8 (a mixed batch needs an even size)
    pasted = 0
    for z in inputs:
        match = (z[None] - sources).abs().amax(dim=1) < 1e-4  # (source, row, col): pixel equal to that source's
        a = int(match.flatten(1).sum(1).argmax())  # the image most of it comes from
        if bool(match[a].all()):
            continue  # kept whole (an empty rectangle)
        b = int(match[:, ~match[a]].sum(1).argmax())  # the image the rest comes from
        assert pasted_rectangle(match[a], match[b]), "a training input is not one image with a rectangle of another"
        pasted += 1
    assert pasted >= len(inputs) // 2, f"only {pasted} of {len(inputs)} training inputs had a rectangle pasted in"


def test_mixup_blends_two_training_images(data32, tmp_path):
    cfg = dataclasses.replace(CFG, strategy="full", epochs=1, mixup=1.0, batch_size=8)
    watch = Watch(keep_inputs=True)
    watch.run(data32, cfg, tmp_path / "m")
    sources = normalized_sources(data32, tmp_path / "m").flatten(1)
    inputs = torch.cat(watch.inputs).flatten(1)
    assert len(inputs) == len(sources) // 8 * 8
    blended = 0
    for z in inputs:
        near = (sources - z).norm(dim=1).topk(8, largest=False).indices.tolist()
        for a, b in itertools.combinations(near, 2):  # z = lam * a + (1 - lam) * b for some pair of nearby images?
            d = sources[a] - sources[b]
            lam = float((z - sources[b]) @ d / (d @ d))
            if float((z - sources[b] - lam * d).abs().max()) < 1e-3 and 0.02 < lam < 0.98:
                blended += 1
                break
    assert blended >= len(inputs) // 2, f"only {blended} of {len(inputs)} training inputs were blends of two images"
