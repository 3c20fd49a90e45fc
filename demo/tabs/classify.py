"""Classify tab: upload, webcam, paste or draw an image and see the model's top classes, where it looked
(Grad-CAM), and how long it took; try validation images as examples; or load a model folder someone exported.
Layout and wiring only: the handlers are in demo/handlers/classify.py.
"""
from __future__ import annotations

import gradio as gr

from demo.context import Context
from demo.handlers import classify as h
from demo.handlers.classify import ClassifyUI
from demo.notice import notice
from demo.wiring import bind


def build(ctx: Context, key: gr.State, tab: gr.Tab) -> ClassifyUI:
    with gr.Row():
        with gr.Column(min_width=460):  # room for the examples' 4 columns (100 px each at least); narrower: one column
            with gr.Tab("Image"):
                image = gr.Image(label="Image (upload, webcam or paste)", type="pil", image_mode=None,
                                 sources=["upload", "webcam", "clipboard"], height=300)
                classify_btn = gr.Button("Classify image", variant="primary")
            with gr.Tab("Draw"):
                sketch = gr.Sketchpad(label="Draw", type="pil", canvas_size=(256, 256),
                                      brush=gr.Brush(default_size=8, colors=["#000000", "#d62728", "#1f77b4"]))
                sketch_btn = gr.Button("Classify drawing", variant="primary")
            with gr.Row():
                tta = gr.Checkbox(False, label="Test-time augmentation", info="Average with the mirror image")
                cam = gr.Checkbox(True, label="Show Grad-CAM", info="Where the model looked")
            classify_notice = notice("classify-notice")
            # 4 columns: Gradio's gallery gives each column at least 100 px, and 6 ran off this half-width column
            examples = gr.Gallery(label="Examples from the validation images: choose one", columns=4, height=300,
                                  object_fit="contain", fit_columns=False, allow_preview=False, elem_id="classify-examples")
        with gr.Column():
            in_use = gr.Markdown("", elem_id="classify-model")
            label = gr.Label(num_top_classes=h.TOP_K, label="Prediction", elem_id="prediction")
            timing = gr.Markdown("", elem_id="prediction-time")
            heatmap = gr.Image(label="Grad-CAM", type="pil", interactive=False, height=260, elem_id="gradcam")
            with gr.Accordion("Use another model", open=False):
                gr.Markdown("Upload a model folder exported by Snapfit: its `.zip`, or `model.safetensors` with "
                            "`config.json`. Only safetensors weights are accepted.")
                upload = gr.File(label="Model .zip or files", file_count="multiple", file_types=[".zip", ".safetensors", ".json"])
                model_status = gr.Markdown("", elem_id="model-status")
    ui = ClassifyUI(key=key, image=image, examples=examples, in_use=in_use, label=label, timing=timing, heatmap=heatmap,
                    model_status=model_status, notice=classify_notice)

    shown = [*ui.prediction_outputs, classify_notice]
    show_model = bind(h.show_model, ctx, ui)
    classify_btn.click(bind(h.predict, ctx, ui), [image, tta, cam, key], shown, api_name="predict", concurrency_limit=4)
    image.input(bind(h.predict_new, ctx, ui), [image, tta, cam, key], shown, api_visibility="private", concurrency_limit=4)
    sketch_btn.click(bind(h.predict_sketch, ctx, ui), [sketch, tta, cam, key], shown, api_name="predict_sketch",
                     concurrency_limit=4)
    tab.select(bind(h.show_examples, ctx, ui), [key], [examples, classify_notice], api_visibility="private")
    tab.select(show_model, [key], [in_use], api_name="model_in_use", api_visibility="undocumented")
    examples.select(bind(h.use_example, ctx, ui), [tta, cam, key], [image, *shown], api_visibility="private")
    upload.upload(bind(h.load_model, ctx, ui), [upload, key], [key, model_status], api_name="load_model").success(
        show_model, [key], [in_use], api_visibility="private")
    return ui
