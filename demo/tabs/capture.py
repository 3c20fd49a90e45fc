"""Capture tab: build a dataset class by class from the webcam and uploads, train a live model in seconds and watch
it classify the camera, then use the pictures as the session's dataset (Data tab) or download them as a .zip.
Layout and wiring only: the handlers are in demo/handlers/capture.py.
"""
from __future__ import annotations

import gradio as gr

from demo.context import Context
from demo.handlers import capture as h
from demo.handlers.capture import CaptureUI
from demo.notice import notice
from demo.wiring import bind

STREAM_EVERY = 0.1  # seconds between the frames the page sends: ~10 a second reach the server (measured)
HIDDEN = "snapfit-hidden"  # CSS class (demo.CSS): rendered, so a script can write into it, but not shown

# Gradio starts the camera without catching its errors: a missing camera or a refused permission surfaces only as
# an unhandled promise rejection. This page-level script hands its name and message to a hidden textbox, whose
# change event tells the server (launch(head=...)).
CAMERA_ERRORS_JS = """
<script>
window.addEventListener("unhandledrejection", (event) => {
  const e = event.reason;
  const camera = ["NotFoundError", "NotAllowedError", "NotReadableError", "OverconstrainedError", "SecurityError"];
  if (!e || !camera.includes(e.name)) return;
  const box = document.querySelector("#capture-camera-error textarea");
  if (!box) return;
  box.value = e.name + ": " + e.message;
  box.dispatchEvent(new Event("input", {bubbles: true}));
});
</script>
"""


def build(ctx: Context, key: gr.State) -> tuple[CaptureUI, gr.Button]:
    """The tab; returns its components and its "use as the dataset" button (the page wires it to the Data tab)."""
    gr.Markdown("Make a dataset with your camera: name a class, hold an example up to the camera and record a few "
                "seconds; add another class; **Train live model** and watch it name what the camera sees. Pictures "
                "can also be uploaded into a class.")
    with gr.Row():
        with gr.Column(scale=1):
            with gr.Group():
                with gr.Row():
                    new_name = gr.Textbox(label="New class", placeholder="e.g. thumbs up", elem_id="capture-new-class",
                                          scale=3)
                    add_btn = gr.Button("Add class", scale=1, elem_id="capture-add")
                current = gr.Dropdown([], value=None, label="Class to fill", elem_id="capture-class")
            with gr.Accordion("Rename or remove this class", open=False):
                rename_to = gr.Textbox(label="New name", elem_id="capture-rename")
                with gr.Row():
                    rename_btn = gr.Button("Rename class", size="sm")
                    remove_btn = gr.Button("Remove class", size="sm", variant="stop")
            with gr.Row():
                seconds = gr.Slider(1, h.MAX_RECORD_SECONDS, value=3, step=1, label="Seconds to record",
                                    info=f"{h.RECORD_FPS} pictures a second", elem_id="capture-seconds")
                record_btn = gr.Button("Record into this class", variant="primary", elem_id="capture-record")
            record_status = gr.Markdown("", elem_id="capture-record-status")
            upload_btn = gr.UploadButton("Upload pictures into this class", file_count="multiple", file_types=["image"],
                                         elem_id="capture-upload")
            capture_notice = notice("capture-notice")
            gallery = gr.Gallery(label="Pictures of this class (click one to delete it)", columns=5, height=220,
                                 object_fit="cover", allow_preview=False, elem_id="capture-gallery")
            delete_btn = gr.Button("Delete the chosen picture", size="sm")
            counts = gr.Markdown("No classes yet: name one (e.g. *thumbs up*) and add it.", elem_id="capture-counts")
        with gr.Column(scale=1):
            camera = gr.Image(label="Camera", sources=["webcam"], streaming=True, type="numpy", height=300,
                              webcam_options=gr.WebcamOptions(mirror=False), elem_id="capture-camera")
            camera_status = gr.Markdown("", elem_id="capture-camera-status")
            camera_error = gr.Textbox(elem_id="capture-camera-error", elem_classes=[HIDDEN], show_label=False)
            train_btn = gr.Button("Train live model", variant="primary", elem_id="capture-train")
            live_status = gr.Markdown(h.live_text(h.CaptureSession(), refit=False), elem_id="capture-live-status")
            live = gr.Label(num_top_classes=5, label="Live view", elem_id="capture-live")
            fps = gr.Markdown("", elem_id="capture-fps")
            with gr.Row():
                use_btn = gr.Button("Use these pictures as the dataset", variant="primary", elem_id="capture-use")
                download_btn = gr.Button("Download as .zip", elem_id="capture-download-btn")
            download = gr.File(label="Captured dataset (.zip)", visible=False, elem_id="capture-download")
    selected = gr.State(None)
    ui = CaptureUI(key=key, new_name=new_name, current=current, rename_to=rename_to, counts=counts, gallery=gallery,
                   selected=selected, record_status=record_status, live_status=live_status, live=live, fps=fps,
                   download=download, camera_status=camera_status, notice=capture_notice)

    changed = [*ui.class_outputs, capture_notice]
    add = dict(api_visibility="private")
    add_btn.click(bind(h.add_class, ctx, ui), [new_name, key], [*changed, new_name], api_name="capture_add_class")
    new_name.submit(bind(h.add_class, ctx, ui), [new_name, key], [*changed, new_name], **add)
    rename_btn.click(bind(h.rename_class, ctx, ui), [current, rename_to, key], [*changed, rename_to], **add)
    remove_btn.click(bind(h.remove_class, ctx, ui), [current, key], changed, **add)
    current.input(bind(h.show_class, ctx, ui), [current, key], [key, gallery, selected, capture_notice], **add)
    gallery.select(h.select_picture, None, [selected], **add)
    delete_btn.click(bind(h.delete_picture, ctx, ui), [current, selected, key], changed, **add)
    upload_btn.upload(bind(h.upload, ctx, ui), [upload_btn, current, key], changed, api_name="capture_upload")
    # Recording only waits while the stream's frames arrive: it takes no event slot
    record_btn.click(bind(h.record, ctx, ui), [current, seconds, key], [*changed, record_status], **add,
                     concurrency_limit=None)
    # Every page streams at once (concurrency None): with Gradio's default of one, a second page waited in the queue
    camera.stream(bind(h.on_frame, ctx, ui), [camera, key], [live, fps], stream_every=STREAM_EVERY, time_limit=None,
                  concurrency_limit=None, show_progress="hidden", **add)
    camera_error.change(h.camera_problem, [camera_error], [camera_status], **add)
    train_btn.click(bind(h.train_live, ctx, ui), [key], [key, live_status, capture_notice], api_name="capture_train")
    download_btn.click(bind(h.download, ctx, ui), [key], [key, download, capture_notice], api_name="capture_download")
    return ui, use_btn
