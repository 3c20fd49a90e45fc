"""The frozen backbone's forward through ONNX Runtime, for embedding on CPUs without bf16.

The `head` and `finetune` strategies embed every image once with the frozen backbone (engine/train.py). Where the
CPU has bf16, PyTorch's bf16 channels_last forward is as fast as ONNX Runtime's fp32 one. Where it has not (AVX2-only
CPUs, many laptops and cloud machines), PyTorch's fp32 forward of a depthwise network such as EfficientNet-Lite
runs at a fraction of the CPU's peak, and ONNX Runtime's fused kernels are more than twice as fast (the quick
recipe's embedding pass, export included: 2.4x; the whole run 1.6x: benchmarks/onnx_embed.py on a 2-core AMD EPYC
with AVX2 only). Exporting the backbone costs a few seconds, so the engine takes
this path only for passes large enough to repay it (`worth_it`), and falls back to PyTorch, saying why, if the
export or the runtime fails. Features agree with PyTorch's to float rounding (tests/engine/test_onnx_embed.py).
"""
from __future__ import annotations

import copy
import logging
import tempfile
import warnings
from pathlib import Path

import torch
from torch import nn

log = logging.getLogger("snapfit.onnx_embed")

# Below this many images ONNX Runtime saves a few seconds at most, not worth an export (Lite0 at 224 px on 2 AVX2
# cores: export and session 2.9 s; PyTorch fp32 embeds about 17 images/s, ONNX Runtime more than twice that).
MIN_IMAGES = 400


def available() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def worth_it(num_images: int, bf16: bool, device: torch.device) -> bool:
    """Is embedding `num_images` through ONNX Runtime faster than PyTorch here?"""
    return device.type == "cpu" and not bf16 and num_images >= MIN_IMAGES and available()


class _Pooled(nn.Module):
    """The backbone's pooled features, the way Learner.embed takes them."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.forward_head(self.model.forward_features(x), pre_logits=True)


class OnnxBackbone:
    """`backbone(x)`: pooled features of normalised float images (B, 3, H, W), as PyTorch's eval forward gives them."""

    def __init__(self, model: nn.Module, img_size: int, threads: int | None = None) -> None:
        import onnxruntime as ort

        pooled = _Pooled(copy.deepcopy(model)).eval().to(memory_format=torch.contiguous_format)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        # no busy-waiting between runs: the next thing on these cores is PyTorch's own thread pool
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        with tempfile.TemporaryDirectory(prefix="snapfit-onnx-") as tmp, torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the exporter's deprecation and tracer notes: nothing a user can act on
            path = Path(tmp) / "backbone.onnx"
            # the TorchScript exporter: a few seconds, where the dynamo exporter takes tens for the same graph
            torch.onnx.export(pooled, (torch.zeros(2, 3, img_size, img_size),), str(path), input_names=["x"],
                              output_names=["features"], dynamic_axes={"x": {0: "batch"}, "features": {0: "batch"}},
                              dynamo=False)
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = x.contiguous(memory_format=torch.contiguous_format).float()
        return torch.from_numpy(self.session.run(None, {"x": x.numpy()})[0])


def build(model: nn.Module, img_size: int) -> OnnxBackbone | None:
    """An OnnxBackbone for `model`, or None (logged) where exporting or loading it fails: PyTorch embeds then."""
    try:
        return OnnxBackbone(model, img_size)
    except Exception as exc:  # any failure here only costs speed: the PyTorch forward is always there
        log.warning("ONNX Runtime embedding unavailable for this model (%s: %s); embedding with PyTorch",
                    type(exc).__name__, exc)
        return None
