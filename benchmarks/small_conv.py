"""engine/small_conv.py against PyTorch's own CPU convolution (oneDNN), on the maps where it is used.

    python benchmarks/small_conv.py

Times forward+backward of the convolutions of a ResNet-18's last stage at 64 px input (2x2 output maps),
then one whole training step of resnet18 (batch 64, 64 px, bf16 autocast where supported, channels_last,
fused AdamW: what engine.train does), each with and without `small_conv.speed_up`. Prints medians and ratios.
"""
from __future__ import annotations

import contextlib
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from arms import machine, median_seconds  # noqa: E402

from engine import small_conv  # noqa: E402
from engine.train import TrainConfig, autocast, use_bf16  # noqa: E402


def median_ms(fn, repeats: int = 15) -> float:
    return 1000 * median_seconds(fn, repeats, warmup=3)


def conv_ms(cin: int, cout: int, size: int, kernel: int, stride: int, dtype, fast: bool) -> float:
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=False).to(dtype).to(memory_format=torch.channels_last)
    x = torch.randn(64, cin, size, size, dtype=dtype).contiguous(memory_format=torch.channels_last).requires_grad_()
    if fast:
        small_conv.speed_up(conv)
    grad = torch.randn_like(conv(x))

    def step():
        conv.weight.grad, x.grad = None, None
        conv(x).backward(grad)

    return median_ms(step)


def layer_rows(dtype) -> list[tuple[str, float, float]]:
    rows = []
    for cin, cout, size, kernel, stride in [(512, 512, 2, 3, 1), (256, 512, 4, 3, 2), (256, 512, 4, 1, 2)]:
        name = f"{cin}->{cout} {kernel}x{kernel}/{stride} on {size}x{size}, {str(dtype)[6:]}"
        rows.append((name, *(conv_ms(cin, cout, size, kernel, stride, dtype, fast) for fast in (False, True))))
    return rows


def step_ms(fast: bool, bf16: bool) -> float:
    import timm  # after engine (imported above), whose torchvision op guard timm's import needs

    torch.manual_seed(0)
    model = timm.create_model("resnet18", num_classes=10).to(memory_format=torch.channels_last)
    if fast:
        small_conv.speed_up(model)
    x = torch.randn(64, 3, 64, 64).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (64,))
    optimizer = torch.optim.AdamW(model.parameters(), fused=True)

    def step():
        with autocast(bf16, torch.device("cpu")) if bf16 else contextlib.nullcontext():
            loss = F.cross_entropy(model(x).float(), y)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return median_ms(step, repeats=10)


def main() -> None:
    bf16 = use_bf16(TrainConfig(), torch.device("cpu"))
    print(machine(bf16))
    print(f"{'forward+backward':<44}{'oneDNN ms':>11}{'matmul ms':>11}{'speed-up':>10}")
    for name, slow, fast in layer_rows(torch.bfloat16 if bf16 else torch.float32) + layer_rows(torch.float32):
        print(f"{name:<44}{slow:>11.1f}{fast:>11.1f}{slow / fast:>9.2f}x")
    slow, fast = step_ms(False, bf16), step_ms(True, bf16)
    print(f"{'resnet18 training step, 64 px, batch 64':<44}{slow:>11.1f}{fast:>11.1f}{slow / fast:>9.2f}x")


if __name__ == "__main__":
    main()
