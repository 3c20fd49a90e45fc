"""The LR finder tab's handlers: run a range test with the Train tab's settings in the background, stream its curve,
offer its suggestions."""
from __future__ import annotations

from dataclasses import dataclass, field

import gradio as gr

from demo import actions
from demo.context import Context, user_errors
from demo.handlers.train import with_weights_file
from demo.notice import Notice
from demo.train_form import config_from
from engine.config import FinderConfig, parse
from engine.errors import UserError
from engine.events import Log, LRFinished, LRStarted, LRStep, clock, describe
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
    steps: gr.Number  # empty: as many steps as suit the training run

    @property
    def outputs(self) -> list:
        """What following a range test updates (the order is /lr_find's API output)."""
        return [self.key, self.status, self.plot, self.values, self.choice, self.use, self.run, self.stop]


@user_errors
def lr_find(ctx: Context, ui: FinderUI, start, end, n=None, key=None, lr=None, head_lr=None, **settings):
    """Run the LR range test in the background and stream the curve."""
    # n, lr and head_lr default to None: optional for API callers, as their boxes start empty (see handlers.train.train)
    settings = dict(settings, lr=lr, head_lr=head_lr)
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
    # Steps set empty by an update: Gradio 6.31 draws a Number built with value=None as 0 (then sent as 0 steps)
    yield {ui.key: ws.key, ui.steps: None}
    if job is not None:
        yield from stream(ctx, ui, ws.key, job)


def stream(ctx: Context, ui: FinderUI, owner: str, job):
    run = FinderRun()
    for events, job in ctx.follow(owner, job, STREAM_INTERVAL):  # noqa: B020 (job: its latest state)
        for event in events:
            run.add(event)
        yield {ui.key: owner, **render(ctx, ui, job, run)}


@dataclass
class FinderRun:
    """What a range test's events have said so far."""

    lrs: list = field(default_factory=list)
    losses: list = field(default_factory=list)
    smoothed: list = field(default_factory=list)
    plan: LRStarted | None = None
    last_step: LRStep | None = None
    last_log: str = ""  # before the first step: what the job is doing (decoding, embedding)
    result: LRFinished | None = None

    def add(self, event) -> None:
        if isinstance(event, LRStep):
            self.lrs.append(event.lr), self.losses.append(event.loss), self.smoothed.append(event.smoothed)
            self.last_step = event
        elif isinstance(event, LRStarted):
            self.plan = event
        elif isinstance(event, Log):
            self.last_log = event.message
        elif isinstance(event, LRFinished):
            self.result = event


def render(ctx: Context, ui: FinderUI, job, run: FinderRun) -> dict:
    """The tab for a range test as it stands: status, curve, suggestions, and which buttons work."""
    buttons = {ui.run: gr.Button(interactive=job.finished), ui.stop: gr.Button(interactive=not job.finished)}
    nothing = {ui.plot: None, ui.values: "", ui.choice: gr.Radio(choices=[]), ui.use: gr.Button(interactive=False)}
    if job.status == "failed":
        return {ui.status: f"LR finder failed: {job.error}", **nothing, **buttons}
    if job.status == "queued":
        return {ui.status: f"Waiting for a free slot: position {ctx.jobs.queue_position(job)} in the queue.", **nothing,
                **buttons}
    result = run.result
    if result is None and job.status == "stopped":  # stopped while it waited, before any step
        return {ui.status: "Stopped before it started.", **nothing, **buttons}
    plan = f"\n\n{describe(run.plan)}" if run.plan else ""
    if result is None and run.last_step is None:  # decoding or embedding the images first
        return {**nothing, ui.status: f"Preparing: {run.last_log or 'starting'}…{plan}", **buttons}
    if result is None:
        step = run.last_step
        return {**nothing, ui.status: f"Range test: step {step.step} / {step.total} · ETA {clock(step.eta)} · "
                                      f"lr {step.lr:.2e} · smoothed loss {step.smoothed:.3f}{plan}",
                ui.plot: lr_curve(run.lrs, run.losses, run.smoothed, {}), **buttons}
    done = "Done" if not result.stopped else "Stopped"
    return {ui.status: f"{done} in {result.seconds:.1f} s ({len(result.lrs)} steps). Suggested learning rates:{plan}",
            ui.plot: lr_curve(result.lrs, result.losses, result.smoothed, result.suggestions),
            **offer(ui, result, run.plan), **buttons}


def offer(ui: FinderUI, result: LRFinished, plan: LRStarted | None) -> dict:
    """The suggestions to choose from, and which one is chosen: the first (valley) when the curve is clear; else the
    learning rate the Train tab would use anyway, with the reason the suggestions are not trusted."""
    text = "\n".join(f"- **{name}**: {value:.2e}" for name, value in result.suggestions.items())
    if result.message:
        text += f"\n\n{result.message}"
    choices = [(f"{name}: {value:.2e}", f"{value:.6g}") for name, value in result.suggestions.items()]
    keep = [(f"keep the Train tab's: {plan.lr:.2e}", f"{plan.lr:.6g}")] if plan and choices else []
    chosen = choices[0][1] if choices else None
    if result.caution and keep:
        text += (f"\n\n**Not pre-selected: {result.caution}** The Train tab's learning rate ({plan.lr:.2e}) stays "
                 f"selected; the suggestions are shown for reference.")
        chosen = keep[0][1]
    return {ui.values: text, ui.choice: gr.Radio(choices=choices + keep, value=chosen), ui.use: gr.Button(interactive=bool(choices))}
