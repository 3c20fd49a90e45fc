"""The Classify tab's handlers: classify an image or a drawing with the session's model, offer validation images as
examples, take in an uploaded model folder, say which model is in use."""
from __future__ import annotations

from dataclasses import dataclass

import gradio as gr
import numpy as np
from PIL import Image

from demo import actions
from demo.compute import compute
from demo.context import Context, user_errors
from demo.notice import Notice
from engine import models
from engine.errors import UserError
from engine.events import metrics_score, saved_score
from engine.export import read_config, read_metrics

TOP_K = 5
CLASSES_NAMED = 6  # class names spelled out in the line on the model in use


@dataclass
class ClassifyUI:
    """The Classify tab's components that handlers read or change."""

    key: gr.State
    image: gr.Image
    examples: gr.Gallery
    in_use: gr.Markdown
    label: gr.Label
    timing: gr.Markdown
    heatmap: gr.Image
    model_status: gr.Markdown
    notice: Notice  # under the image and drawing: why nothing was classified

    @property
    def prediction_outputs(self) -> list:
        """What classifying updates (the order is /predict's API output)."""
        return [self.key, self.label, self.timing, self.heatmap]


@user_errors
def predict(ctx: Context, ui: ClassifyUI, img, use_tta=False, show_cam=True, key=None) -> dict:
    """Top classes for one image (and its Grad-CAM overlay)."""
    if img is None:
        raise UserError("Add an image first: upload one, take a photo, or paste from the clipboard.")
    return classified(ctx, ui, key, img, use_tta, show_cam)


@user_errors
def predict_new(ctx: Context, ui: ClassifyUI, img, use_tta=False, show_cam=True, key=None) -> dict:
    """An image just added (uploaded, taken or pasted) is classified at once; a cleared one clears the result."""
    if img is None:
        return {ui.label: None, ui.timing: "", ui.heatmap: None}
    return classified(ctx, ui, key, img, use_tta, show_cam)


@user_errors
def predict_sketch(ctx: Context, ui: ClassifyUI, drawing, use_tta=False, show_cam=True, key=None) -> dict:
    """Top classes for a drawing from the sketchpad."""
    return classified(ctx, ui, key, flatten_sketch(drawing), use_tta, show_cam)


@user_errors
def show_examples(ctx: Context, ui: ClassifyUI, key=None) -> dict:
    return {ui.examples: compute.run(actions.validation_examples, ctx.workspace(key))}


@user_errors
def use_example(ctx: Context, ui: ClassifyUI, evt: gr.SelectData, use_tta=False, show_cam=True, key=None) -> dict:
    """Classify the example chosen in the gallery, and show it in the image box."""
    ws = ctx.workspace(key)
    picked = compute.run(actions.validation_examples, ws)[evt.index][0]
    return {ui.image: picked, **classified(ctx, ui, ws.key, Image.fromarray(picked), use_tta, show_cam)}


def classified(ctx: Context, ui: ClassifyUI, key, img, use_tta: bool, show_cam: bool) -> dict:
    ws = ctx.workspace(key)
    result, text, overlay = compute.run(actions.classify, ws, img, TOP_K, use_tta, show_cam)
    return {ui.key: ws.key, ui.label: result, ui.timing: text, ui.heatmap: overlay}


@user_errors(notice="model_status")
def load_model(ctx: Context, ui: ClassifyUI, files, key=None) -> dict:
    """Use an uploaded model folder (zip, or model.safetensors + config.json) for classifying."""
    ws = ctx.workspace(key)
    paths = [f if isinstance(f, str) else f.name for f in files or []]
    predictor = compute.run(actions.load_uploaded_model, ws, paths)
    names = predictor.class_names
    return {ui.key: ws.key,
            ui.model_status: f"Loaded: {len(names)} classes ({', '.join(names[:10])}), {predictor.img_size} px."}


def show_model(ctx: Context, ui: ClassifyUI, key=None) -> dict:
    """Which model classifies here: its name, classes, size and validation accuracy."""
    return {ui.in_use: model_in_use(ctx.workspace(key))}


def model_in_use(ws) -> str:
    """One line naming the session's model (from its folder's config.json and metrics.json), or how to get one."""
    if ws.model_dir is None:
        return ("No model yet: train one on the **Data** tab (*Train a first model now*, seconds) or on the "
                "**Train** tab.")
    try:
        config = read_config(ws.model_dir)
    except Exception:  # noqa: BLE001 - a folder that no longer reads: classifying will say what is wrong
        config = {}
    metrics = read_metrics(ws.model_dir)
    hp = metrics.get("hyperparameters", {})
    name = models.display_name(hp["model"], hp.get("weights")) if hp.get("model") else config.get("architecture") or "a model"
    names = config.get("label_names") or metrics.get("class_names") or []
    size = (config.get("pretrained_cfg", {}).get("input_size") or [None])[-1]
    run = next((r for r in reversed(ws.runs) if r["model_dir"] == str(ws.model_dir)), None)
    shown = ", ".join(names[:CLASSES_NAMED]) + (f" and {len(names) - CLASSES_NAMED} more" if len(names) > CLASSES_NAMED else "")
    score, metric = metrics_score(metrics)
    parts = [f"{len(names)} classes ({shown})" if names else "", f"{size} px" if size else "",
             saved_score(score, metric) if score is not None else "",
             (f"run {run['number']}: {run['label']}" if "number" in run else f"run: {run['label']}") if run
             else ("uploaded here" if "uploaded-model-" in str(ws.model_dir) else "")]
    return f"Model in use: **{name}**" + "".join(f" · {part}" for part in parts if part)


def flatten_sketch(drawing) -> Image.Image:
    """The sketchpad's composite (RGBA, transparent where nothing is drawn) as an RGB image on white."""
    composite = drawing.get("composite") if isinstance(drawing, dict) else None
    if composite is None:
        raise UserError("Draw something first.")
    rgba = composite.convert("RGBA") if isinstance(composite, Image.Image) else Image.fromarray(np.asarray(composite))
    alpha = np.asarray(rgba.convert("RGBA"))[..., 3]
    if not alpha.any():
        raise UserError("The drawing is empty: draw something first.")
    background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(background, rgba.convert("RGBA")).convert("RGB")
