"""What the app does on the server for a session, without Gradio: the bodies of background jobs (training, LR finding)
and the work behind the tabs (checking a loaded dataset, evaluating, picking examples, classifying, taking in an
uploaded model).

Each takes the session's Workspace (and the app's Context where it starts a job) and returns plain values: the
handlers in demo/handlers/ turn them into what the page shows.
"""
from __future__ import annotations

import json
import shutil
import time
import uuid
from dataclasses import asdict
from pathlib import Path

from demo.workspace import Workspace
from demo.zerogpu import train_in_chunks
from engine import checkpoint as checkpoint_lib
from engine import data as data_lib
from engine import labelled, models, multilabel, runs
from engine.config import FinderConfig
from engine.errors import UserError
from engine.evaluate import evaluate, items_of_known_classes
from engine.events import Finished, LRFinished, SavedBeforeFailure, Stopped
from engine.export import REQUIRED, check_model_folder, zip_model_folder
from engine.lr_finder import find
from engine.model_card import LR_FIND_JSON
from engine.predict import Predictor
from engine.train import TrainConfig, fit

EXAMPLES = 12  # validation images offered as examples on the Classify tab
DISPLAY_SIDE = 256  # the longest side of the validation images shown to people (Evaluate, Classify's examples)
MODEL_FILES = {"model.safetensors", "config.json", "metrics.json", "README.md"}  # what an uploaded model folder may hold
SAVED = (Finished, Stopped, SavedBeforeFailure)  # the events that end a run; with a model_dir, a model was saved


# ---------------------------------------------------------------------------------------------- jobs


def start_training(ctx, ws: Workspace, cfg: TrainConfig, label: str, out_dir: str | None = None):
    """Submit a training job for the session (it waits for a free slot); its model becomes the session's. With
    `out_dir`, the run that wrote it goes on from its checkpoint (see `resumable`)."""
    return ctx.jobs.submit(ws.key, "train", lambda token: run_training(ws, cfg, token, ctx.place.zero_gpu, label, out_dir))


def run_training(ws: Workspace, cfg: TrainConfig, stop, chunked: bool = False, label: str = "", out_dir: str | None = None):
    """The training job's body: decode once (cached per workspace), train (in GPU-sized chunks on a ZeroGPU Space),
    and hand the model to the workspace, listed among its runs as `label` (its recipe, or else its strategy). The run
    keeps a checkpoint beside its model folder, so a stopped or failed run can go on (engine/checkpoint.py)."""
    decoded = yield from ws.decoded(cfg)
    out_dir = out_dir or str(Path(ws.folder) / f"model-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:4]}")
    ws.last_run = (cfg, out_dir, label)
    events = (train_in_chunks(decoded, cfg, out_dir, stop) if chunked
              else fit(decoded, cfg, out_dir, stop, checkpoint=str(checkpoint_lib.beside(out_dir))))
    for event in events:
        if isinstance(event, SAVED) and event.model_dir:
            keep_lr_result(ws, cfg, event.model_dir)
            ws.set_model(event.model_dir, (cfg.val_fraction, cfg.seed))
            zip_model_folder(event.model_dir, event.model_dir)  # beside it: <model_dir>.zip, for the download button
            ws.add_run(run_record(event, cfg, label or cfg.resolved_strategy()))
        yield event


def resumable(ws: Workspace) -> tuple | None:
    """The session's latest run, (cfg, model folder, label), when it ended before its end and left a checkpoint."""
    if ws.last_run is None or not checkpoint_lib.beside(ws.last_run[1]).is_file():
        return None
    return ws.last_run


def run_record(event, cfg: TrainConfig, label: str) -> dict:
    """One row of the Train tab's table of runs, from the model folder the run saved: what the Markdown table shows,
    and what the comparison adds (data fingerprint, epochs, per-class accuracy, the curves, the validation split)."""
    run = runs.read(event.model_dir)
    status = "done" if isinstance(event, Finished) else "stopped" if isinstance(event, Stopped) else "failed"
    return dict(label=label, model=models.display_name(cfg.model, cfg.weights), img_size=cfg.img_size,
                val_acc=run.val_accuracy or 0.0, metric=run.metric, seconds=run.seconds or 0.0, status=status, model_dir=str(event.model_dir),
                data=run.data, epochs=cfg.epochs, best_epoch=run.best_epoch, per_class=run.per_class, history=run.history,
                split=(cfg.val_fraction, cfg.seed))


