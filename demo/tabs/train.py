"""Train tab: choose model and recipe, start a background training job, watch it live, stop it.

The job belongs to the server, not to the page: closing or reloading the tab leaves it running, and a
reloaded page re-attaches (demo/__init__.py calls `reattach` on load). Stop asks the job to end after its
current step; it keeps the best epoch so far.
"""
from __future__ import annotations

import time
from pathlib import Path

import gradio as gr

from demo import plots
from demo.context import Context, user_errors
from engine import models
from engine.errors import UserError
from engine.train import PRETRAINED_RECIPE, SCRATCH_RECIPE, STRATEGIES, TrainConfig, fit, preflight

STREAM_INTERVAL = 0.5  # seconds between page updates: enough to look live, cheap for the server


def build(ctx: Context, key: gr.State):
    d = SCRATCH_RECIPE if ctx.offline else PRETRAINED_RECIPE
    with gr.Row():
        with gr.Column(scale=1):
            model = gr.Dropdown([e.name for e in models.CATALOG], value=d["model"], label="Model",
                                allow_custom_value=True, info="Pick one, or type any timm model name")
            weights = gr.Radio(["pretrained", "scratch"], value=d["weights"], label="Weights",
                               info="Pretrained weights come from the Hub" + (" (offline here)" if ctx.offline else ""))
            strategy = gr.Dropdown(["auto", *STRATEGIES], value="auto", label="Strategy",
                                   info="auto: finetune with pretrained weights, full from scratch")
            epochs = gr.Slider(1, 50, value=d["epochs"], step=1, label="Epochs")
            lr = gr.Number(value=d["lr"], label="Learning rate", info="Run the LR finder to pick one", elem_id="train-lr")
            with gr.Accordion("Advanced", open=False):
                batch_size = gr.Slider(8, 256, value=d["batch_size"], step=8, label="Batch size")
                img_size = gr.Slider(32, 384, value=d["img_size"], step=16, label="Image size (px)", info="Smaller is faster")
                augment = gr.Radio(["none", "light", "standard"], value="light", label="Augmentation")
            with gr.Row():
                start = gr.Button("Start training", variant="primary")
                stop = gr.Button("Stop", variant="stop", interactive=False)
        with gr.Column(scale=2):
            status = gr.Markdown("Not started.", elem_id="train-status")
            loss_plot = gr.LinePlot(plots.loss_frame([]), x="step", y="loss", color="series", title="Loss", height=250)
            acc_plot = gr.LinePlot(plots.accuracy_frame([]), x="epoch", y="val accuracy %", title="Validation accuracy",
                                   height=200, y_lim=[0, 100])
            log = gr.Textbox(label="Log", lines=6, max_lines=12, autoscroll=True)
    settings = [model, weights, strategy, epochs, lr, batch_size, img_size, augment]
    outputs = [key, status, loss_plot, acc_plot, log, start, stop]

    @user_errors
    def train(model, weights, strategy, epochs, lr, batch_size, img_size, augment, key=None):
        """Start training in the background (or re-attach to the run already going) and stream its progress."""
        ws = ctx.workspace(key)
        job = ctx.jobs.latest(ws.key, "train")
        if job is None or job.finished:
            cfg = config_from(model, weights, strategy, epochs, lr, batch_size, img_size, augment)
            job = ctx.jobs.submit(ws.key, "train", lambda token: run_training(ws, cfg, token))
            ws.train_settings = [model, weights, strategy, epochs, lr, batch_size, img_size, augment]
        yield from stream(ctx, ws.key, job)

    def stop_training(key=None):
        ws = ctx.workspace(key)
        job = ctx.jobs.latest(ws.key, "train")
        if job is not None and not job.finished:
            ctx.jobs.stop(job.id, ws.key)
        return gr.Button(interactive=False)

    # The streaming handler only waits on the job, so it needs no concurrency slot of its own: the job
    # manager is what limits how many trainings run at once.
    start.click(train, [*settings, key], outputs, api_name="train", concurrency_limit=None)
    stop.click(stop_training, [key], [stop], api_name="stop_training")

    def reattach(key=None):
        """After a reload: show the workspace's latest training, live if it is still running."""
        ws = ctx.workspace(key)
        job = ctx.jobs.latest(ws.key, "train")
        if job is None:
            yield (ws.key, "Not started.", plots.loss_frame([]), plots.accuracy_frame([]), "",
                   gr.Button(interactive=True), gr.Button(interactive=False))
            return
        yield from stream(ctx, ws.key, job)

    def restore_settings(key=None):
        """After a reload: show the settings of the run being re-attached, not the defaults."""
        saved = ctx.workspace(key).train_settings
        return saved if saved else [gr.update() for _ in settings]

    return dict(settings=settings, outputs=outputs, lr=lr, reattach=reattach, restore_settings=restore_settings)


