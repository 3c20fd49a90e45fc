"""Classify tab: upload, webcam, paste or draw an image and see the model's top classes, where it looked
(Grad-CAM), and how long it took; try validation images as examples; or load a model folder someone exported."""
from __future__ import annotations

import shutil
import time
import uuid
from pathlib import Path

import gradio as gr
import numpy as np
from PIL import Image

from demo.compute import compute
from demo.context import Context, user_errors
from engine import data as data_lib
from engine.errors import UserError
from engine.export import check_model_folder, read_config, read_metrics
from engine.predict import Predictor

TOP_K = 5
EXAMPLES = 12  # validation images offered as examples
MODEL_FILES = {"model.safetensors", "config.json", "metrics.json", "README.md"}  # what a model folder may hold


def build(ctx: Context, key: gr.State, tab: gr.Tab):
    with gr.Row():
        with gr.Column():
            with gr.Tab("Image"):
                image = gr.Image(label="Image (upload, webcam or paste)", type="pil", image_mode=None,
                                 sources=["upload", "webcam", "clipboard"], height=300)
                classify_btn = gr.Button("Classify image", variant="primary")
            with gr.Tab("Draw"):
                sketch = gr.Sketchpad(label="Draw a shape", type="pil", canvas_size=(256, 256),
                                      brush=gr.Brush(default_size=8, colors=["#000000", "#d62728", "#1f77b4"]))
                sketch_btn = gr.Button("Classify drawing", variant="primary")
            with gr.Row():
                tta = gr.Checkbox(False, label="Test-time augmentation", info="Average with the mirror image")
                cam = gr.Checkbox(True, label="Show Grad-CAM", info="Where the model looked")
            examples = gr.Gallery(label="Examples from the validation images: choose one", columns=6, height=200,
                                  object_fit="contain", allow_preview=False, elem_id="classify-examples")
        with gr.Column():
            in_use = gr.Markdown("", elem_id="classify-model")
            label = gr.Label(num_top_classes=TOP_K, label="Prediction", elem_id="prediction")
            timing = gr.Markdown("", elem_id="prediction-time")
            heatmap = gr.Image(label="Grad-CAM", type="pil", interactive=False, height=260, elem_id="gradcam")
            with gr.Accordion("Use another model", open=False):
                gr.Markdown("Upload a model folder exported by Snapfit: its `.zip`, or `model.safetensors` with "
                            "`config.json`. Only safetensors weights are accepted.")
                upload = gr.File(label="Model .zip or files", file_count="multiple", file_types=[".zip", ".safetensors", ".json"])
                model_status = gr.Markdown("", elem_id="model-status")
    outputs = [key, label, timing, heatmap]

    @user_errors
    def predict(img, use_tta=False, show_cam=True, key=None):
        """Top classes for one image (and its Grad-CAM overlay)."""
        if img is None:
            raise UserError("Add an image first: upload one, take a photo, or paste from the clipboard.")
        return compute.run(classify, ctx, key, img, use_tta, show_cam)

    @user_errors
    def predict_sketch(drawing, use_tta=False, show_cam=True, key=None):
        """Top classes for a drawing from the sketchpad."""
        return compute.run(classify, ctx, key, flatten_sketch(drawing), use_tta, show_cam)

    @user_errors
    def show_examples(key=None):
        return compute.run(validation_examples, ctx.workspace(key))

    @user_errors
    def use_example(evt: gr.SelectData, use_tta=False, show_cam=True, key=None):
        ws = ctx.workspace(key)
        picked = compute.run(validation_examples, ws)[evt.index][0]
        return picked, *compute.run(classify, ctx, ws.key, Image.fromarray(picked), use_tta, show_cam)

    @user_errors
    def load_model(files, key=None):
        """Use an uploaded model folder (zip, or model.safetensors + config.json) for classifying."""
        ws = ctx.workspace(key)
        folder = model_from_upload([f if isinstance(f, str) else f.name for f in files or []], ws.folder)
        try:
            predictor = compute.run(Predictor.from_folder, folder)
        except Exception as exc:  # the right file names, unreadable contents: the session keeps the model it had
            shutil.rmtree(folder, ignore_errors=True)
            raise UserError(f"Could not load that model folder ({type(exc).__name__}): export it again from Snapfit, "
                            "or check that config.json and model.safetensors belong together.") from exc
        ws.set_model(folder, predictor=predictor)
        return ws.key, f"Loaded: {len(predictor.class_names)} classes ({', '.join(predictor.class_names[:10])}), {predictor.img_size} px."

    def show_model(key=None):
        """Which model classifies here: its name, classes, size and validation accuracy."""
        return model_in_use(ctx.workspace(key))

    classify_btn.click(predict, [image, tta, cam, key], outputs, api_name="predict", concurrency_limit=4)
    sketch_btn.click(predict_sketch, [sketch, tta, cam, key], outputs, api_name="predict_sketch", concurrency_limit=4)
    tab.select(show_examples, [key], [examples], api_visibility="private")
    tab.select(show_model, [key], [in_use], api_name="model_in_use", api_visibility="undocumented")
    examples.select(use_example, [tta, cam, key], [image, *outputs], api_visibility="private")
    upload.upload(load_model, [upload, key], [key, model_status], api_name="load_model").success(
        show_model, [key], [in_use], api_visibility="private")


