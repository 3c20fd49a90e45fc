"""The training settings as a form holds them, and back: what the Train tab shows for a recipe, and the TrainConfig
that what a form sends stands for (or a message naming the bad value).

Shared by the Train and LR finder tabs (the finder runs with the Train tab's settings) and the page's load, which
restores a reloaded run's settings; no tab imports another for it.
"""
from __future__ import annotations

from dataclasses import asdict, fields

from engine.errors import UserError
from engine.train import RECIPES, TrainConfig, preflight

TRISTATE = {"auto": None, "on": True, "off": False}  # bf16, channels_last, freeze_bn: None lets the engine decide
FORM_TRISTATE = {value: name for name, value in TRISTATE.items()}
TRISTATE_FIELDS = {"bf16", "channels_last", "freeze_bn"}
FORM_FIELDS = {f.name for f in fields(TrainConfig)} - {"memory_budget_mb"}  # what the Train tab sets
WHOLE = {"epochs", "batch_size", "img_size", "freeze_epochs", "freeze_layers", "patience", "accum_steps", "seed"}
NUMBERS = {"lr", "head_lr", "val_fraction", "weight_decay", "label_smoothing", "mixup", "cutmix", "lr_mult", "drop_rate",
           "drop_path_rate", "grad_clip"}
OPTIONAL = {"lr", "head_lr"}  # an empty box: the engine's default for these weights and strategy


def form_values(recipe: dict) -> dict:
    """The Train tab's value for every setting: the recipe's, the rest TrainConfig's defaults, in the form's terms
    (auto/on/off for the tri-state options, an empty box for an LR the engine picks)."""
    cfg = asdict(TrainConfig(**recipe))
    return {name: FORM_TRISTATE[value] if name in TRISTATE_FIELDS else value for name, value in cfg.items()
            if name in FORM_FIELDS}


def recipe_of(ctx, cfg: TrainConfig) -> str | None:
    """The name of the recipe `cfg` is exactly (as this place offers it: `ctx.recipe`), or None when any setting
    differs."""
    return next((name for name in RECIPES if TrainConfig(**ctx.recipe(name)) == cfg), None)


def config_from(settings: dict) -> TrainConfig:
    """The form's values (keyed by TrainConfig field) as a checked TrainConfig; a UserError names a bad value."""
    return preflight(TrainConfig.from_dict({name: _convert(name, value) for name, value in settings.items()}))


def _convert(name: str, value):
    label = name.replace("_", " ").capitalize()
    if name in TRISTATE_FIELDS:
        if value not in TRISTATE:
            raise UserError(f"{label} must be auto, on or off (got {value!r}).")
        return TRISTATE[value]
    if name == "progressive_resize":
        return bool(value)
    if name not in WHOLE | NUMBERS:
        return value
    if name in OPTIONAL and value in (None, ""):
        return None  # empty: the engine's default for these weights
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise UserError(f"{label} must be a number (got {value!r}).") from None
    if name in WHOLE:
        if not number.is_integer():
            raise UserError(f"{label} must be a whole number (got {value!r}).")
        if name == "seed" and not 0 <= number < 2**32:  # numpy's generators take no other seeds
            raise UserError(f"Seed must be a whole number from 0 to {2**32 - 1} (got {value!r}).")
        return int(number)
    return number
