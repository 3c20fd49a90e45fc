"""Classify tab: upload, webcam, paste or draw an image and see the model's top classes."""
from __future__ import annotations

import time

import gradio as gr
import numpy as np
from PIL import Image

from demo.context import Context, user_errors
from engine.errors import UserError

TOP_K = 5


def build(ctx: Context, key: gr.State):
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
        with gr.Column():
            label = gr.Label(num_top_classes=TOP_K, label="Prediction", elem_id="prediction")
            timing = gr.Markdown("", elem_id="prediction-time")
    outputs = [key, label, timing]

    @user_errors
    def predict(img, key=None):
        """Top classes for one image."""
        if img is None:
            raise UserError("Add an image first: upload one, take a photo, or paste from the clipboard.")
        return classify(ctx, key, img)

    @user_errors
    def predict_sketch(drawing, key=None):
        """Top classes for a drawing from the sketchpad."""
        return classify(ctx, key, flatten_sketch(drawing))

    classify_btn.click(predict, [image, key], outputs, api_name="predict", concurrency_limit=4)
    sketch_btn.click(predict_sketch, [sketch, key], outputs, api_name="predict_sketch", concurrency_limit=4)


def classify(ctx: Context, key, img):
    ws = ctx.workspace(key)
    predictor = ws.get_predictor()
    if predictor is None:
        raise UserError("There is no trained model yet: train one on the Train tab first.")
    t = time.perf_counter()
    result = predictor.predict([img], TOP_K)[0]
    return ws.key, result, f"Predicted in {(time.perf_counter() - t) * 1000:.0f} ms"


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