def classify(ctx: Context, key, img, use_tta: bool = False, show_cam: bool = True):
    ws = ctx.workspace(key)
    predictor = ws.get_predictor()
    if predictor is None:
        raise UserError("There is no trained model yet: train one on the Train tab first.")
    t = time.perf_counter()
    result = predictor.predict([img], TOP_K, use_tta)[0]
    text = f"Predicted in {(time.perf_counter() - t) * 1000:.0f} ms"
    overlay = None
    if show_cam:
        overlay, caption = predictor.gradcam(img, next(iter(result)))
        text += f". {caption}."
    return ws.key, result, text, overlay


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
    name = metrics.get("hyperparameters", {}).get("model") or config.get("architecture") or "a model"
    names = config.get("label_names") or metrics.get("class_names") or []
    size = (config.get("pretrained_cfg", {}).get("input_size") or [None])[-1]
    run = next((r for r in reversed(ws.runs) if r["model_dir"] == str(ws.model_dir)), None)
    parts = [f"{len(names)} classes" if names else "", f"{size} px" if size else "",
             f"{metrics['val_accuracy']:.1%} validation accuracy" if "val_accuracy" in metrics else "",
             f"run: {run['label']}" if run else ("uploaded here" if "uploaded-model-" in str(ws.model_dir) else "")]
    return f"Model in use: **{name}**" + "".join(f" · {part}" for part in parts if part)


def validation_examples(ws) -> list:
    """A few validation images spread over the classes, as (array, class name), at the model's size if any."""
    dataset = ws.dataset_or_builtin()
    _, val_idx = data_lib.split_dataset(dataset, *ws.model_split)
    by_class = {}
    for i in val_idx:
        by_class.setdefault(dataset.labels[i], []).append(i)
    picks = []  # round-robin over the classes, so every class shows up
    for round_ in range(EXAMPLES):
        picks += [items[round_] for items in by_class.values() if round_ < len(items)]
    picks = picks[:EXAMPLES]
    predictor = ws.get_predictor()
    decoded, _ = data_lib.decode(dataset, picks, predictor.img_size if predictor else 96)
    return [(x.permute(1, 2, 0).numpy(), dataset.class_names[y]) for x, y in zip(decoded.x, decoded.y.tolist())]


def model_from_upload(paths: list[str], workspace_folder: Path) -> Path:
    """A model folder from uploaded files: a .zip of one, or the files themselves. Only safetensors weights."""
    if not paths:
        raise UserError("Choose a model .zip, or model.safetensors together with config.json.")
    dest = Path(workspace_folder) / f"uploaded-model-{uuid.uuid4().hex[:8]}"
    if len(paths) == 1 and paths[0].lower().endswith(".zip"):
        data_lib.safe_extract(Path(paths[0]), dest)  # refuses .. paths, links and zip bombs
        roots = {p.parent for p in dest.rglob("config.json")}
        folder = roots.pop() if len(roots) == 1 else dest
    else:
        dest.mkdir(parents=True)
        for path in paths:
            shutil.copyfile(path, dest / Path(path).name)
        folder = dest
    others = sorted(p.name for p in folder.iterdir() if p.name not in MODEL_FILES)
    if others:
        shutil.rmtree(dest, ignore_errors=True)
        raise UserError(f"Only safetensors model folders are accepted; remove {', '.join(others)} and try again.")
    try:
        return check_model_folder(folder)
    except UserError:
        shutil.rmtree(dest, ignore_errors=True)
        raise


def flatten_sketch(drawing) -> Image.Image:
    """The sketchpad's composite (RGBA, transparent where nothing is drawn) as an RGB image on white."""
    composite = drawing.get("composite") if isinstance(drawing, dict) else None
    if composite is None:
        raise UserError("Draw something first.")
    rgba = composite.convert("RGBA") if isinstance(composite, Image.Image) else Image.fromarray(np.asarray(composite))
    alpha = np.asarray(rgba.convert("RGBA"))[..., 3]
    if not alpha.any():
        raise UserError("The drawing is empty: draw a shape first.")
    background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(background, rgba.convert("RGBA")).convert("RGB")
