"""The model folder: the hand-over unit between training, evaluation, prediction, the UI, the CLI and the Hub.

Layout (what timm itself reads, so `timm.create_model("local-dir:DIR", pretrained=True)` rebuilds the model
with its trained head):
  model.safetensors   weights
  config.json         architecture, num_classes, label_names, preprocessing (pretrained_cfg); for a multi-label
                      model also multi_label: true, thresholds (one per label, in label order) and threshold_kind
  metrics.json        history, per-class accuracy, confusion matrix, hyper-parameters, seconds
"""
from __future__ import annotations

import json
import shutil
import uuid
from contextlib import contextmanager
from pathlib import Path

import timm
import torch

from engine.errors import UserError
from engine.multilabel import DEFAULT_THRESHOLD

REQUIRED = ("model.safetensors", "config.json")


def save_model_folder(
    model: torch.nn.Module, out_dir: str | Path, class_names: list[str], data_config: dict, metrics: dict,
    model_args: dict | None = None, multi_label: bool = False, thresholds: list[float] | None = None,
    threshold_kind: str | None = None,
) -> Path:
    """Write the folder atomically: build it beside the target, then rename, so a crash never leaves a
    half-written folder that looks complete. `model_args`: extra constructor arguments timm needs to rebuild
    the model (a ViT's img_size). A multi-label model records its decision thresholds (chosen on validation;
    `threshold_kind` "per_label" or "global") in config.json, where any timm user finds them."""
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.parent / f".{out_dir.name}.tmp-{uuid.uuid4().hex[:8]}"
    model = model.to(memory_format=torch.contiguous_format)  # safetensors refuses channels_last (non-contiguous) tensors
    was_training = model.training
    model.eval()
    try:
        with removed_on_failure(tmp):
            timm.models.save_for_hf(
                model.cpu() if next(model.parameters()).device.type != "cpu" else model,
                tmp,
                model_config=dict(label_names=list(class_names), **_decision(class_names, multi_label, thresholds,
                                                                              threshold_kind)),
                model_args=dict(num_classes=len(class_names), **(model_args or {})),
                safe_serialization=True,
                data_config=data_config,
            )
            (tmp / "metrics.json").write_text(json.dumps(metrics, indent=1))
    finally:
        model.train(was_training)
    old = None
    if out_dir.exists():
        old = out_dir.parent / f".{out_dir.name}.old-{uuid.uuid4().hex[:8]}"
        out_dir.rename(old)
    tmp.rename(out_dir)
    if old:
        shutil.rmtree(old, ignore_errors=True)
    return out_dir


def _decision(class_names: list[str], multi_label: bool, thresholds, threshold_kind) -> dict:
    """config.json's multi-label entries (none for a single-label model, so its config stays as it was)."""
    if not multi_label:
        return {}
    if thresholds is None:
        thresholds, threshold_kind = [DEFAULT_THRESHOLD] * len(class_names), "default"
    if len(thresholds) != len(class_names):
        raise ValueError(f"{len(thresholds)} thresholds for {len(class_names)} labels")
    return dict(multi_label=True, thresholds=[float(t) for t in thresholds], threshold_kind=threshold_kind)


def decision_rule(config: dict) -> tuple[bool, list[float] | None]:
    """(multi_label, thresholds) of a model folder's config: thresholds one per label, 0.5 where a multi-label
    config lacks them; None for a single-label model (its answer is the most probable class)."""
    if not config.get("multi_label"):
        return False, None
    n = len(config.get("label_names") or []) or int(config["num_classes"])
    thresholds = config.get("thresholds") or [DEFAULT_THRESHOLD] * n
    return True, [float(t) for t in thresholds]


def check_model_folder(model_dir: str | Path) -> Path:
    path = Path(model_dir)
    missing = [name for name in REQUIRED if not (path / name).is_file()]
    if not path.is_dir() or missing:
        raise UserError(f"{model_dir} is not a Snapfit model folder (missing {', '.join(missing) or 'the folder'}).")
    return path


def read_config(model_dir: str | Path) -> dict:
    return json.loads((check_model_folder(model_dir) / "config.json").read_text())


def read_metrics(model_dir: str | Path) -> dict:
    path = Path(model_dir) / "metrics.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def load_model_folder(model_dir: str | Path) -> tuple[torch.nn.Module, dict]:
    """Rebuild the trained model through plain timm, exactly as a user outside Snapfit would."""
    path = check_model_folder(model_dir)
    config = read_config(path)
    model = timm.create_model(f"local-dir:{path.resolve()}", pretrained=True)
    return model.eval(), config


def zip_model_folder(model_dir: str | Path, zip_base: str | Path) -> Path:
    """Zip the folder for download (the same zip can be loaded back for classification)."""
    path = check_model_folder(model_dir)
    target = Path(f"{zip_base}.zip")
    # Written under another name, then renamed: a crash mid-way never leaves a truncated zip under the real name.
    partial = target.parent / f".{target.stem}.tmp-{uuid.uuid4().hex[:8]}"
    with removed_on_failure(Path(f"{partial}.zip")):
        return Path(shutil.make_archive(str(partial), "zip", root_dir=path)).replace(target)


def to_onnx(model_dir: str | Path, out_path: str | Path) -> Path:
    """Export a model folder to ONNX (dynamic batch, input: normalised images at the trained size), with the
    class names and preprocessing in the file's metadata so it stands on its own; for a multi-label model also
    multi_label, thresholds and threshold_kind (the output stays logits: sigmoid, then compare per label)."""
    try:
        import onnx
    except ImportError as exc:
        raise UserError("ONNX export needs the onnx and onnxscript packages: pip install -r requirements.txt") from exc
    model, config = load_model_folder(model_dir)
    pretrained = config.get("pretrained_cfg", {})
    size = int(pretrained.get("input_size", (3, 224, 224))[-1])
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    batch = torch.export.Dim("batch", min=1, max=4096)
    program = torch.onnx.export(model, (torch.zeros(2, 3, size, size),), dynamo=True, verbose=False,
                                input_names=["image"], output_names=["logits"], dynamic_shapes=({0: batch},))
    proto = program.model_proto
    meta = dict(label_names=config.get("label_names"), input_size=[3, size, size], mean=pretrained.get("mean"),
                std=pretrained.get("std"), architecture=config.get("architecture"))
    multi_label, thresholds = decision_rule(config)
    if multi_label:
        meta |= dict(multi_label=True, thresholds=thresholds, threshold_kind=config.get("threshold_kind"))
    for key, value in meta.items():
        proto.metadata_props.add(key=key, value=json.dumps(value))
    partial = out.with_name(f".{out.name}.tmp-{uuid.uuid4().hex[:8]}")
    with removed_on_failure(partial):
        onnx.save(proto, str(partial))
        return partial.replace(out)  # renamed only once complete, like the model folder


@contextmanager
def removed_on_failure(partial: Path):
    """Delete the half-written file or folder if the block fails, so only complete outputs are ever renamed into
    place (a killed process leaves only the dot-named partial)."""
    try:
        yield
    except BaseException:
        if partial.is_dir():
            shutil.rmtree(partial, ignore_errors=True)
        else:
            partial.unlink(missing_ok=True)
        raise
