"""The Capture tab's handlers: make classes, fill them from the webcam or uploads, train a live model in seconds and
watch it classify the camera; then use the pictures as the session's dataset or download them as a .zip.

The webcam streams frames to `on_frame` (a few a second, while its own button is on). A recording is a deadline kept
on the server (`CaptureSession.recording`): frames that arrive before it go into the class. The stream and the
buttons are separate events that run side by side, so they share only this server-side state, never a gr.State
(two events writing one State overwrite each other's values).
"""
from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import gradio as gr

from demo.context import Context, user_errors
from demo.handlers import data
from demo.notice import Notice
from engine import capture
from engine.errors import UserError

RECORD_FPS = 5  # pictures a second kept while recording: near-duplicates beyond that teach the model nothing
MAX_RECORD_SECONDS = 30
FPS_WINDOW = 2.0  # seconds of frames the shown frame rate averages
THUMBNAIL = 128
POLL = 0.25  # seconds between the recording's status updates


@dataclass
class CaptureSession:
    """One workspace's capture: its pictures, its live model and what the camera stream should do with a frame."""

    pictures: capture.CapturedSet = field(default_factory=capture.CapturedSet)
    live: capture.LiveModel = field(default_factory=capture.LiveModel)
    recording: tuple[str, float] | None = None  # (class, until): frames before `until` go into that class
    last_kept: float = 0.0
    frames: deque = field(default_factory=lambda: deque(maxlen=64))  # arrival times of classified frames
    refused: str = ""  # why the latest recording stopped early (the memory budget)
    lock: threading.Lock = field(default_factory=threading.Lock)
    busy: threading.Lock = field(default_factory=threading.Lock)  # held while one frame of the stream is handled

    def frame_rate(self) -> float:
        now = time.monotonic()
        recent = [t for t in self.frames if now - t <= FPS_WINDOW]
        return (len(recent) - 1) / (recent[-1] - recent[0]) if len(recent) > 2 and recent[-1] > recent[0] else 0.0


_sessions_lock = threading.Lock()


def session(ctx: Context, key) -> tuple[str, CaptureSession]:
    """The workspace's key and its capture (made on first use)."""
    ws = ctx.workspace(key)
    with _sessions_lock:
        if ws.capture is None:
            ws.capture = CaptureSession()
        return ws.key, ws.capture


@dataclass
class CaptureUI:
    """The Capture tab's components that handlers read or change."""

    key: gr.State
    new_name: gr.Textbox
    current: gr.Dropdown
    rename_to: gr.Textbox
    counts: gr.Markdown
    gallery: gr.Gallery
    selected: gr.State  # the gallery picture chosen for deletion (only the gallery's select event writes it)
    record_status: gr.Markdown
    live_status: gr.Markdown
    live: gr.Label
    fps: gr.Markdown
    download: gr.File
    camera_status: gr.Markdown
    notice: Notice

    @property
    def class_outputs(self) -> list:
        """What a change to the classes or their pictures updates."""
        return [self.key, self.current, self.counts, self.gallery, self.selected, self.live_status]


# ---------------------------------------------------------------------------------------------- classes


def shown(ui: CaptureUI, key: str, cs: CaptureSession, current: str | None, refit: bool = True) -> dict:
    """The classes, the current one's pictures and the live model's state, after a change; the live model is fitted
    again when it exists (a fraction of a second) so it never lags the pictures."""
    names = cs.pictures.names
    current = current if current in names else (names[-1] if names else None)
    live = live_text(cs, refit)
    return {ui.key: key, ui.current: gr.Dropdown(choices=names, value=current), ui.counts: counts_text(cs),
            ui.gallery: thumbnails(cs, current), ui.selected: None, ui.live_status: live}


def counts_text(cs: CaptureSession) -> str:
    counts = cs.pictures.counts()
    if not counts:
        return "No classes yet: name one (e.g. *thumbs up*) and add it."
    rows = [f"| {name} | {n} |" for name, n in counts.items()]
    held = cs.pictures.nbytes / 1024**2
    return "\n".join(["| class | pictures |", "|---|---|", *rows, "",
                      f"{sum(counts.values())} pictures, {held:.1f} MB of {cs.pictures.budget // 1024**2} MB"])


def thumbnails(cs: CaptureSession, name: str | None) -> list:
    if name is None or name not in cs.pictures.names:
        return []
    from engine.images import for_display

    return [(for_display(j, THUMBNAIL), f"{k + 1}") for k, j in enumerate(cs.pictures.pictures(name))]


