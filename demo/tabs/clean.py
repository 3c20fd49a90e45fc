"""Clean tab: after a first model, the pictures it doubts most (per class and split) and groups of near-duplicates;
move a picture to another class or delete it, apply the changes to a copy of the dataset (with an undo), download
the cleaned dataset. Layout and wiring only: the handlers are in demo/handlers/clean.py.
"""
from __future__ import annotations

import gradio as gr

from demo.context import Context
from demo.handlers import clean as h
from demo.handlers.clean import CleanUI
from demo.notice import notice
from demo.wiring import bind
from engine import cleaner


def build(ctx: Context, key: gr.State, tab: gr.Tab) -> tuple[CleanUI, gr.Button, gr.Button]:
    """The tab; returns its components and its Apply and Undo buttons (the page wires them to the Data tab)."""
    gr.Markdown("Which of your pictures are wrong? The model's most surprising pictures come first: a wrong label, a "
                "picture of something else, a bad crop. Click one, then move it to its right class or delete it; "
                "**Apply** changes a copy of your dataset (your files stay as they are), and training again shows "
                "whether it helped (the Train tab compares the runs).")
    with gr.Row():
        with gr.Column(scale=3):
            with gr.Row():
                class_name = gr.Dropdown([h.ALL], value=h.ALL, label="Class", elem_id="clean-class")
                split = gr.Radio(list(h.SPLITS), value="validation", label="Split", elem_id="clean-split")
                rank_btn = gr.Button("Show the most suspicious pictures", variant="primary", elem_id="clean-rank")
            suspects = gr.Gallery(label="Label → the model's guess (confidence): click one to decide about it",
                                  columns=6, height=320, object_fit="contain", allow_preview=False, elem_id="clean-suspects")
            with gr.Row():
                threshold = gr.Slider(0.5, 1.0, value=cleaner.DEFAULT_SIMILARITY, step=0.01, label="Similarity",
                                      info="How alike two pictures must be to count as copies", elem_id="clean-threshold")
                dup_btn = gr.Button("Find near-duplicates", elem_id="clean-duplicates-btn")
            duplicates = gr.Gallery(label="Near-duplicates, by group (LEAK: in training and in validation)", columns=6,
                                    height=240, object_fit="contain", allow_preview=False, elem_id="clean-duplicates")
        with gr.Column(scale=2):
            move_to = gr.Dropdown([], value=None, label="Move the chosen picture to", elem_id="clean-move-to")
            with gr.Row():
                move_btn = gr.Button("Move", elem_id="clean-move")
                delete_btn = gr.Button("Delete", variant="stop", elem_id="clean-delete")
                keep_btn = gr.Button("Keep", elem_id="clean-keep")
            pending = gr.Markdown(h.pending_text(h.Cleaning(None)), elem_id="clean-pending")
            with gr.Row():
                apply_btn = gr.Button("Apply the changes", variant="primary", elem_id="clean-apply")
                undo_btn = gr.Button("Undo the last apply", elem_id="clean-undo")
            clean_notice = notice("clean-notice")
            download_btn = gr.Button("Download the dataset as .zip", elem_id="clean-download-btn")
            download = gr.File(label="Dataset (.zip)", visible=False, elem_id="clean-download")
    selected = gr.State(None)
    ui = CleanUI(key=key, class_name=class_name, suspects=suspects, duplicates=duplicates, selected=selected,
                 move_to=move_to, pending=pending, download=download, notice=clean_notice)

    private = dict(api_visibility="private")
    tab.select(bind(h.show_classes, ctx, ui), [key], [class_name], **private)
    rank_btn.click(bind(h.rank, ctx, ui), [class_name, split, key], [key, suspects, selected, move_to, pending, clean_notice],
                   api_name="clean_rank")
    dup_btn.click(bind(h.find_duplicates, ctx, ui), [threshold, key], [key, duplicates, selected, pending, clean_notice],
                  api_name="clean_duplicates")
    suspects.select(h.select_suspect, None, [selected], **private)
    duplicates.select(h.select_duplicate, None, [selected], **private)
    for button, action in ((move_btn, "move"), (delete_btn, "delete"), (keep_btn, "keep")):
        button.click(bind(h.decide, ctx, ui, action), [selected, move_to, key], [key, pending, clean_notice], **private)
    download_btn.click(bind(h.download, ctx, ui), [key], [key, download, clean_notice], api_name="clean_download")
    return ui, apply_btn, undo_btn
