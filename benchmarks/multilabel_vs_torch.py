"""Multi-label: Snapfit's training beside a plain PyTorch BCE loop, on the same images, split, model and epochs.

    python benchmarks/multilabel_vs_torch.py [--epochs 8] [--img-size 64] [--images 900]

The data is the built-in multi-label set (`builtin:shapes-multi`: one to three shapes per picture, labelled with
the shapes it holds), held out once by Snapfit's own holdout; both arms train the same timm model from scratch and
are scored by the same mAP (engine/multilabel.py) on the same validation images. The plain loop is what one
writes by hand: a torch Dataset that turns each PIL image into a normalised tensor (torchvision transforms), a
DataLoader, AdamW at a constant LR, BCEWithLogitsLoss. Snapfit gets `engine.train.fit` with the `scratch`
recipe. Each arm runs in its own process, one after the other, each seed in turn; the clock starts once the
libraries are imported and stops when the trained model has been scored.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from arms import alternate, machine  # noqa: E402

import engine  # noqa: E402,F401  (first: its torchvision op guard must run before timm imports torchvision)

MODEL = "resnet10t"


def the_data(n_images: int, seed: int):
    """The built-in multi-label set and Snapfit's holdout of it: (data, train indices, validation indices)."""
    from engine import data, labelled

    dataset = data.load_builtin_multi(n_images=n_images)  # one fixed set; the seed varies the split and the runs
    train_idx, val_idx = labelled.holdout(dataset, 0.2, seed)
    return dataset, train_idx, val_idx


def run_torch(n_images: int, epochs: int, size: int, batch_size: int, seed: int, lr: float) -> dict:
    import timm
    import torch
    from torchvision import transforms

    from engine.multilabel import mean_average_precision

    torch.manual_seed(seed)
    t0 = time.perf_counter()
    dataset, train_idx, val_idx = the_data(n_images, seed)
    targets = torch.from_numpy(dataset.multi_hot())
    to_tensor = transforms.Compose([transforms.Resize(size), transforms.CenterCrop(size), transforms.ToTensor(),
                                    transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])

    class Images(torch.utils.data.Dataset):
        def __init__(self, indices):
            self.indices = indices

        def __len__(self):
            return len(self.indices)

        def __getitem__(self, k):
            i = self.indices[k]
            return to_tensor(dataset.images[i].convert("RGB")), targets[i]

    train = torch.utils.data.DataLoader(Images(train_idx), batch_size=batch_size, shuffle=True)
    val = torch.utils.data.DataLoader(Images(val_idx), batch_size=256)
    model = timm.create_model(MODEL, pretrained=False, num_classes=len(dataset.class_names))
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    for _ in range(epochs):
        model.train()
        for x, y in train:
            loss = loss_fn(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    model.eval()
    with torch.no_grad():
        scores = torch.cat([model(x).sigmoid() for x, _ in val])
    mAP = mean_average_precision(scores, targets[val_idx])
    return dict(arm=f"plain PyTorch (AdamW {lr:g})", map=mAP, seconds=time.perf_counter() - t0)


def run_snapfit(n_images: int, epochs: int, size: int, batch_size: int, seed: int) -> dict:
    import tempfile

    from engine.config import recipe
    from engine.train import fit

    t0 = time.perf_counter()
    dataset, _, _ = the_data(n_images, seed)
    cfg = recipe("scratch", model=MODEL, epochs=epochs, img_size=size, batch_size=batch_size, seed=seed)
    with tempfile.TemporaryDirectory() as out:
        events = list(fit(dataset, cfg, out))
        metrics = json.loads((Path(out) / "metrics.json").read_text())
    assert events[-1].__class__.__name__ == "Finished"
    return dict(arm="snapfit fit (scratch)", map=metrics["val_map"], seconds=time.perf_counter() - t0)


def baseline_map(n_images: int, seed: int) -> float:
    """The mAP of a model that knows only how common each label is (every image scored alike)."""
    import torch

    from engine.multilabel import mean_average_precision

    dataset, _, val_idx = the_data(n_images, seed)
    targets = torch.from_numpy(dataset.multi_hot(val_idx))
    return mean_average_precision(torch.zeros_like(targets), targets)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--images", type=int, default=900)
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--img-size", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3, help="the plain loop's constant learning rate")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--arm", choices=["torch", "snapfit"], help=argparse.SUPPRESS)  # internal: one arm in this process
    args = p.parse_args()
    common = (args.images, args.epochs, args.img_size, args.batch_size, args.seeds[0])
    if args.arm:
        print(json.dumps(run_torch(*common, args.lr) if args.arm == "torch" else run_snapfit(*common)))
        return
    import torch

    print(machine())
    print(f"builtin:shapes-multi, {args.images} images: {MODEL} from scratch, {args.img_size} px, {args.epochs} epochs, "
          f"batch {args.batch_size}, {torch.get_num_threads()} threads")
    print(f"{'arm':<30}{'seed':>5}{'val mAP':>9}{'seconds':>10}")
    mean = alternate(__file__, ["torch", "snapfit"], args.seeds,
                     ["--images", str(args.images), "--epochs", str(args.epochs), "--img-size", str(args.img_size),
                      "--batch-size", str(args.batch_size), "--lr", str(args.lr)], "map", ">9.3f", 30,
                     before_seed=lambda seed: print(f"{'label frequency only':<30}{seed:>5}"
                                                    f"{baseline_map(args.images, seed):>9.3f}"))
    print(f"time ratio snapfit/plain: {mean['snapfit']['seconds'] / mean['torch']['seconds']:.2f}; "
          f"mAP difference: {mean['snapfit']['map'] - mean['torch']['map']:+.3f}")


if __name__ == "__main__":
    main()
