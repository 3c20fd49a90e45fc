"""How close a training step comes to what this CPU can do, and which memory format wins here.

    python benchmarks/cpu_bound.py [--repeats 8]

Prints the CPU, the instruction set PyTorch dispatches to (`torch.backends.cpu.get_cpu_capability()`) and whether
bf16 is supported; the practical peak (GFLOP/s of a 2048x2048 fp32 matmul, and bf16 where supported); then, for
the steps of the default recipes, FLOPs per step (the forward counted by torch's FlopCounterMode; a training step
counted as 3x its forward, the usual estimate: its counter misreads depthwise backward passes), milliseconds per
step and achieved GFLOP/s as a share of that peak, in fp32 NCHW, fp32 channels_last and, where supported, bf16
channels_last; "<- engine" marks what `engine.train.Learner` picks on this CPU (every arm takes the engine's
small-map path). The ratio column is each arm against fp32 NCHW in the same run. Arms alternate; medians.
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from arms import machine, median_seconds  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

import engine  # noqa: E402,F401  (first: its torchvision op guard must run before timm imports torchvision)
from engine import models, small_conv  # noqa: E402
from engine.train import TrainConfig, autocast, use_bf16  # noqa: E402

# (what it is, model, px, batch, trains the backbone): the from-scratch comparison with fastai, the scratch recipe,
# and one fine-tuning step and one embedding pass of the pretrained default's backbone
STEPS = [("vs_fastai run: resnet18 from scratch", "resnet18", 64, 64, True),
         ("scratch recipe: resnet10t", "resnet10t", 48, 64, True),
         ("best recipe: Lite0 fine-tune", "tf_efficientnet_lite0", 224, 32, True),
         ("quick recipe: Lite0 embedding", "tf_efficientnet_lite0", 224, 32, False)]


def peak_gflops(dtype: torch.dtype, repeats: int) -> float:
    a, b = torch.randn(2048, 2048, dtype=dtype), torch.randn(2048, 2048, dtype=dtype)
    return 2 * 2048 ** 3 / median_seconds(lambda: a @ b, repeats) / 1e9


def step_fn(model_name: str, px: int, batch: int, train: bool, bf16: bool, channels_last: bool, fast_small_maps: bool):
    import timm

    torch.manual_seed(0)
    model = timm.create_model(model_name, num_classes=10)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    if fast_small_maps:
        small_conv.speed_up(model)
    x = torch.randn(batch, 3, px, px).contiguous(memory_format=fmt)
    y = torch.randint(0, 10, (batch,))
    optimizer = torch.optim.AdamW(model.parameters(), fused=True)

    def step():
        with autocast(bf16, torch.device("cpu")):
            if not train:
                with torch.no_grad():
                    return model.eval().forward_head(model.forward_features(x), pre_logits=True)
            loss = F.cross_entropy(model(x).float(), y)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return model, step


def flops_of(model_name: str, px: int, batch: int, train: bool) -> float:
    import timm

    model = timm.create_model(model_name, num_classes=10).eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.randn(batch, 3, px, px))
    return counter.get_total_flops() * (3 if train else 1)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--repeats", type=int, default=8)
    args = p.parse_args()
    bf16 = use_bf16(TrainConfig(), torch.device("cpu"))
    print(machine(bf16))
    peak = peak_gflops(torch.float32, args.repeats)
    print(f"practical peak: 2048x2048 matmul {peak:.0f} GFLOP/s fp32"
          + (f", {peak_gflops(torch.bfloat16, args.repeats):.0f} GFLOP/s bf16" if bf16 else ""))
    print(f"{'step':<40}{'arm':<34}{'GFLOP':>7}{'ms':>8}{'GFLOP/s':>9}{'of peak':>9}{'ratio':>7}")
    for label, name, px, batch, train in STEPS:
        probe, _ = step_fn(name, px, batch, train, False, False, False)
        engine_arm = ("bf16" if bf16 else "fp32", models.prefers_channels_last(probe, bf16))
        arms = {("fp32", False): "fp32 NCHW", ("fp32", True): "fp32 channels_last"}
        if bf16:
            arms[("bf16", True)] = "bf16 channels_last"
        steps = {key: step_fn(name, px, batch, train, key[0] == "bf16", key[1], True)[1] for key in arms}
        flops = flops_of(name, px, batch, train) / 1e9
        times = {key: [] for key in arms}
        for _ in range(args.repeats):  # alternate, so a slow spell of the machine hits every arm
            for key, step in steps.items():
                times[key].append(median_seconds(step, 1))
        base = statistics.median(times[("fp32", False)])
        for key, ts in times.items():
            s = statistics.median(ts)
            arm = arms[key] + ("  <- engine" if key == engine_arm else "")
            print(f"{label:<40}{arm:<34}{flops:>7.1f}{s * 1000:>8.0f}{flops / s:>9.0f}{flops / s / peak:>8.0%}"
                  f"{base / s:>6.2f}x", flush=True)
            label = ""


if __name__ == "__main__":
    main()