def config_from(model, weights, strategy, epochs, lr, batch_size, img_size, augment) -> TrainConfig:
    try:
        values = dict(model=model, weights=weights, strategy=strategy, epochs=int(epochs), lr=float(lr),
                      batch_size=int(batch_size), img_size=int(img_size), augment=augment)
    except (TypeError, ValueError) as exc:
        raise UserError(f"Check the training settings: {exc}") from exc
    return preflight(TrainConfig.from_dict(values))


def run_training(ws, cfg: TrainConfig, stop):
    """The job body: decode once (cached per workspace), train, and hand the model to the workspace."""
    prepared = yield from ws.decoded(cfg)
    out_dir = Path(ws.folder) / f"model-{time.strftime('%Y%m%d-%H%M%S')}"
    for event in fit(prepared, cfg, str(out_dir), stop):
        if event.kind in ("finished", "stopped"):
            ws.set_model(event.model_dir)
        yield event


class View:
    """Accumulates a job's events into what the page shows."""

    def __init__(self) -> None:
        self.losses, self.history, self.log = [], [], []
        self.started = None
        self.last_step = None
        self.final = None

    def add(self, event) -> None:
        kind = getattr(event, "kind", "")
        if kind == "started":
            self.started = event
            self.log.append(f"Training {event.model} ({event.strategy}) on {event.device}: "
                            f"{event.num_train} training / {event.num_val} validation images")
        elif kind == "step":
            self.last_step = event
            self.losses.append((event.step, event.loss, plots.LOSS_SERIES[0]))
        elif kind == "epoch_end":
            self.history.append(event.__dict__)
            if self.started:
                self.losses.append((event.epoch * self.started.steps_per_epoch, event.val_loss, plots.LOSS_SERIES[1]))
            self.log.append(f"Epoch {event.epoch}: train loss {event.train_loss:.3f}, val loss {event.val_loss:.3f}, "
                            f"val accuracy {event.val_acc:.1%} ({event.seconds:.1f} s)")
        elif kind == "log":
            self.log.append(event.message)
        elif kind in ("finished", "stopped"):
            self.final = event

    def status(self, job, position: int) -> str:
        if job.status == "queued":
            return f"Waiting for a free training slot: position {position} in the queue."
        if job.status == "failed":
            return f"Training failed: {job.error}"
        if job.status in ("done", "stopped") and self.final is not None:
            best = max((h["val_acc"] for h in self.history), default=0.0)
            head = "Finished" if job.status == "done" else "Stopped"
            return (f"{head} in {job.elapsed:.0f} s. Best validation accuracy **{best:.1%}**. "
                    "The model is ready on the **Classify** tab.")
        return self._progress(job)

    def _progress(self, job) -> str:
        if self.started is None or self.last_step is None:
            return f"Preparing… ({job.elapsed:.0f} s)"
        s, total = self.last_step, self.started.total_steps
        eta = job.elapsed / max(s.step, 1) * max(total - s.step, 0)
        return (f"Epoch {s.epoch}/{self.started.epochs} · step {s.step}/{total} · "
                f"{s.images_per_s:.0f} images/s · loss {s.loss:.3f} · ETA {eta:.0f} s")


def stream(ctx: Context, owner: str, job):
    """Yield page updates for a job until it ends (or until the page goes away)."""
    view = View()
    for events, job in ctx.follow(owner, job, STREAM_INTERVAL):  # noqa: B020 (job: its latest state)
        for event in events:
            view.add(event)
        yield (owner, view.status(job, ctx.jobs.queue_position(job)), plots.loss_frame(view.losses),
               plots.accuracy_frame(view.history), "\n".join(view.log[-200:]),
               gr.Button(interactive=job.finished), gr.Button(interactive=not job.finished))
