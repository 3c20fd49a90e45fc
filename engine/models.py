"""Models: a curated catalog, creation with any weight source, the head swap, and layer groups.

Everything here is timm underneath: `timm.create_model` builds the network and swaps the head,
`group_matcher` gives the layer groups used for discriminative learning rates and gradual unfreezing.
"""
from __future__ import annotations

import difflib
import os
from dataclasses import dataclass, field
from pathlib import Path

import timm
import torch
from huggingface_hub.utils import httpx as hub_httpx  # huggingface_hub's httpx2: its errors are no OSError
from timm.models import group_parameters

from engine import hub
from engine.errors import UserError


@dataclass(frozen=True)
class CatalogEntry:
    name: str  # what the user picks; a timm name with the pretrained tag it uses
    params_m: float
    note: str
    cpu: bool = True  # fine-tunes in minutes on a laptop CPU


CATALOG = [
    CatalogEntry("resnet18.a1_in1k", 11.2, "Sturdy default; fast with bf16 on CPU"),
    CatalogEntry("mobilenetv3_large_100.ra_in1k", 4.2, "Small and quick, good for phones"),
    CatalogEntry("efficientnet_b0.ra_in1k", 4.0, "Accurate for its size, slower to train on CPU"),
    CatalogEntry("convnext_atto.d2_in1k", 3.4, "Modern tiny ConvNet"),
    CatalogEntry("vit_tiny_patch16_224.augreg_in21k_ft_in1k", 5.5, "Tiny Vision Transformer"),
    CatalogEntry("resnet10t.c3_in1k", 5.4, "The quickest from scratch on small images"),
    CatalogEntry("resnet50.a1_in1k", 25.6, "Classic, wants a GPU for full fine-tuning", cpu=False),
    CatalogEntry("convnext_tiny.fb_in22k_ft_in1k", 28.6, "Strong transfer, GPU-sized", cpu=False),
    CatalogEntry(
        "hf-hub:timm/eva02_large_patch14_clip_336.merged2b_ft_inat21",
        304.0,
        "iNaturalist 2021 species model (10,000 classes); large, needs a GPU and the Hub",
        cpu=False,
    ),
]

WEIGHT_CHOICES = ("pretrained", "scratch")  # or a path to a weights file / model folder


def check_name(name: str) -> str:
    """Return the name if timm knows it; otherwise raise with the closest names as suggestions."""
    name = (name or "").strip()
    if not name:
        raise UserError("Choose a model: pick one from the list or type a timm model name such as resnet18.")
    if name.startswith(("hf-hub:", "local-dir:")):
        return name
    arch, _, tag = name.partition(".")
    if timm.is_model(arch):
        known = timm.list_pretrained(arch + ".*")
        if not tag or name in known:
            return name
        tags = ", ".join(n.split(".", 1)[1] for n in known) or "none"
        raise UserError(f"timm has {arch} but no pretrained tag '{tag}'. Known tags: {tags}.")
    close = difflib.get_close_matches(name, timm.list_models() + timm.list_pretrained(), n=3, cutoff=0.6)
    hint = f" Did you mean {', '.join(close)}?" if close else " See timm.list_models() for the names timm knows."
    raise UserError(f"Unknown model '{name}'.{hint}")


@dataclass
class LoadReport:
    """What happened to the weights: shown to the user so a silent random init never goes unnoticed."""

    source: str  # "pretrained" | "scratch" | a file path
    loaded: int = 0
    skipped: list[str] = field(default_factory=list)  # tensors not taken (the old head, shape mismatches)

    def describe(self) -> str:
        if self.source == "scratch":
            return "Random initialisation (training from scratch)."
        skipped = f", skipped {len(self.skipped)} ({', '.join(self.skipped[:4])}{'…' if len(self.skipped) > 4 else ''})"
        return f"Loaded {self.loaded} tensors from {self.source}{skipped if self.skipped else ''}."


