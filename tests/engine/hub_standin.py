"""Local stand-ins for Hub datasets (the Hub is unreachable in tests).

`make_repo` writes a folder laid out like a Hub dataset repo: parquet files in a folder per config, one per split,
with the Image and label features in their schema, and a README whose YAML declares the configs.
`seed_cache` makes `datasets.load_dataset_builder("owner/name")` find it offline (HF_HUB_OFFLINE=1): it
loads the repo once and files the result in the datasets cache under the repo id, the way a real download
would have left it (notes/ml-stack.md 5.4). Over HTTP, tests/hub_read_standin.py serves such a repo (or
answers 404 for one it does not have, as the Hub does for an unknown or private repo).
"""
from __future__ import annotations

import glob
import io
import os
import shutil
from pathlib import Path

import numpy as np
from PIL import Image


def png_bytes(seed: int, size: int = 16) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def make_split(labels: list, features, image_column: str = "img", label_column: str = "label", seed: int = 0, extra=None):
    from datasets import Dataset

    rows = {image_column: [{"bytes": png_bytes(seed * 10_000 + i), "path": f"{i}.png"} for i in range(len(labels))],
            label_column: labels, **(extra or {})}
    return Dataset.from_dict(rows, features=features)


def make_repo(root: Path, splits: dict, configs: dict | None = None) -> Path:
    """splits: {split name: Dataset}; or configs: {config name: {split name: Dataset}}."""
    configs = configs or {"default": splits}
    lines = ["---", "configs:"]
    for config, parts in configs.items():
        lines += [f"- config_name: {config}", "  data_files:"]
        for split, ds in parts.items():
            (root / config).mkdir(parents=True, exist_ok=True)
            ds.to_parquet(str(root / config / f"{split}-00000-of-00001.parquet"))
            lines += [f"  - split: {split}", f"    path: {config}/{split}-*.parquet"]
    (root / "README.md").write_text("\n".join(lines + ["---", "A test dataset."]) + "\n")
    return root


def seed_cache(repo: Path, repo_id: str, cache_dir: Path, config: str = "default") -> None:
    """File the decoded dataset of `repo` in `cache_dir` under `repo_id`, as a real download would."""
    import datasets

    work = cache_dir / "_work"
    datasets.load_dataset_builder(str(repo), name=config, cache_dir=str(work)).download_and_prepare()
    decoded = glob.glob(str(work / repo.name / config / "*" / "*"))
    decoded = [p for p in decoded if os.path.isdir(p)][0]
    version, digest = Path(decoded).parent.name, Path(decoded).name
    dest = cache_dir / repo_id.replace("/", "___") / config / version / digest
    shutil.copytree(decoded, dest)
    for f in dest.glob(f"{repo.name}-*.arrow"):  # arrow files are named after the dataset, not the folder
        f.rename(f.with_name(f.name.replace(f"{repo.name}-", f"{repo_id.split('/')[1]}-", 1)))
    shutil.rmtree(work)
