"""The model card: the README.md a Hub model repo shows, written from a model folder.

It holds what a stranger needs to trust and use the model: validation metrics, a per-class table, the
confusion matrix and LR-finder figures, the hyper-parameters, the class names, where the data came from
and code that loads the model in plain timm. A multi-label model's card says so, gives mAP and F1 with a
per-label table instead of accuracy, and lists its decision thresholds with the code that applies them.
Nothing that names this machine (paths, process ids) leaves it: see `public_source` and `public_metrics`.
"""
from __future__ import annotations

import io
import json
import re
from pathlib import Path

import timm
import torch
from huggingface_hub import EvalResult, ModelCardData

from engine.data import BUILTIN, BUILTIN_MULTI
from engine.evaluate import per_class_scores
from engine.export import decision_rule, read_config, read_metrics
from engine.figures import confusion, lr_curve

BUILT_IN_NAMES = {BUILTIN: ("Snapfit built-in shapes", "Snapfit's built-in *shapes* dataset (generated, no download)"),
                  BUILTIN_MULTI: ("Snapfit built-in multi-label shapes",
                                  "Snapfit's built-in multi-label *shapes* dataset (one to three shapes a picture, "
                                  "generated, no download)")}
HUB_ID = re.compile(r"^hub:([\w.-]+(?:/[\w.-]+)?)$|^([\w.-]+/[\w.-]+)$")  # hub:beans, hub:owner/name, owner/name
CONFUSION_PNG = "confusion_matrix.png"
LR_FIND_PNG = "lr_find.png"
LR_FIND_JSON = "lr_find.json"  # an LR finder result (engine.events.LRResult as JSON) kept in the model folder


def public_source(source: str | None) -> str:
    """How to name a dataset source outside this machine: a Hub id or a built-in set (`builtin:shapes`) as is, a
    local folder or zip by its own name only (a server path would reveal other people's workspace ids)."""
    source = (source or "").strip()
    if not source or source in BUILT_IN_NAMES or HUB_ID.match(source) and not Path(source).exists():
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
    multi_label, thresholds = decision_rule(config)
    sections = [
        _front_matter(config, metrics, repo_id.split("/")[-1]),
        f"# {repo_id.split('/')[-1]}\n\n{_summary(config, metrics, hyper)}",
        _multi_label_results(config, metrics) if multi_label else _results(metrics, names),
        _how_to_use_multi_label(repo_id, config, thresholds) if multi_label else _how_to_use(repo_id),
        _training(metrics, hyper, lr_find_result(model_dir), "val mAP" if multi_label else "val accuracy"),
        ("## Labels and thresholds\n\n" + "\n".join(f"{i}. {name} (threshold {t:.3f})"
                                                     for i, (name, t) in enumerate(zip(names, thresholds))))
        if multi_label else "## Classes\n\n" + "\n".join(f"{i}. {name}" for i, name in enumerate(names)),
    ]
    return "\n\n".join(s for s in sections if s) + "\n"


def _front_matter(config: dict, metrics: dict, model_name: str) -> str:
    """The YAML the Hub reads, made by huggingface_hub itself so its parser reads it back: the validation
    metrics go in a `model-index`, which is what the Hub shows as the model's results."""
    dataset, results = hub_dataset_id(dataset_source(metrics)), _eval_results(metrics)
    data = ModelCardData(library_name="timm", pipeline_tag="image-classification", license="apache-2.0",
                         tags=["image-classification", "timm", "snapfit"], datasets=[dataset] if dataset else None,
                         base_model=_base_model(config, metrics),
                         metrics=["map", "f1"] if config.get("multi_label") else ["accuracy"],
                         model_name=model_name if results else None, eval_results=results or None)
    return f"---\n{data.to_yaml()}\n---"


def _eval_results(metrics: dict) -> list[EvalResult]:
    """Accuracy and loss on the validation images, for the model-index."""
    name, kind = _dataset_name_and_type(metrics)
    config = ((metrics.get("data") or {}).get("load") or {}).get("config")
    summary = metrics.get("multilabel") or {}
    found = [("accuracy", "Validation accuracy", metrics.get("val_accuracy")),
             ("map", "Validation mAP", metrics.get("val_map")),
             ("f1", "Validation micro F1 (at the thresholds)", summary.get("micro_f1")),
             ("loss", "Validation loss (" + ("binary cross-entropy" if metrics.get("multi_label") else "cross-entropy") + ")",
              metrics.get("val_loss"))]
    return [EvalResult(task_type="image-classification", dataset_type=kind, dataset_name=name, dataset_config=config,
                       dataset_split="validation", metric_type=metric, metric_name=label, metric_value=float(value))
            for metric, label, value in found if value is not None]


def _dataset_name_and_type(metrics: dict) -> tuple[str, str]:
    """A Hub dataset by its id; anything else by a name without local paths (the model-index needs both)."""
    source = dataset_source(metrics)
    hub_id = hub_dataset_id(source)
    if hub_id:
        return hub_id, hub_id
    if source in BUILT_IN_NAMES:
        return BUILT_IN_NAMES[source][0], source
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
    if source in BUILT_IN_NAMES:
        return BUILT_IN_NAMES[source][1]
    hub_id = hub_dataset_id(source)
    if hub_id:
        return f"the Hub dataset [{hub_id}](https://huggingface.co/datasets/{hub_id})"
    return f"a dataset of the author's images (`{source}`)"