def create(
    name: str,
    num_classes: int,
    weights: str = "scratch",
    drop_rate: float = 0.0,
    drop_path_rate: float = 0.0,
    img_size: int | None = None,
) -> tuple[torch.nn.Module, LoadReport]:
    """Build `name` with a fresh `num_classes` head and weights from the Hub, a local file, or nowhere.

    `img_size` reaches the models whose constructor takes it (ViTs and their kin are built for one input size;
    timm resamples their pretrained position embeddings to it); the others run at any size anyway.
    """
    name = check_name(name)
    kwargs = dict(num_classes=num_classes, drop_rate=drop_rate)
    if drop_path_rate:
        kwargs["drop_path_rate"] = drop_path_rate
    if img_size:
        kwargs["img_size"] = img_size
    if weights == "pretrained":
        return _create_pretrained(name, kwargs)
    try:
        model = _timm_create(name, False, kwargs)
    except TypeError as exc:  # e.g. drop_path_rate on a model without stochastic depth
        raise UserError(f"{name} does not accept one of the options given: {exc}") from exc
    except (OSError, hub_httpx.HTTPError) as exc:  # an hf-hub: name reads its config from the Hub
        raise UserError(f"Could not build {name}: it needs the Hub ({_offline_hint()}).") from exc
    if weights in ("scratch", "", None):
        return model, LoadReport("scratch")
    return model, load_weights_file(model, weights)


def _timm_create(name: str, pretrained: bool, kwargs: dict) -> torch.nn.Module:
    """timm.create_model, dropping `img_size` for models that do not take it (timm has no way to ask first)."""
    try:
        return timm.create_model(name, pretrained=pretrained, **kwargs)
    except TypeError as exc:
        if "img_size" not in kwargs or "img_size" not in str(exc):
            raise
        return timm.create_model(name, pretrained=pretrained, **{k: v for k, v in kwargs.items() if k != "img_size"})


def size_args(model: torch.nn.Module) -> dict:
    """Constructor arguments fixing the input size (ViT-style models), so a saved model is rebuilt at the size
    it was trained at; empty for models that take any size."""
    img_size = getattr(getattr(model, "patch_embed", None), "img_size", None)
    return {"img_size": list(img_size)} if img_size else {}


def check_input_size(model: torch.nn.Module, name: str, size: int) -> None:
    """One blank image through the model, so a size it cannot take is a clear message before training starts."""
    was_training = model.training
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, 3, size, size, device=next(model.parameters()).device))
    except (AssertionError, RuntimeError, ValueError) as exc:
        native = model.pretrained_cfg.get("input_size", (3, 224, 224))[-1] if hasattr(model, "pretrained_cfg") else 224
        raise UserError(f"{name} cannot take {size} px images ({exc}). Try another image size, such as its native {native} px.") from exc
    finally:
        model.train(was_training)


def check_pretrained_reachable(name: str) -> None:
    """Fail at once, not after 46 s of retries, when pretrained weights cannot be downloaded."""
    if hub.is_offline():
        raise UserError(
            f"Pretrained weights for {name} come from the Hugging Face Hub, which this machine cannot reach. "
            "Train from scratch, or give a local weights file (.safetensors or a timm state dict)."
        )


def _create_pretrained(name: str, kwargs: dict) -> tuple[torch.nn.Module, LoadReport]:
    check_pretrained_reachable(name)
    try:
        model = _timm_create(name, True, kwargs)
    except RuntimeError as exc:
        if "No pretrained weights" in str(exc):
            raise UserError(f"timm has no pretrained weights for {name}; choose scratch or another model.") from exc
        raise
    except (OSError, hub_httpx.HTTPError) as exc:
        raise UserError(_download_failure(name, exc)) from exc
    classifier = model.get_classifier()  # the new head: its tensors were not among the pretrained ones
    head = {f"{prefix}.{n}" for prefix, module in model.named_modules() if module is classifier for n, _ in module.named_parameters()}
    return model, LoadReport("pretrained", loaded=len(model.state_dict()) - len(head), skipped=sorted(head))


