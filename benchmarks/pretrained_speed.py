"""Fine-tuning and embedding speed of the built-in pretrained EfficientNet-Lite0 on a CPU, in one run.

    python benchmarks/pretrained_speed.py [--sizes 160 224] [--batch-size 32] [--steps 4]

Training: images/s of one fine-tuning step (forward, backward, AdamW) on the pretrained tf_efficientnet_lite0,
  - "plain fp32 loop": what most tutorials write (NCHW, fp32, model.train(), every layer trains);
  - each lever alone and together: channels_last, bf16 autocast (where the CPU has it), frozen BatchNorm statistics
    (`freeze_bn`), the first two layer groups frozen (stem and first block: the largest feature maps);
  - "Snapfit": the step `engine.train` runs with its defaults for this model (the levers it turns on itself);
  - resnet18 through the same Snapfit step, for scale.
Embedding (the frozen forward that a head on cached features and classifying pay): images/s in eager NCHW fp32,
channels_last fp32, Snapfit's own path, and ONNX Runtime on the same exported model.
Every arm sees the same random batch; the first step of each is a warm-up. Prints the CPU and whether bf16 was on;
ratios are against the plain fp32 loop measured in this same run.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from arms import machine  # noqa: E402

from engine import hub  # noqa: E402

hub.detect_offline()  # before timm is imported: offline, the built-in weights load at once instead of after retries
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from engine import models  # noqa: E402
from engine.train import TrainConfig, autocast, use_bf16  # noqa: E402

MODEL = "tf_efficientnet_lite0"


def step_speed(model_name: str, size: int, batch: int, steps: int, channels_last: bool, bf16: bool, freeze_bn: bool,
               frozen_groups: int = 0) -> float:
    """Images/s of fine-tuning steps with these levers (median of `steps` timed steps after one warm-up)."""
    torch.manual_seed(0)
    model, _ = models.create(model_name, 10, "pretrained" if model_name == MODEL else "scratch")
    groups = models.layer_groups(model)
    models.set_trainable(model, groups, frozen_groups)
    models.train_mode(model, freeze_bn)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    x, y = torch.randn(batch, 3, size, size), torch.randint(0, 10, (batch,))
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    times = []
    for _ in range(steps + 1):
        t = time.perf_counter()
        with autocast(bf16, torch.device("cpu")):
            loss = F.cross_entropy(model(x).float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        times.append(time.perf_counter() - t)
    return batch / sorted(times[1:])[len(times[1:]) // 2]


def snapfit_levers(model_name: str) -> dict:
    """The levers engine.train turns on by itself for this model with pretrained weights."""
    cfg = TrainConfig(model=model_name, weights="pretrained")
    model, _ = models.create(model_name, 10)
    bf16 = use_bf16(cfg, torch.device("cpu"))
    return dict(bf16=bf16, channels_last=models.prefers_channels_last(model, bf16), freeze_bn=cfg.resolved_freeze_bn())


def embed_speeds(size: int, batch: int, steps: int) -> dict:
    model, _ = models.create(MODEL, 10, "pretrained")
    model.eval()
    x = torch.randn(batch, 3, size, size)
    levers = snapfit_levers(MODEL)

    def timed(fn) -> float:
        fn()
        t = time.perf_counter()
        for _ in range(steps):
            fn()
        return batch * steps / (time.perf_counter() - t)

    def torch_arm(channels_last: bool, bf16: bool):
        m = model.to(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
        xi = x.contiguous(memory_format=torch.channels_last) if channels_last else x

        def run():
            with torch.no_grad(), autocast(bf16, torch.device("cpu")):
                m.forward_head(m.forward_features(xi), pre_logits=True)
        return timed(run)

    out = {"eager fp32 NCHW": torch_arm(False, False), "eager fp32 channels_last": torch_arm(True, False),
           "Snapfit (its defaults)": torch_arm(levers["channels_last"], levers["bf16"])}
    try:
        import onnxruntime as ort
    except ImportError:
        return out
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "m.onnx"
        m = model.to(memory_format=torch.contiguous_format)
        torch.onnx.export(m, (x[:1],), str(path), input_names=["x"], output_names=["y"], dynamic_axes={"x": {0: "b"}},
                          dynamo=False)
        options = ort.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        xs = x.numpy()
        out["ONNX Runtime fp32"] = timed(lambda: session.run(None, {"x": xs}))
    return out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--sizes", type=int, nargs="+", default=[160, 224])
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--steps", type=int, default=4)
    args = p.parse_args()
    levers = snapfit_levers(MODEL)
    bf16_ok = use_bf16(TrainConfig(), torch.device("cpu"))
    print(machine(bf16_ok))
    print(f"{MODEL} pretrained, batch {args.batch_size}; Snapfit's levers here: {levers}")
    for size in args.sizes:
        arms = [
            ("plain fp32 loop (NCHW, BatchNorm trains)", MODEL, dict(channels_last=False, bf16=False, freeze_bn=False)),
            ("+ channels_last", MODEL, dict(channels_last=True, bf16=False, freeze_bn=False)),
            ("+ frozen BatchNorm statistics", MODEL, dict(channels_last=False, bf16=False, freeze_bn=True)),
            ("+ bf16 autocast", MODEL, dict(channels_last=False, bf16=True, freeze_bn=False)) if bf16_ok else None,
            ("channels_last + bf16 + frozen BN", MODEL, dict(channels_last=True, bf16=True, freeze_bn=True)) if bf16_ok else None,
            ("Snapfit (its defaults)", MODEL, levers),
            ("Snapfit + first 2 groups frozen", MODEL, dict(levers, frozen_groups=2)),
            ("resnet18, Snapfit's step", "resnet18", snapfit_levers("resnet18")),
        ]
        print(f"\n{size} px fine-tuning step{'':<22}images/s   vs plain fp32")
        base = None
        for name, model_name, kw in [a for a in arms if a]:
            speed = step_speed(model_name, size, args.batch_size, args.steps, **kw)
            base = base or speed
            print(f"  {name:<44}{speed:>8.1f}   {speed / base:>5.2f}x", flush=True)
    print("\n224 px frozen forward (embedding)        images/s   vs eager fp32 NCHW")
    speeds = embed_speeds(224, args.batch_size, args.steps)
    base = speeds["eager fp32 NCHW"]
    for name, speed in speeds.items():
        print(f"  {name:<38}{speed:>8.1f}   {speed / base:>5.2f}x")


if __name__ == "__main__":
    main()
