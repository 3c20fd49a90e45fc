"""The training settings as a form holds them, and back, made from engine/config.py's table of options: the
controls (label, range, help and default come from the table), what the Train tab shows for a recipe, and the
TrainConfig that what a form sends stands for (or a message naming the bad value).

Shared by the Train and LR finder tabs (the finder runs with the Train tab's settings) and the page's load, which
restores a reloaded run's settings; no tab imports another for it.

How an option becomes a control: a few choices -> Radio (more -> Dropdown); on/off -> Checkbox; on/off/auto ->
Radio of "auto", "on", "off"; a number with a slider step -> Slider over its valid range, capped by where the app
runs (demo/space.py); any other number -> Number box (empty = the engine's choice, for an optional one).
"""
from __future__ import annotations

from dataclasses import asdict

import gradio as gr

from engine.config import RECIPES, Option, TrainConfig, options, parse
from engine.train import preflight

TRISTATE = {None: "auto", True: "on", False: "off"}  # bf16, channels_last, freeze_bn: None lets the engine decide


def form_value(opt: Option, value):
    """An option's value as its control shows it."""
    return TRISTATE[value] if opt.type is bool and opt.optional else value


def form_values(recipe: dict) -> dict:
    """The Train tab's value for every setting: the recipe's, the rest TrainConfig's defaults, in the form's terms
    (auto/on/off for the tri-state options, an empty box for an LR the engine picks)."""
    table = options(TrainConfig)
    return {name: form_value(table[name], value) for name, value in asdict(TrainConfig(**recipe)).items()
            if table[name].in_form}


def recipe_of(ctx, cfg: TrainConfig) -> str | None:
    """The name of the recipe `cfg` is exactly (as this place offers it: `ctx.recipe`), or None when any setting
    differs."""
    return next((name for name in RECIPES if TrainConfig(**ctx.recipe(name)) == cfg), None)


def config_from(settings: dict) -> TrainConfig:
    """The form's values (keyed by TrainConfig field) as a checked TrainConfig; a UserError names a bad value."""
    return preflight(TrainConfig.from_dict(parse(TrainConfig, settings)))


def control(opt: Option, value, cap: float | None = None, elem_prefix: str = "", **extra) -> gr.components.Component:
    """The control for one option, showing `value` (in the form's terms)."""
    common = dict(label=opt.label, info=opt.help[:1].upper() + opt.help[1:],
                  elem_id=f"{elem_prefix}{opt.name.replace('_', '-')}") | extra
    if opt.type is bool and opt.optional:
        return gr.Radio(list(TRISTATE.values()), value=value, **common)
    if opt.type is bool:
        return gr.Checkbox(value=value, **common)
    if opt.choices is not None:
        kind = gr.Radio if len(opt.choices) <= 3 else gr.Dropdown
        return kind(list(opt.choices), value=value, **common)
    if opt.step is not None:
        return gr.Slider(opt.low, opt.high if cap is None else min(opt.high, cap), value=value, step=opt.step, **common)
    return gr.Number(value=value, precision=0 if opt.type is int else None, **common)


def controls(cls, values: dict, names, caps: dict | None = None, elem_prefix: str = "") -> dict:
    """{option name: control} for the options of `cls` in `names` (in the table's order), at `values` (form terms)."""
    caps = caps or {}
    return {o.name: control(o, values[o.name], caps.get(o.name), elem_prefix)
            for o in options(cls).values() if o.name in names}