def _download_failure(name: str, exc: Exception) -> str:
    """One line for a failed weights download. huggingface_hub has already tried 5 more times (resuming where it
    can); it downloads to a temporary file that it deletes on failure, so its cache holds only complete files and
    trying again is safe."""
    failure = hub.connection_failure(exc)
    if failure == "lost":
        return (f"The download of the pretrained weights for {name} was interrupted: the connection to the Hugging Face Hub "
                "was lost. Check your internet connection and try again, or train from scratch.")
    if failure == "unreachable":
        return (f"Could not download the pretrained weights for {name}: the Hugging Face Hub cannot be reached. Check your "
                "internet connection and try again, or train from scratch.")
    text = " ".join(str(exc).split()) or type(exc).__name__
    return f"Could not download weights for {name}: {text[:300]}. {_offline_hint()}"


def _offline_hint() -> str:
    return "the Hub is unreachable (offline)" if hub.is_offline() else "check the name and your connection"


def load_weights_file(model: torch.nn.Module, path: str) -> LoadReport:
    """Load body weights from a .safetensors / torch state dict or a model folder; skip what does not fit.

    Loaded safely: safetensors, or torch.load with weights_only=True (timm's load_state_dict), never
    by unpickling arbitrary objects. Tensors whose name or shape differs (the old head) are skipped
    and reported.
    """
    file = _weights_path(path)
    try:
        state = timm.models.load_state_dict(str(file), weights_only=True)
    except Exception as exc:  # a corrupt or pickled-object file: say so rather than crash
        raise UserError(f"Could not read weights from {file.name}: {exc}") from exc
    own = model.state_dict()
    take = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    if not take:
        raise UserError(f"None of the tensors in {file.name} fit {type(model).__name__}: is it a weights file for this architecture?")
    model.load_state_dict(take, strict=False)
    skipped = sorted(set(own) - set(take))
    return LoadReport(str(path), loaded=len(take), skipped=skipped)


def _weights_path(path: str) -> Path:
    p = Path(os.path.expanduser(str(path)))
    if p.is_dir():
        p = p / "model.safetensors"
    if not p.is_file():
        raise UserError(f"Weights file not found: {path}. Give a .safetensors / .pth file or a Snapfit model folder.")
    if p.suffix not in (".safetensors", ".pth", ".pt", ".bin"):
        raise UserError(f"{p.name}: weights must be .safetensors, .pth, .pt or .bin.")
    return p


def layer_groups(model: torch.nn.Module) -> list[list[torch.nn.Parameter]]:
    """Parameters in groups from the stem (first) to the head (last), as timm's group_matcher defines them."""
    named = dict(model.named_parameters())
    groups = group_parameters(model, model.group_matcher(coarse=True))
    ordered = [[named[n] for n in names] for _, names in sorted(groups.items())]
    head = {id(p) for p in model.get_classifier().parameters()}
    # Keep the classifier in a group of its own so "frozen body" always means exactly "all but the head".
    body = [[p for p in g if id(p) not in head] for g in ordered]
    return [g for g in body if g] + [list(model.get_classifier().parameters())]


def set_trainable(model: torch.nn.Module, groups: list[list[torch.nn.Parameter]], first_trainable: int) -> None:
    """Freeze groups[:first_trainable]; train the rest."""
    for i, group in enumerate(groups):
        for p in group:
            p.requires_grad_(i >= first_trainable)


def train_mode(model: torch.nn.Module) -> None:
    """model.train(), but modules whose parameters are all frozen stay in eval mode.

    `requires_grad=False` alone still lets BatchNorm update its running statistics in train mode, which
    quietly changes a "frozen" backbone (STACK.md fact 9). Keeping frozen modules in eval mode avoids that
    and, unlike swapping in FrozenBatchNorm, is undone simply by unfreezing.
    """
    model.train()
    for module in model.modules():
        params = list(module.parameters(recurse=False))
        if params and not any(p.requires_grad for p in params):
            module.eval()


def data_config(model: torch.nn.Module, img_size: int) -> dict:
    """Preprocessing for this model at our working size: its own mean/std and interpolation."""
    cfg = timm.data.resolve_model_data_config(model)
    return dict(
        input_size=(3, img_size, img_size),
        interpolation=cfg.get("interpolation", "bicubic"),
        mean=tuple(float(v) for v in cfg["mean"]),
        std=tuple(float(v) for v in cfg["std"]),
        crop_pct=1.0,  # we square-crop the whole image to the working size (engine.data.to_square)
        crop_mode="center",
    )
