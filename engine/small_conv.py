"""A faster CPU path for convolutions whose output map is tiny (2x2 positions or fewer).

oneDNN, PyTorch's CPU convolution library, is slow on such maps: the last stage of a ResNet fed 64 px images
(512 channels at 2x2) takes ~28 ms per forward+backward in bf16 on 2 cores, against ~10 ms as one im2col
matrix product, and those few layers are about a third of a small-image training step.
`benchmarks/small_conv.py` measures both, layer by layer and for a whole step. `speed_up(model)` routes
such convolutions through `F.unfold` + matmul; everything else, and the weights, state dict and saved
model, are untouched. The result equals the convolution up to summation order, like any other kernel choice.
"""
from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import nn

MAX_POSITIONS = 4  # output positions per image up to which the matmul wins (measured: 2x2 yes, 4x4 no)


def speed_up(model: nn.Module) -> int:
    """Give every plain Conv2d of `model` the small-map path; returns how many convolutions got it."""
    count = 0
    for module in model.modules():
        # only plain Conv2d: subclasses (timm's Conv2dSame, ...) pad inside their own forward
        if type(module) is nn.Conv2d and module.groups == 1 and module.dilation == (1, 1) \
                and module.padding_mode == "zeros" and isinstance(module.padding, tuple):
            module.forward = functools.partial(_forward, module)
            count += 1
    return count


def _forward(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    (kh, kw), (sh, sw), (ph, pw) = conv.kernel_size, conv.stride, conv.padding
    ho, wo = (x.shape[-2] + 2 * ph - kh) // sh + 1, (x.shape[-1] + 2 * pw - kw) // sw + 1
    if x.device.type != "cpu" or ho * wo > MAX_POSITIONS:
        return conv._conv_forward(x, conv.weight, conv.bias)
    b = x.shape[0]
    cols = F.unfold(x, conv.kernel_size, padding=conv.padding, stride=conv.stride)  # (B, C*kh*kw, ho*wo)
    rows = cols.transpose(1, 2).reshape(b * ho * wo, -1)  # one 2-D product: a batched one is far slower
    out = rows @ conv.weight.reshape(conv.out_channels, -1).t()  # (B*ho*wo, out)
    if conv.bias is not None:
        out = out + conv.bias
    return out.reshape(b, ho * wo, conv.out_channels).transpose(1, 2).reshape(b, conv.out_channels, ho, wo)
