"""The model card: the README.md a Hub model repo shows, written from a model folder.

It holds what a stranger needs to trust and use the model: validation metrics, a per-class table, the
confusion matrix and LR-finder figures, the hyper-parameters, the class names, where the data came from
and code that loads the model in plain timm. Nothing that names this machine (paths, process ids) leaves
it: see `public_source` and `public_metrics`.
"""
from __future__ import annotations

import io
import json
import re
from pathlib import Path

import timm
import torch
from huggingface_hub import EvalResult, ModelCardData

from engine.evaluate import per_class_scores
from engine.export import read_config, read_metrics
from engine.figures import confusion, lr_curve

BUILTIN = "builtin:shapes"
HUB_ID = re.compile(r"^hub:([\w.-]+(?:/[\w.-]+)?)$|^([\w.-]+/[\w.-]+)$")  # hub:beans, hub:owner/name, owner/name
CONFUSION_PNG = "confusion_matrix.png"
LR_FIND_PNG = "lr_find.png"
LR_FIND_JSON = "lr_find.json"  # an LR finder result (engine.events.LRResult as JSON) kept in the model folder


def public_source(source: str | None) -> str:
    """How to name a dataset source outside this machine: a Hub id or `builtin:shapes` as is, a local
    folder or zip by its own name only (a server path would reveal other people's workspace ids)."""
    source = (source or "").strip()
    if not source or source == BUILTIN or HUB_ID.match(source) and not Path(source).exists():
        return source
    return Path(source.rstrip("/\\")).name


def hub_dataset_id(source: str | None) -> str | None:
    match = HUB_ID.match((source or "").strip())
    return (match.group(1) or match.group(2)) if match and not Path(source).exists() else None


def public_metrics(metrics: dict) -> dict:
    """metrics.json without what names this machine: the process id, and local paths of weights files."""
    out = {k: v for k, v in metrics.items() if k not in ("pid",)}
    hyper = dict(out.get("hyperparameters") or {})
    if hyper.get("weights") not in (None, "pretrained", "scratch"):
        hyper["weights"] = Path(str(hyper["weights"])).name
    out["hyperparameters"] = hyper
    if isinstance(out.get("weights"), str) and "/" in out["weights"]:
        out["weights"] = re.sub(r"(/[^\s/]+)+/([^\s/]+)", r"\2", out["weights"])
    if isinstance(out.get("data"), dict):  # {source, load: {source, ...}, split}: see engine.train.decode_once
        data = dict(out["data"], source=public_source(out["data"].get("source")))
        if isinstance(data.get("load"), dict):
            data["load"] = dict(data["load"], source=public_source(data["load"].get("source")))
        out["data"] = data
    return out


def dataset_source(metrics: dict) -> str | None:
    return (metrics.get("data") or {}).get("source")


def figures(model_dir: str | Path) -> dict[str, bytes]:
    """PNG files for the card: the confusion matrix, and the LR finder's curve when the folder has one."""
    metrics, out = read_metrics(model_dir), {}
    if metrics.get("confusion_matrix"):
        out[CONFUSION_PNG] = _png(confusion(metrics["confusion_matrix"], metrics["class_names"]))
    lr = lr_find_result(model_dir)
    if lr:
        out[LR_FIND_PNG] = _png(lr_curve(lr["lrs"], lr["losses"], lr["smoothed"], lr.get("suggestions") or {}))
    return out


def lr_find_result(model_dir: str | Path) -> dict | None:
    path = Path(model_dir) / LR_FIND_JSON
    return json.loads(path.read_text()) if path.is_file() else None


def _png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def render(model_dir: str | Path, repo_id: str) -> str:
    """The README.md for `repo_id`, from the model folder's config.json and metrics.json."""
    config, metrics = read_config(model_dir), public_metrics(read_metrics(model_dir))
    names = config.get("label_names") or metrics.get("class_names") or []
    hyper = metrics.get("hyperparameters") or {}
    sections = [
        _front_matter(config, metrics, repo_id.split("/")[-1]),
        f"# {repo_id.split('/')[-1]}\n\n{_summary(config, metrics, hyper)}",
        _results(metrics, names),
        _how_to_use(repo_id),
        _training(metrics, hyper, lr_find_result(model_dir)),
        "## Classes\n\n" + "\n".join(f"{i}. {name}" for i, name in enumerate(names)),
    ]
    return "\n\n".join(s for s in sections if s) + "\n"


def _front_matter(config: dict, metrics: dict, model_name: str) -> str:
    """The YAML the Hub reads, made by huggingface_hub itself so its parser reads it back: the validation
    metrics go in a `model-index`, which is what the Hub shows as the model's results."""
    dataset, results = hub_dataset_id(dataset_source(metrics)), _eval_results(metrics)
    data = ModelCardData(library_name="timm", pipeline_tag="image-classification", license="apache-2.0",
                         tags=["image-classification", "timm", "snapfit"], datasets=[dataset] if dataset else None,
                         base_model=_base_model(config, metrics), metrics=["accuracy"],
                         model_name=model_name if results else None, eval_results=results or None)
    return f"---\n{data.to_yaml()}\n---"