def restore(ctx: Context, ui: CaptureUI, key=None) -> dict:
    """After a reload: the session's classes and pictures as they were (they live on the server)."""
    ws = ctx.workspace(key)
    if ws.capture is None:
        return {component: gr.skip() for component in ui.class_outputs[1:]}
    return {k: v for k, v in shown(ui, ws.key, ws.capture, None, refit=False).items() if k is not ui.key}


@user_errors
def add_class(ctx: Context, ui: CaptureUI, text: str, key=None) -> dict:
    """Add a class (its name becomes a folder name in the downloaded .zip)."""
    key, cs = session(ctx, key)
    name = cs.pictures.add_class(text)
    capture.Embedder.warm_up()  # the live model's backbone loads while the person gets their camera ready
    return {**shown(ui, key, cs, name, refit=False), ui.new_name: ""}


@user_errors
def rename_class(ctx: Context, ui: CaptureUI, current: str, text: str, key=None) -> dict:
    key, cs = session(ctx, key)
    name = cs.pictures.rename_class(_chosen(current), text)
    return {**shown(ui, key, cs, name), ui.rename_to: ""}


@user_errors
def remove_class(ctx: Context, ui: CaptureUI, current: str, key=None) -> dict:
    key, cs = session(ctx, key)
    name = _chosen(current)
    removed = cs.pictures.remove_class(name)
    return {**shown(ui, key, cs, None), ui.notice: f"Removed class '{name}' and its {removed} pictures."}


@user_errors
def show_class(ctx: Context, ui: CaptureUI, current: str, key=None) -> dict:
    key, cs = session(ctx, key)
    return {ui.key: key, ui.gallery: thumbnails(cs, current), ui.selected: None}


def select_picture(evt: gr.SelectData) -> int:
    return evt.index


@user_errors
def delete_picture(ctx: Context, ui: CaptureUI, current: str, selected, key=None) -> dict:
    key, cs = session(ctx, key)
    if selected is None:
        raise UserError("Click a picture in the gallery first, then delete it.")
    cs.pictures.delete(_chosen(current), int(selected))
    return shown(ui, key, cs, current)


@user_errors
def upload(ctx: Context, ui: CaptureUI, files, current: str, key=None) -> dict:
    """Add uploaded pictures to the chosen class. All or none: a file that is not a picture refuses the batch."""
    key, cs = session(ctx, key)
    name = _chosen(current)
    paths = [f if isinstance(f, str) else getattr(f, "name", f) for f in (files or [])]
    if not paths:
        raise UserError("Choose one or more pictures to upload.")
    try:
        added = cs.pictures.add(name, paths)
    except UserError as exc:
        raise UserError(f"Nothing was added to '{name}': {exc}") from exc
    return {**shown(ui, key, cs, name), ui.notice: f"Added {added} pictures to '{name}'."}


def _chosen(current: str | None) -> str:
    if not current:
        raise UserError("Add a class first (name it above), then choose it here.")
    return current


# ---------------------------------------------------------------------------------------------- camera


@user_errors
def record(ctx: Context, ui: CaptureUI, current: str, seconds: float, key=None):
    """Keep the camera's frames for `seconds` (RECORD_FPS a second) in the chosen class, then show them."""
    key, cs = session(ctx, key)
    name = _chosen(current)
    if name not in cs.pictures.names:
        raise UserError(f"There is no class '{name}' any more: choose another one.")
    seconds = min(max(float(seconds or 0), 1.0), MAX_RECORD_SECONDS)
    before = cs.pictures.counts()[name]
    until = time.monotonic() + seconds
    with cs.lock:
        cs.recording, cs.refused = (name, until), ""
    try:
        while time.monotonic() < until and cs.recording is not None:
            kept = cs.pictures.counts().get(name, before) - before
            yield {ui.key: key, ui.record_status: f"Recording into **{name}**: {kept} pictures, "
                                                  f"{until - time.monotonic():.0f} s left"}
            time.sleep(POLL)
    finally:
        with cs.lock:
            cs.recording = None
    kept = cs.pictures.counts().get(name, before) - before
    if cs.refused:
        status = f"Recording stopped: {cs.refused}"
    elif kept == 0:
        status = ("No pictures arrived from the camera. Start it first: click the camera box, allow access, and "
                  "press its record button so it streams; then record again. Uploading pictures works without one.")
    else:
        status = f"Recorded {kept} pictures into **{name}** ({seconds:.0f} s)."
    yield {**shown(ui, key, cs, name), ui.record_status: status}


