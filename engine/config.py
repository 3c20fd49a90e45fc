"""Every option of a training run and of the LR finder, declared once: name, type, default, valid range, help.

`TrainConfig` and `FinderConfig` are the tables. Each field's metadata (see `option`) holds what the rest of the
code derives from it: validation (`checked`), the command line's flags (engine/__main__.py), the Train and LR
finder tabs' controls and the parsing of what a form sends (`parse`). A recipe is a name and the values that
differ from TrainConfig's defaults; the CLI and the app start from the same recipe, `DEFAULT_RECIPE`.

TrainConfig's defaults are the small from-scratch run of the `scratch` recipe: they are what a test or a script
gets when it names only what it cares about, and they never download anything.
"""
from __future__ import annotations

import math
import typing
from dataclasses import MISSING, dataclass, field, fields

from engine.errors import UserError

STRATEGIES = ("head", "finetune", "full", "progressive")
AUGMENTATIONS = ("none", "light", "standard")

# The learning rates a run takes when none is given (TrainConfig.resolved_lr):
# a linear head on cached features learns best with a much higher LR than fine-tuning (sign-digits, 20 photos per
# class, tf_efficientnet_lite0 at 224 px, 30 epochs: 2e-3 68 %, 1e-2 88 %, 3e-2 90 %, 1e-1 72 %);
HEAD_LR = 3e-2
# fastai fine_tune's base LR for loaded weights;
FINETUNE_LR = 2e-3
# the best of a sweep for short from-scratch runs (benchmarks/vs_fastai.py).
SCRATCH_LR = 1e-2


@dataclass(frozen=True)
class Option:
    """One option as the rest of the code sees it (built from a dataclass field by `options()`)."""

    name: str
    type: type  # int, float, str or bool
    optional: bool  # None is allowed: the engine decides ("auto", or an empty box for a number)
    default: typing.Any
    label: str  # what a person sees: the form's label, the start of every message about it
    help: str
    low: float | None = None
    high: float | None = None
    choices: tuple | None = None
    step: float | None = None  # a form's slider step; None: a number box
    advanced: bool = True  # in the form's "Advanced" section
    in_form: bool = True  # the Train tab offers it

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def check(self, value) -> str | None:
        """What is wrong with `value` for this option, as a sentence naming it, or None if it is valid."""
        if value is None:
            return None if self.optional else f"{self.label} must be set."
        if self.type is bool:
            return None if isinstance(value, bool) else f"{self.label} must be {'auto, ' if self.optional else ''}on or off (got {value!r})."
        if self.choices is not None:
            return None if value in self.choices else f"{self.label} must be one of {', '.join(self.choices)} (got {value!r})."
        if self.type is str:
            return None if isinstance(value, str) and value.strip() else f"{self.label} must be a name (got {value!r})."
        if self.type is int and not _is_int(value):
            return f"{self.label} must be a whole number{self._range()} (got {value!r})."
        if self.type is float and not _is_num(value):
            return f"{self.label} must be a number{self._range()} (got {value!r})."
        if (self.low is not None and value < self.low) or (self.high is not None and value > self.high):
            return f"{self.label} must be {'a whole number' if self.type is int else 'a number'}{self._range()} (got {value!r})."
        return None

    def _range(self) -> str:
        if self.low is not None and self.high is not None:
            return f" from {_number(self.low)} to {_number(self.high)}"
        return f" of at least {_number(self.low)}" if self.low is not None else ""

    def parse(self, value):
        """A form's or a command line's value (text, a float from a number box, "auto"/"on"/"off") as this option's
        type; a UserError naming the option when it is not one. The range is checked later, by `checked`."""
        if self.type is bool:
            words = {"auto": None, "on": True, "off": False} if self.optional else {"on": True, "off": False}
            if isinstance(value, bool):
                return value
            if value not in words:
                raise UserError(f"{self.label} must be {', '.join(words)} (got {value!r}).")
            return words[value]
        if self.type is str:
            return value
        if self.optional and value in (None, ""):
            return None  # an empty box: the engine's choice
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise UserError(f"{self.label} must be a number (got {value!r}).") from None
        if self.type is int:
            if not number.is_integer():
                raise UserError(f"{self.label} must be a whole number (got {value!r}).")
            return int(number)
        return number


def option(default, label: str, help: str, **spec):
    """A dataclass field that is also an entry of the table of options (spec: Option's fields)."""
    return field(default=default, metadata=dict(label=label, help=help, **spec))