def keep_lr_result(ws: Workspace, cfg: TrainConfig, model_dir: str) -> None:
    """Put the LR finder's curve in the model folder when it was run for this model and strategy: the model
    card (engine/model_card.py) shows it."""
    if ws.lr_result and ws.lr_result[:2] == (cfg.model, cfg.resolved_strategy()):
        (Path(model_dir) / LR_FIND_JSON).write_text(json.dumps(asdict(ws.lr_result[2])))


def start_finder(ctx, ws: Workspace, cfg: TrainConfig, finder: FinderConfig):
    """Submit an LR range test for the session."""
    return ctx.jobs.submit(ws.key, "lr_find", lambda token: run_finder(ws, cfg, finder, token))


def run_finder(ws: Workspace, cfg: TrainConfig, finder: FinderConfig, stop):
    """The LR finder job's body: decode once (shared with training), run the range test, and keep a complete
    result for the model card of a later training of the same model and strategy."""
    decoded = yield from ws.decoded(cfg)
    for event in find(decoded, cfg, finder, stop):
        if isinstance(event, LRFinished) and not event.stopped:
            ws.lr_result = (cfg.model, cfg.resolved_strategy(), event)
        yield event


# ---------------------------------------------------------------------------------------------- data


def use_dataset(ctx, ws: Workspace, dataset: data_lib.LabelledImages, check: TrainConfig, progress=None):
    """Make `dataset` the session's and decode it as the run `check` will (finding unreadable and duplicated
    images, and saving that run the decoding). Returns (decoded data or None, why it cannot train yet or None)."""
    ctx.place.check_dataset(len(dataset))  # on a free Space: a cap on images
    ws.set_dataset(dataset)
    ws.first_model_job = None  # a first model of the previous dataset is not re-attached after a reload
    try:
        return ws.decode_now(check, progress=progress), None
    except UserError as exc:  # loaded, but not trainable as it is (say, no class has 2 images): say why
        return None, str(exc)


def uploads(ws: Workspace) -> Path:
    """The session's folder for uploaded datasets."""
    folder = ws.folder / "data"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def tidy_uploads(ctx, ws: Workspace) -> None:
    """Remove the upload folders the session's dataset no longer uses (older or failed uploads).

    Not while one of its jobs runs: a starting run may still be reading the previous dataset's files.
    """
    job = ctx.jobs.latest(ws.key)
    if job is not None and not job.finished:
        return
    first = ws.dataset.images[0] if ws.dataset is not None and len(ws.dataset) else None  # uploads: all paths
    for folder in uploads(ws).iterdir():
        if not isinstance(first, str) or not Path(first).is_relative_to(folder):
            shutil.rmtree(folder, ignore_errors=True)


# ---------------------------------------------------------------------------------------------- the model


def evaluate_workspace(ws: Workspace) -> dict:
    """Predict every validation image of the workspace's dataset with its model; keep the images (and where they
    come from, for `evaluation_images`) for the views."""
    predictor = ws.get_predictor()
    if predictor is None:
        raise UserError("There is no trained model yet: train one on the Train tab (or load one on the Classify tab).")
    dataset = ws.dataset_or_builtin()
    if dataset.multi_label != predictor.multi_label:
        raise UserError("This model and this dataset do not match: one gives several labels per image, the other one "
                        "class per image. Load the data the model was trained on, or train a model on this data.")
    if dataset.multi_label:
        return evaluate_multi_label(ws, predictor, dataset)
    names = predictor.class_names
    _, val_idx = data_lib.holdout(dataset, *ws.model_split)
    val_idx = items_of_known_classes(dataset, val_idx, names)
    decoded, _ = data_lib.decode(dataset, val_idx, predictor.img_size)  # unreadable files are skipped, labels follow
    images = list(decoded.x.permute(0, 2, 3, 1).numpy())
    labels = [names.index(dataset.class_names[y]) for y in decoded.y.tolist()]
    ws.evaluation = dict(result=evaluate(predictor, images, labels, names), images=images, labels=labels,
                         dataset=dataset, index=decoded.index)
    return ws.evaluation


def evaluate_multi_label(ws: Workspace, predictor: Predictor, dataset) -> dict:
    """As evaluate_workspace, for a multi-label model on multi-label data: labels matched by name (a label the data
    lacks counts as absent from every image)."""
    _, val_idx = data_lib.holdout(dataset, *ws.model_split)
    decoded, _ = data_lib.decode(dataset, val_idx, predictor.img_size)
    images = list(decoded.x.permute(0, 2, 3, 1).numpy())
    targets = multilabel.targets_by_name(dataset, decoded.index, predictor.class_names)
    ws.evaluation = dict(result=multilabel.evaluate(predictor, images, targets), images=images, dataset=dataset,
                         index=decoded.index, multi_label=True)
    return ws.evaluation


