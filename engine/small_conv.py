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
    if conv.weight.is_contiguous(memory_format=torch.channels_last) and not conv.weight.is_contiguous():
        return _channels_last(conv, x, ho, wo)
    b = x.shape[0]
    cols = F.unfold(x, conv.kernel_size, padding=conv.padding, stride=conv.stride)  # (B, C*kh*kw, ho*wo)
    rows = cols.transpose(1, 2).reshape(b * ho * wo, -1)  # one 2-D product: a batched one is far slower
    out = rows @ conv.weight.reshape(conv.out_channels, -1).t()  # (B*ho*wo, out)
    if conv.bias is not None:
        out = out + conv.bias
    return out.reshape(b, ho * wo, conv.out_channels).transpose(1, 2).reshape(b, conv.out_channels, ho, wo)


def _channels_last(conv: nn.Conv2d, x: torch.Tensor, ho: int, wo: int) -> torch.Tensor:
    """The same product for a channels_last model, in its own memory order: the weight (O, kh, kw, C) in memory is
    a matrix as it lies, and the output comes out channels_last, so no weight, gradient or output is copied to
    another layout (F.unfold's order copies the weight and its gradient at every step: 4 % of a resnet18 step)."""
    (kh, kw), (sh, sw), (ph, pw) = conv.kernel_size, conv.stride, conv.padding
    b = x.shape[0]
    nhwc = F.pad(x.permute(0, 2, 3, 1), (0, 0, pw, pw, ph, ph))  # (B, H, W, C), zero-padded
    patches = nhwc.unfold(1, kh, sh).unfold(2, kw, sw)  # (B, ho, wo, C, kh, kw), a view
    rows = patches.permute(0, 1, 2, 4, 5, 3).reshape(b * ho * wo, -1)  # (B*ho*wo, kh*kw*C): the one copy
    weight = conv.weight.permute(0, 2, 3, 1).reshape(conv.out_channels, -1)  # (O, kh*kw*C): a view
    out = rows @ weight.t()
    if conv.bias is not None:
        out = out + conv.bias
    return out.reshape(b, ho, wo, conv.out_channels).permute(0, 3, 1, 2)  # channels_last (B, O, ho, wo), a view