@dataclass
class TrainConfig:
    model: str = option("resnet10t.c3_in1k", "Model", "any timm model name", advanced=False)
    weights: str = option("scratch", "Weights", "pretrained (ImageNet: built in for tf_efficientnet_lite0/1/2, else from "
                          "the Hub), scratch (random), or a local .safetensors/.pth file or Snapfit model folder",
                          advanced=False)
    strategy: str = option("auto", "Strategy", "head: only a new classifier, on cached features; finetune: the head, then "
                           "the whole network; full: every layer from the start; progressive: one more layer group per "
                           "epoch; auto: finetune with loaded weights, full from scratch",
                           choices=("auto", *STRATEGIES), advanced=False)
    epochs: int = option(12, "Epochs", "epochs (for finetune: after its frozen epochs)", low=1, high=1000, step=1,
                         advanced=False)
    lr: float | None = option(None, "Learning rate", f"peak learning rate of the head (of every layer for full); empty: "
                              f"{HEAD_LR:g} for a head on features, {FINETUNE_LR:g} to fine-tune, {SCRATCH_LR:g} from scratch",
                              low=1e-8, high=10.0, advanced=False)
    head_lr: float | None = option(None, "Head learning rate", f"finetune: the LR of its head-only epochs on cached "
                                   f"features; empty: {HEAD_LR:g}", low=1e-8, high=10.0)
    batch_size: int = option(64, "Batch size", "images per step (under torchrun: per process)", low=2, high=4096, step=2)
    img_size: int = option(48, "Image size (px)", "training image size; smaller is faster", low=16, high=1024, step=16)
    val_fraction: float = option(0.2, "Validation fraction", "share of each class held out for validation", low=0.01,
                                 high=0.9, step=0.01)
    augment: str = option("none", "Augmentation", "none, light or standard; short runs learn faster without "
                          "(benchmarks/vs_fastai.py)", choices=AUGMENTATIONS)
    weight_decay: float = option(0.05, "Weight decay", "AdamW weight decay (not on biases and norms)", low=0.0, high=1.0)
    label_smoothing: float = option(0.1, "Label smoothing", "label smoothing of the loss", low=0.0, high=0.5, step=0.05)
    mixup: float = option(0.0, "Mixup alpha", "timm Mixup alpha; 0 = off", low=0.0, high=1.0, step=0.1)
    cutmix: float = option(0.0, "CutMix alpha", "timm CutMix alpha; 0 = off", low=0.0, high=1.0, step=0.1)
    progressive_resize: bool = option(False, "Progressive resizing", "start at half the image size, finish at the full size")
    freeze_epochs: int = option(1, "Frozen epochs", "finetune: head-only epochs (on cached features) before unfreezing",
                                low=0, high=1000, step=1)
    freeze_layers: int = option(0, "Frozen layer groups", "the first K layer groups never train", low=0, high=16, step=1)
    freeze_bn: bool | None = option(None, "Freeze BatchNorm statistics", "keep BatchNorm statistics as loaded while "
                                    "fine-tuning; auto: on with loaded weights, off from scratch")
    lr_mult: float = option(100.0, "Discriminative LR ratio", "finetune / progressive: the stem trains at LR / this, the "
                            "layer groups between at geometric steps", low=1.0, high=1e4)
    drop_rate: float = option(0.0, "Dropout before the classifier", "dropout rate", low=0.0, high=0.9, step=0.05)
    drop_path_rate: float = option(0.0, "Drop path (stochastic depth)", "drop path rate", low=0.0, high=0.9, step=0.05)
    patience: int = option(0, "Early stopping patience", "epochs without a better validation loss before stopping; 0 = off",
                           low=0, high=50, step=1)
    grad_clip: float = option(0.0, "Gradient clipping", "max gradient norm; 0 = off", low=0.0, high=1000.0)
    accum_steps: int = option(1, "Gradient accumulation steps", "batches whose gradients add up to one step", low=1,
                              high=64, step=1)
    bf16: bool | None = option(None, "bf16 autocast", "auto: where the hardware supports it")
    channels_last: bool | None = option(None, "channels_last", "memory format; auto: with bf16, or for depthwise "
                                        "convolutions (EfficientNet), where it is faster")
    seed: int = option(0, "Seed", "random seed (split, initialisation, augmentation)", low=0, high=2**32 - 1)
    memory_budget_mb: int | None = option(None, "Memory budget (MB)", "decoded images kept in memory; beyond it they are "
                                          "decoded per batch; 0: every batch; empty: $SNAPFIT_MEMORY_BUDGET_MB or 2048",
                                          low=0, high=10**7, in_form=False)

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        return cls(**_known(cls, values)).checked()

    def checked(self) -> TrainConfig:
        """Raise a UserError naming the first bad value and the range that would work."""
        check(self)
        return self

    def resolved_strategy(self) -> str:
        if self.strategy == "auto":
            return "full" if self.from_scratch else "finetune"
        return self.strategy

    @property
    def from_scratch(self) -> bool:
        return self.weights in ("scratch", "", None)

    def resolved_lr(self) -> float:
        """The LR given, else the one measured best for these weights and this strategy."""
        if self.lr is not None:
            return self.lr
        if self.from_scratch:
            return SCRATCH_LR
        return HEAD_LR if self.resolved_strategy() == "head" else FINETUNE_LR

    def resolved_head_lr(self) -> float:
        return HEAD_LR if self.head_lr is None else self.head_lr

    def resolved_freeze_bn(self) -> bool:
        return not self.from_scratch if self.freeze_bn is None else self.freeze_bn