def _summary(config: dict, metrics: dict, hyper: dict) -> str:
    weights = hyper.get("weights", "?")
    start = "from pretrained weights" if weights == "pretrained" else "from scratch" if weights == "scratch" else f"from `{weights}`"
    acc = metrics.get("val_accuracy")
    n = len(config.get("label_names") or [])
    if config.get("multi_label"):
        text = (f"A multi-label image classifier for {n} labels (an image may get several labels, or none): "
                f"`{config.get('architecture')}` trained {start} on {_dataset_line(metrics)} with Snapfit.")
        if metrics.get("val_map") is not None:
            text += f" Validation mAP: **{metrics['val_map'] * 100:.1f} %** on {metrics.get('num_val', '?')} held-out images."
        return text
    text = (f"An image classifier for {n} classes: `{config.get('architecture')}` "
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


THRESHOLD_KINDS = {  # config.json's threshold_kind -> how the card explains it
    "per_label": "one per label, chosen on the validation split to maximise that label's F1 (labels with too few "
                 "validation images share the global one)",
    "global": "one for all labels, chosen on the validation split to maximise F1",
    "default": "0.5 for every label (none was chosen on validation)",
}


def _threshold_text(config: dict) -> str:
    return THRESHOLD_KINDS.get(config.get("threshold_kind"), "as saved in `config.json`")


def _multi_label_results(config: dict, metrics: dict) -> str:
    """mAP, F1 at the thresholds and the per-label table (from metrics.json's `multilabel`, the summary of
    engine.multilabel.summarize) for a multi-label model."""
    summary = metrics.get("multilabel") or {}
    head = (f"Each label has its own sigmoid probability; the model gives an image every label whose probability is "
            f"at least that label's threshold. Thresholds: {_threshold_text(config)}.")
    if not summary:
        return "## Results on the validation split\n\n" + head
    scores = (f"mAP {summary.get('map', metrics.get('val_map', 0)) * 100:.1f} %, micro F1 {summary['micro_f1'] * 100:.1f} %, "
              f"macro F1 {summary['macro_f1'] * 100:.1f} % at the thresholds")
    if metrics.get("val_loss") is not None:
        scores += f", loss {metrics['val_loss']:.4f}"
    table = ["| label | threshold | precision | recall | F1 | AP | images |", "|---|---|---|---|---|---|---|"]
    table += [f"| {r['name']} | {r['threshold']:.3f} | {_pct(r['precision'])} | {_pct(r['recall'])} | {_pct(r['f1'])} "
              f"| {_pct(r['ap'])} | {r['support']} |" for r in summary.get("per_label", [])]
    return (f"## Results on the validation split\n\n{scores}; best epoch {metrics.get('best_epoch')} (the weights "
            f"kept).\n\n{head}\n\n" + "\n".join(table))


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


def _how_to_use_multi_label(repo_id: str, config: dict, thresholds: list[float]) -> str:
    return f"""## How to use

With plain [timm](https://github.com/huggingface/pytorch-image-models): a sigmoid per label, then each label's
probability against its threshold (`thresholds` in `config.json`, in label order: {_threshold_text(config)}).

```python
import json

import timm
import torch
from huggingface_hub import hf_hub_download
from PIL import Image

model = timm.create_model("hf-hub:{repo_id}", pretrained=True).eval()
transform = timm.data.create_transform(**timm.data.resolve_data_config(model=model))
config = json.load(open(hf_hub_download("{repo_id}", "config.json")))
labels, thresholds = config["label_names"], torch.tensor(config["thresholds"])  # {[round(t, 3) for t in thresholds]}
image = Image.open("photo.jpg").convert("RGB")
with torch.no_grad():
    probabilities = model(transform(image).unsqueeze(0)).sigmoid()[0]
print({{label: float(p) for label, p, t in zip(labels, probabilities, thresholds) if p >= t}})
```

With Snapfit: `huggingface-cli download {repo_id} --local-dir model` then
`python -m engine predict --model-dir model photo.jpg` (the labels above their thresholds, then the others), or
upload the files in the app's Classify tab. The ONNX export carries the thresholds in its metadata."""


def _training(metrics: dict, hyper: dict, lr: dict | None, score: str = "val accuracy") -> str:
    keep = {k: v for k, v in hyper.items() if v is not None}
    table = ["| hyper-parameter | value |", "|---|---|"] + [f"| {k} | `{v}` |" for k, v in keep.items()]
    parts = ["## Training", f"{metrics.get('num_train', '?')} training and {metrics.get('num_val', '?')} validation images; "
             f"{metrics.get('seconds', '?')} s on {metrics.get('device', '?')}. {metrics.get('weights', '')}".strip(),
             "\n".join(table)]
    history = metrics.get("history") or []
    if history:
        rows = [f"| epoch | train loss | val loss | {score} |", "|---|---|---|---|"]
        rows += [f"| {h['epoch']} | {h['train_loss']:.4f} | {h['val_loss']:.4f} | {h['val_acc'] * 100:.1f} % |" for h in history]
        parts.append("\n".join(rows))
    if lr:
        found = ", ".join(f"{k} {v:.2e}" for k, v in (lr.get("suggestions") or {}).items())
        parts.append(f"Learning-rate finder{': ' + found if found else ''}.\n\n![Loss against learning rate]({LR_FIND_PNG})")
    return "\n\n".join(parts)
