"""The LR finder tab's handlers: run a range test with the Train tab's settings in the background, stream its curve,
offer its suggestions."""
from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from demo import actions
from demo.context import Context, user_errors
from demo.handlers.train import with_weights_file
from demo.notice import Notice
from demo.train_form import config_from
from engine.config import FinderConfig, parse
from engine.errors import UserError
from engine.events import LRFinished, LRStep
from engine.figures import lr_curve

STREAM_INTERVAL = 1.0


@dataclass
class FinderUI:
    """The LR finder tab's components that handlers read or change."""

    key: gr.State
    status: gr.Markdown
    plot: gr.Plot
    values: gr.Markdown
    choice: gr.Radio  # the suggestion to use: the page wires "Use this LR" to the Train tab
    use: gr.Button
    run: gr.Button
    stop: gr.Button
    notice: Notice  # under Run: why a range test did not start

    @property
    def outputs(self) -> list:
        """What following a range test updates (the order is /lr_find's API output)."""
        return [self.key, self.status, self.plot, self.values, self.choice, self.use, self.run, self.stop]


@user_errors
def lr_find(ctx: Context, ui: FinderUI, start, end, n, key=None, lr=None, head_lr=None, **settings):
    """Run the LR range test in the background and stream the curve."""
    settings = dict(settings, lr=lr, head_lr=head_lr)  # named: optional for API callers (see handlers.train.train)
    ws = ctx.workspace(key)
    job = ctx.jobs.latest(ws.key, "lr_find")
    if job is None or job.finished:
        if start is None or end is None:
            raise UserError("Fill in both the start and the end LR.")
        finder = FinderConfig(**parse(FinderConfig, dict(start_lr=start, end_lr=end, num_steps=n))).checked()
        cfg = ctx.place.check(config_from(with_weights_file(ws, settings)))
        job = actions.start_finder(ctx, ws, cfg, finder)
    yield from stream(ctx, ui, ws.key, job)


def stop_finder(ctx: Context, ui: FinderUI, key=None) -> dict:
    ctx.stop_latest(key, "lr_find")
    return {ui.stop: gr.Button(interactive=False)}


def reattach(ctx: Context, ui: FinderUI, key=None):
    """After a reload: show the workspace's latest range test, live if it is still running."""
    ws = ctx.workspace(key)
    job = ctx.jobs.latest(ws.key, "lr_find")
    if job is None:
        yield {ui.key: ws.key}
        return
    yield from stream(ctx, ui, ws.key, job)


def stream(ctx: Context, ui: FinderUI, owner: str, job):
    lrs, losses, smoothed, result = [], [], [], None
    for events, job in ctx.follow(owner, job, STREAM_INTERVAL):  # noqa: B020 (job: its latest state)
        for event in events:
            if isinstance(event, LRStep):
                lrs.append(event.lr), losses.append(event.loss), smoothed.append(event.smoothed)
            elif isinstance(event, LRFinished):
                result = event
        yield {ui.key: owner, **render(ctx, ui, job, lrs, losses, smoothed, result)}


def render(ctx: Context, ui: FinderUI, job, lrs, losses, smoothed, result: LRFinished | None) -> dict:
    """The tab for a range test as it stands: status, curve, suggestions, and which buttons work."""
    buttons = {ui.run: gr.Button(interactive=job.finished), ui.stop: gr.Button(interactive=not job.finished)}
    nothing = {ui.plot: None, ui.values: "", ui.choice: gr.Radio(choices=[]), ui.use: gr.Button(interactive=False)}
    if job.status == "failed":
        return {ui.status: f"LR finder failed: {job.error}", **nothing, **buttons}
    if job.status == "queued":
        return {ui.status: f"Waiting for a free slot: position {ctx.jobs.queue_position(job)} in the queue.", **nothing,
                **buttons}
    if result is None and job.status == "stopped":  # stopped while it waited, before any step
        return {ui.status: "Stopped before it started.", **nothing, **buttons}
    if result is None:
        return {**nothing, ui.status: f"Range test: step {len(lrs)} · lr {lrs[-1] if lrs else 0:.2e}",
                ui.plot: lr_curve(lrs, losses, smoothed, {}) if lrs else None, **buttons}
    text = "\n".join(f"- **{name}**: {value:.2e}" for name, value in result.suggestions.items())
    if result.message:
        text += f"\n\n{result.message}"
    choices = [(f"{name}: {value:.2e}", f"{value:.6g}") for name, value in result.suggestions.items()]
    done = "Done" if not result.stopped else "Stopped"
    return {ui.status: f"{done} in {result.seconds:.1f} s ({len(result.lrs)} steps). Suggested learning rates:",
            ui.plot: lr_curve(result.lrs, result.losses, result.smoothed, result.suggestions), ui.values: text,
            ui.choice: gr.Radio(choices=choices, value=choices[0][1] if choices else None),
            ui.use: gr.Button(interactive=bool(choices)), **buttons}