# The LR range test's default length: this share of the training run's optimiser steps, within these bounds. Under
# 20 steps the curve is too short to suggest anything; beyond 100 (fastai's fixed default) it says little new, and a
# test longer than the run it prepares costs more than it can save.
AUTO_STEPS_SHARE, AUTO_STEPS_MIN, AUTO_STEPS_MAX = 0.25, 20, 100


def auto_steps(training_steps: int) -> int:
    """The range test's steps when none are given, for a training run of `training_steps` optimiser steps."""
    return min(AUTO_STEPS_MAX, max(AUTO_STEPS_MIN, round(AUTO_STEPS_SHARE * training_steps)))


@dataclass
class FinderConfig:
    """The LR range test's own options (it also takes a TrainConfig for the model, data and strategy)."""

    start_lr: float = option(1e-7, "Start LR", "first LR of the range test", low=1e-10, high=1.0)
    end_lr: float = option(10.0, "End LR", "last LR of the range test", low=1e-6, high=1e4)
    num_steps: int | None = option(None, "Steps", f"steps of the range test, one batch each; empty: auto, a quarter "
                                   f"of the training run's steps ({AUTO_STEPS_MIN} to {AUTO_STEPS_MAX})", low=10, high=1000)
    stop_div: bool = option(True, "Stop when the loss diverges", "end the test once the smoothed loss exceeds 4x its "
                            "minimum (fastai's stop_div)")

    def checked(self) -> FinderConfig:
        check(self)
        if self.start_lr >= self.end_lr:
            raise UserError(f"The start LR must be below the end LR (got {self.start_lr:g} to {self.end_lr:g}).")
        return self


# Named starting points: the app's Train tab offers them, the CLI's --recipe takes their names. Each gives only
# the values that differ from TrainConfig's defaults. Measured in benchmarks/pretrained_recipes.py (README).
RECIPES = {
    # ImageNet EfficientNet-Lite0 (built in, engine/embedded.py), frozen; a linear head on its 224 px features.
    # About a minute on 2 CPU cores for 2,000 photos, seconds for 200.
    "quick": dict(model="tf_efficientnet_lite0.in1k", weights="pretrained", strategy="head", epochs=30, img_size=224,
                  batch_size=32),
    # The same head first, then the whole network fine-tuned with its BatchNorm statistics kept (about 10 minutes).
    "best": dict(model="tf_efficientnet_lite0.in1k", weights="pretrained", strategy="finetune", freeze_epochs=30,
                 epochs=3, lr=2e-4, lr_mult=1.0, img_size=224, batch_size=32),
    # TrainConfig's defaults: a small ResNet from scratch at 48 px; on the built-in shapes about 97 % validation
    # accuracy in ~14 s on 2 CPU cores (tests/engine/test_train.py asserts it). For demos and tests, not photos.
    "scratch": dict(),
}
DEFAULT_RECIPE = "quick"


def recipe(name: str, **overrides) -> TrainConfig:
    """The named recipe as a TrainConfig, with any values overridden."""
    if not isinstance(name, str) or name not in RECIPES:
        raise UserError(f"Unknown recipe {name!r}: choose one of {', '.join(RECIPES)}.")
    return TrainConfig(**RECIPES[name] | overrides)


def options(cls=TrainConfig) -> dict[str, Option]:
    """The table of options of a config class, by name, in declaration order."""
    return _options(cls)


def check(config) -> None:
    """Raise a UserError for the first option of `config` (a TrainConfig or FinderConfig) outside its range."""
    for name, opt in options(type(config)).items():
        problem = opt.check(getattr(config, name))
        if problem:
            raise UserError(problem)


def parse(cls, values: dict) -> dict:
    """A form's values (by option name) converted to the options' types; a UserError names the first bad one."""
    table = options(cls)
    return {name: table[name].parse(value) for name, value in _known(cls, values).items()}


def _known(cls, values: dict) -> dict:
    unknown = set(values) - {f.name for f in fields(cls)}
    if unknown:
        what = "training option" if cls is TrainConfig else "option"
        raise UserError(f"Unknown {what}(s): {', '.join(sorted(unknown))}.")
    return values


_TABLES: dict[type, dict[str, Option]] = {}


def _options(cls) -> dict[str, Option]:
    if cls not in _TABLES:
        hints = typing.get_type_hints(cls)
        table = {}
        for f in fields(cls):
            args = typing.get_args(hints[f.name])
            base = next(a for a in args if a is not type(None)) if args else hints[f.name]
            assert f.default is not MISSING, f"{cls.__name__}.{f.name} needs a default"
            table[f.name] = Option(f.name, base, type(None) in args, f.default, **f.metadata)
        _TABLES[cls] = table
    return _TABLES[cls]


def _number(v: float) -> str:
    return str(v) if isinstance(v, int) else f"{v:g}"


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