def _eval_results(metrics: dict) -> list[EvalResult]:
    """Accuracy and loss on the validation images, for the model-index."""
    name, kind = _dataset_name_and_type(metrics)
    config = ((metrics.get("data") or {}).get("load") or {}).get("config")
    found = [("accuracy", "Validation accuracy", metrics.get("val_accuracy")),
             ("loss", "Validation loss (cross-entropy)", metrics.get("val_loss"))]
    return [EvalResult(task_type="image-classification", dataset_type=kind, dataset_name=name, dataset_config=config,
                       dataset_split="validation", metric_type=metric, metric_name=label, metric_value=float(value))
            for metric, label, value in found if value is not None]


def _dataset_name_and_type(metrics: dict) -> tuple[str, str]:
    """A Hub dataset by its id; anything else by a name without local paths (the model-index needs both)."""
    source = dataset_source(metrics)
    hub_id = hub_dataset_id(source)
    if hub_id:
        return hub_id, hub_id
    if source == BUILTIN:
        return "Snapfit built-in shapes", BUILTIN
    return public_source(source) or "images", "imagefolder"  # class folders, as a folder or .zip


def _base_model(config: dict, metrics: dict) -> str | None:
    """The Hub repo of the pretrained weights this model started from, if it started from any."""
    if (metrics.get("hyperparameters") or {}).get("weights") != "pretrained":
        return None
    name = (metrics.get("hyperparameters") or {}).get("model") or config.get("architecture")
    cfg = timm.models.get_pretrained_cfg(name) if name else None
    return getattr(cfg, "hf_hub_id", None) or None


def _dataset_line(metrics: dict) -> str:
    source = dataset_source(metrics)
    if not source:
        return "an image dataset"
    if source == BUILTIN:
        return "Snapfit's built-in *shapes* dataset (generated, no download)"
    hub_id = hub_dataset_id(source)
    if hub_id:
        return f"the Hub dataset [{hub_id}](https://huggingface.co/datasets/{hub_id})"
    return f"a dataset of the author's images (`{source}`)"


def _summary(config: dict, metrics: dict, hyper: dict) -> str:
    weights = hyper.get("weights", "?")
    start = "from pretrained weights" if weights == "pretrained" else "from scratch" if weights == "scratch" else f"from `{weights}`"
    acc = metrics.get("val_accuracy")
    text = (f"An image classifier for {len(config.get('label_names') or [])} classes: `{config.get('architecture')}` "
            f"trained {start} on {_dataset_line(metrics)} with Snapfit.")
    if acc is not None:
        text += f" Validation accuracy: **{acc * 100:.1f} %** on {metrics.get('num_val', '?')} held-out images."
    return text


def _results(metrics: dict, names: list[str]) -> str:
    cm = metrics.get("confusion_matrix")
    if not cm:
        return ""
    rows = per_class_scores(torch.tensor(cm), names)
    table = ["| class | precision | recall | F1 | images |", "|---|---|---|---|---|"]
    table += [f"| {r['name']} | {_pct(r['precision'])} | {_pct(r['recall'])} | {_pct(r['f1'])} | {r['support']} |" for r in rows]
    return ("## Results on the validation split\n\n"
            f"Accuracy {metrics['val_accuracy'] * 100:.1f} %, loss {metrics.get('val_loss', float('nan')):.4f}, "
            f"best epoch {metrics.get('best_epoch')} (the weights kept).\n\n" + "\n".join(table)
            + f"\n\n![Confusion matrix: rows are the actual class, columns the predicted class]({CONFUSION_PNG})")


def _pct(value) -> str:
    return "n/a" if value is None else f"{value * 100:.1f} %"


def _how_to_use(repo_id: str) -> str:
    return f"""## How to use

With plain [timm](https://github.com/huggingface/pytorch-image-models) (the class names are in the config):

```python
import timm
import torch
from huggingface_hub import EvalResult, ModelCardData
from PIL import Image

model = timm.create_model("hf-hub:{repo_id}", pretrained=True).eval()
transform = timm.data.create_transform(**timm.data.resolve_data_config(model=model))
labels = model.pretrained_cfg["label_names"]
image = Image.open("photo.jpg").convert("RGB")
with torch.no_grad():
    probabilities = model(transform(image).unsqueeze(0)).softmax(-1)[0]
print(labels[int(probabilities.argmax())], float(probabilities.max()))
```

With Snapfit: `huggingface-cli download {repo_id} --local-dir model` then
`python -m engine predict --model-dir model photo.jpg`, or upload the files in the app's Classify tab."""


def _training(metrics: dict, hyper: dict, lr: dict | None) -> str:
    keep = {k: v for k, v in hyper.items() if v is not None}
    table = ["| hyper-parameter | value |", "|---|---|"] + [f"| {k} | `{v}` |" for k, v in keep.items()]
    parts = ["## Training", f"{metrics.get('num_train', '?')} training and {metrics.get('num_val', '?')} validation images; "
             f"{metrics.get('seconds', '?')} s on {metrics.get('device', '?')}. {metrics.get('weights', '')}".strip(),
             "\n".join(table)]
    history = metrics.get("history") or []
    if history:
        rows = ["| epoch | train loss | val loss | val accuracy |", "|---|---|---|---|"]
        rows += [f"| {h['epoch']} | {h['train_loss']:.4f} | {h['val_loss']:.4f} | {h['val_acc'] * 100:.1f} % |" for h in history]
        parts.append("\n".join(rows))
    if lr:
        found = ", ".join(f"{k} {v:.2e}" for k, v in (lr.get("suggestions") or {}).items())
        parts.append(f"Learning-rate finder{': ' + found if found else ''}.\n\n![Loss against learning rate]({LR_FIND_PNG})")
    return "\n\n".join(parts)