def refuse_multi_label(dataset, predictor, what: str) -> None:
    """The views built for one class per image (moving an image to another class) say so, rather than fail, on
    multi-label data or models; the command line already evaluates those (mAP, F1, per label)."""
    if dataset.multi_label or getattr(predictor, "multi_label", False):
        raise UserError(f"{what} does not show multi-label models yet (several labels per image). Evaluate this one "
                        "from the command line: python -m engine eval --model-dir MODEL --data DATA (mAP, F1 and "
                        "precision/recall per label).")


def evaluation_images(ev: dict, positions: list[int]) -> list:
    """Images of an evaluation (positions in its list) as people should see them: the originals at display size,
    not the small squares the model saw (which stand in, enlarged, for an original that no longer reads)."""
    return data_lib.originals(ev["dataset"], [ev["index"][p] for p in positions], DISPLAY_SIDE,
                              fallbacks=[ev["images"][p] for p in positions])


def validation_examples(ws: Workspace) -> list:
    """A few validation images spread over the classes, as (array, class name), at display size (unreadable ones
    left out)."""
    dataset = ws.dataset_or_builtin()
    _, val_idx = data_lib.holdout(dataset, *ws.model_split)
    by_class = {}
    for i in val_idx:
        by_class.setdefault(dataset.labels[i], []).append(i)
    picks = []  # round-robin over the classes, so every class shows up
    for round_ in range(EXAMPLES):
        picks += [items[round_] for items in by_class.values() if round_ < len(items)]
    picks = picks[:EXAMPLES]
    shown = data_lib.originals(dataset, picks, DISPLAY_SIDE)
    return [(image, labelled.caption(dataset, i)) for image, i in zip(shown, picks) if image is not None]


def classify(ws: Workspace, img, top_k: int, use_tta: bool = False, show_cam: bool = True):
    """The session's model on one image: (top-k {class: probability}, a line on timing and Grad-CAM, the Grad-CAM
    overlay or None)."""
    predictor = ws.get_predictor()
    if predictor is None:
        raise UserError("There is no trained model yet: train one on the Train tab first.")
    t = time.perf_counter()
    result = predictor.predict([img], top_k, use_tta)[0]
    text = f"Predicted in {(time.perf_counter() - t) * 1000:.0f} ms"
    if predictor.multi_label:  # every label has its own probability: say which pass their thresholds
        above = [name for name, p in result.items() if p >= predictor.thresholds[predictor.class_names.index(name)]]
        text += f". Labels: {', '.join(f'**{name}**' for name in above) or 'none'} (at or above their thresholds)"
    overlay = None
    if show_cam:
        overlay, caption = predictor.gradcam(img, next(iter(result)))
        text += f". {caption}."
    return result, text, overlay


def load_uploaded_model(ws: Workspace, paths: list[str]) -> Predictor:
    """Use an uploaded model folder (a .zip of one, or its files) for the session from now on."""
    folder = model_from_upload(paths, ws.folder)
    try:
        predictor = Predictor.from_folder(folder)
    except Exception as exc:  # the right file names, unreadable contents: the session keeps the model it had
        shutil.rmtree(folder, ignore_errors=True)
        raise UserError(f"Could not load that model folder ({type(exc).__name__}): export it again from Snapfit, "
                        "or check that config.json and model.safetensors belong together.") from exc
    ws.set_model(folder, predictor=predictor)
    return predictor


def use_run(ws: Workspace, name: str) -> dict:
    """Make one of the session's runs (by its folder's name) its model for Classify, Evaluate and Export, as when
    that run had just finished. Returns the run."""
    run = ws.run_named(name) if isinstance(name, str) else None
    if run is None:
        raise UserError("Choose one of the runs listed (older runs are not kept).")
    if not all((Path(run["model_dir"]) / file).is_file() for file in REQUIRED):
        raise UserError(f"Run {run['number']}'s model folder is gone (the session's files were cleaned up): train it "
                        "again, or choose another run.")
    ws.set_model(run["model_dir"], tuple(run.get("split", (0.2, 0))))
    return run


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


def model_dir_of(ws: Workspace) -> Path:
    """The session's model folder; a UserError when it has none yet."""
    if ws.model_dir is None:
        raise UserError("No model to export yet: train one on the Train tab, or load one on the Classify tab.")
    return Path(ws.model_dir)


def model_zip(ws: Workspace) -> Path:
    """The session's model folder as a .zip beside it (made now for a model loaded on Classify, which has none)."""
    model_dir = model_dir_of(ws)
    zip_path = Path(f"{model_dir}.zip")
    if not zip_path.exists():
        zip_model_folder(model_dir, model_dir)
    return zip_path