def on_frame(ctx: Context, ui: CaptureUI, frame, key=None) -> dict:
    """A frame from the camera stream: kept when a recording is on, and classified when a live model exists."""
    skip = {ui.live: gr.skip(), ui.fps: gr.skip()}
    if frame is None or key is None:
        return skip
    _, cs = session(ctx, key)
    # The page sends frames on a timer, whatever the server's pace: a frame that comes while the last one is still
    # being handled is dropped, so a busy server falls behind by one frame at most, never by a growing queue.
    if not cs.busy.acquire(blocking=False):
        return skip
    try:
        keep_frame(cs, frame)
        if not cs.live.ready:
            return skip
        probabilities = cs.live.predict(frame)
        cs.frames.append(time.monotonic())
        return {ui.live: probabilities, ui.fps: f"Live view: {cs.frame_rate():.1f} frames/s classified"}
    finally:
        cs.busy.release()


def keep_frame(cs: CaptureSession, frame) -> None:
    """Add the frame to the class being recorded, if a recording is on and it is time for another picture."""
    now = time.monotonic()
    with cs.lock:
        if cs.recording is None or now >= cs.recording[1] or now - cs.last_kept < 1 / RECORD_FPS:
            return
        name, cs.last_kept = cs.recording[0], now
    try:
        cs.pictures.add(name, [frame])
        cs.live.embed_new(cs.pictures)  # now, so that training later has nothing left to embed
    except UserError as exc:  # past the memory budget, or the class was removed: stop, keep what was recorded
        with cs.lock:
            cs.recording, cs.refused = None, str(exc)


# ---------------------------------------------------------------------------------------------- live model


@user_errors
def train_live(ctx: Context, ui: CaptureUI, key=None) -> dict:
    """Fit the live model on every class that has pictures (only pictures not seen before are embedded)."""
    key, cs = session(ctx, key)
    fitted = cs.live.fit(cs.pictures)
    return {ui.key: key, ui.live_status: fitted_text(fitted)}


def live_text(cs: CaptureSession, refit: bool) -> str:
    """The live model's state line; fitted again first when `refit` and it exists and two classes have pictures."""
    if not cs.live.ready:
        return "No live model yet: once two classes have a few pictures each, press **Train live model**."
    if refit and cs.live.version != cs.pictures.version:
        try:
            return fitted_text(cs.live.fit(cs.pictures))
        except UserError as exc:
            return f"The live model still knows only {', '.join(cs.live.class_names)}: {exc}"
    return f"Live model ready: {', '.join(cs.live.class_names)}."


def fitted_text(f: capture.Fitted) -> str:
    left = f" Without {', '.join(f.left_out)} (no pictures yet)." if f.left_out else ""
    return (f"**Live model ready** in {f.seconds:.2f} s: {len(f.class_names)} classes ({', '.join(f.class_names)}), "
            f"{f.samples} pictures ({f.embedded} newly embedded), {f.train_accuracy:.0%} of them right.{left} "
            "The live view names what the camera shows while it streams.")


# ---------------------------------------------------------------------------------------------- hand-over


@user_errors
def use_as_dataset(ctx: Context, ui: CaptureUI, data_ui: data.DataUI, tabs: gr.Tabs, key=None, progress=data.PROGRESS) -> dict:
    """Make the captured pictures the session's dataset, checked and shown like any other source on the Data tab."""
    ws = ctx.workspace(key)
    dataset = session(ctx, ws.key)[1].pictures.to_labelled()
    return {**data.show(ctx, data_ui, ws, dataset, progress), tabs: gr.Tabs(selected="data")}


@user_errors
def download(ctx: Context, ui: CaptureUI, key=None) -> dict:
    """The pictures as a .zip of one folder per class, the layout the Data tab's .zip source reads."""
    ws = ctx.workspace(key)
    _, cs = session(ctx, ws.key)
    folder = Path(ws.folder) / "capture"
    folder.mkdir(parents=True, exist_ok=True)
    path = cs.pictures.write_zip(folder / "captured-dataset.zip")
    return {ui.key: ws.key, ui.download: gr.File(value=str(path), visible=True)}


def camera_problem(message: str) -> str:
    """What the page's script saw when the browser refused the camera (no device, or permission denied)."""
    if not (message or "").strip():
        return ""
    why = ("no camera was found" if "NotFound" in message else
           "camera access was denied: allow it in the browser's address bar and reload" if "NotAllowed" in message else
           f"the browser could not start it ({message.strip()[:120]})")
    return f"⚠️ The camera is unavailable: {why}. You can still fill each class by uploading pictures."
