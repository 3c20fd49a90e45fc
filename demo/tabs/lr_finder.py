"""LR finder tab: run a range test with the Train tab's settings, read the plot, use a suggestion."""
from __future__ import annotations

import gradio as gr

from demo.context import Context, user_errors
from demo.tabs.train import config_from
from engine.errors import UserError
from engine.figures import lr_curve
from engine.lr_finder import check_range, find

STREAM_INTERVAL = 1.0


def build(ctx: Context, key: gr.State, train_settings: dict):
    gr.Markdown("The range test trains briefly while raising the learning rate from tiny to huge, and records the "
                "loss. Pick a rate where the loss still falls steeply, well before it shoots up. It uses the model, "
                "strategy and sizes chosen on the **Train** tab, and leaves the model untouched.")
    with gr.Row():
        with gr.Column(scale=1):
            start_lr = gr.Number(value=1e-7, label="Start LR")
            end_lr = gr.Number(value=10.0, label="End LR")
            steps = gr.Slider(20, 300, value=100, step=10, label="Steps")
            with gr.Row():
                run = gr.Button("Run LR finder", variant="primary")
                stop = gr.Button("Stop", variant="stop", interactive=False)
            choice = gr.Radio([], label="Suggestion to use", elem_id="lr-choice")
            use = gr.Button("Use this LR", interactive=False)
        with gr.Column(scale=2):
            status = gr.Markdown("Not run yet.", elem_id="lr-status")
            plot = gr.Plot(label="Loss vs learning rate")
            values = gr.Markdown("", elem_id="lr-values")
    outputs = [key, status, plot, values, choice, use, run, stop]

    @user_errors
    def lr_find(start, end, n, key=None, lr=None, head_lr=None, **settings):
        """Run the LR range test in the background and stream the curve."""
        settings = dict(settings, lr=lr, head_lr=head_lr)  # named: optional for API callers (see train.train)
        ws = ctx.workspace(key)
        job = ctx.jobs.latest(ws.key, "lr_find")
        if job is None or job.finished:
            if start is None or end is None:
                raise UserError("Fill in both the start and the end LR.")
            check_range(float(start), float(end), int(n))
            cfg = ctx.place.check(config_from(settings))
            job = ctx.jobs.submit(ws.key, "lr_find", lambda token: run_finder(ws, cfg, float(start), float(end), int(n), token))
        yield from stream(ctx, ws.key, job)

    def stop_finder(key=None):
        ctx.stop_latest(key, "lr_find")
        return gr.Button(interactive=False)

    run.click(lr_find, [start_lr, end_lr, steps, key], outputs, inputs_kwargs=train_settings, api_name="lr_find",
              concurrency_limit=None)
    stop.click(stop_finder, [key], [stop], api_name="stop_lr_find")

    def reattach(key=None):
        """After a reload: show the workspace's latest range test, live if it is still running."""
        ws = ctx.workspace(key)
        job = ctx.jobs.latest(ws.key, "lr_find")
        if job is None:
            yield ws.key, *(gr.update() for _ in outputs[1:])
            return
        yield from stream(ctx, ws.key, job)

    return dict(choice=choice, use=use, outputs=outputs, reattach=reattach)


def run_finder(ws, cfg, start, end, n, stop):
    prepared = yield from ws.decoded(cfg)
    for event in find(prepared, cfg, start, end, n, stop):
        if event.kind == "lr_finished" and not event.stopped:
            ws.lr_result = (cfg.model, cfg.resolved_strategy(), event)  # a later training's model card shows it
        yield event


def stream(ctx: Context, owner: str, job):
    lrs, losses, smoothed, result = [], [], [], None
    for events, job in ctx.follow(owner, job, STREAM_INTERVAL):  # noqa: B020 (job: its latest state)
        for ev in events:
            if ev.kind == "lr_step":
                lrs.append(ev.lr), losses.append(ev.loss), smoothed.append(ev.smoothed)
            elif ev.kind == "lr_finished":
                result = ev
        yield render(ctx, owner, job, lrs, losses, smoothed, result)


def render(ctx, owner, job, lrs, losses, smoothed, result):
    buttons = (gr.Button(interactive=job.finished), gr.Button(interactive=not job.finished))  # Run, Stop
    if job.status == "failed":
        return owner, f"LR finder failed: {job.error}", None, "", gr.Radio(choices=[]), gr.Button(interactive=False), *buttons
    if job.status == "queued":
        return (owner, f"Waiting for a free slot: position {ctx.jobs.queue_position(job)} in the queue.", None, "",
                gr.Radio(choices=[]), gr.Button(interactive=False), *buttons)
    if result is None and job.status == "stopped":  # stopped while it waited, before any step
        return owner, "Stopped before it started.", None, "", gr.Radio(choices=[]), gr.Button(interactive=False), *buttons
    if result is None:
        fig = lr_curve(lrs, losses, smoothed, {}) if lrs else None
        return (owner, f"Range test: step {len(lrs)} · lr {lrs[-1] if lrs else 0:.2e}", fig, "", gr.Radio(choices=[]),
                gr.Button(interactive=False), *buttons)
    fig = lr_curve(result.lrs, result.losses, result.smoothed, result.suggestions)
    text = "\n".join(f"- **{name}**: {value:.2e}" for name, value in result.suggestions.items())
    if result.message:
        text += f"\n\n{result.message}"
    choices = [(f"{name}: {value:.2e}", f"{value:.6g}") for name, value in result.suggestions.items()]
    done = "Done" if not result.stopped else "Stopped"
    return (owner, f"{done} in {result.seconds:.1f} s ({len(result.lrs)} steps). Suggested learning rates:", fig, text,
            gr.Radio(choices=choices, value=choices[0][1] if choices else None), gr.Button(interactive=bool(choices)), *buttons)
