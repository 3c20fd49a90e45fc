"""Predictor: class probabilities for new images from a model folder."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from engine import data as data_lib
from engine.errors import UserError
from engine.export import load_model_folder


class Predictor:
    """Loads a model folder once; `predict()` returns the top-k classes with probabilities."""

    def __init__(self, model: torch.nn.Module, class_names: list[str], img_size: int, mean, std) -> None:
        self.model = model.eval()
        self.class_names = list(class_names)
        self.img_size = img_size
        self.normalize = data_lib.Normalizer(mean, std)

    @classmethod
    def from_folder(cls, model_dir: str | Path) -> Predictor:
        model, config = load_model_folder(model_dir)
        cfg = config.get("pretrained_cfg", {})
        names = config.get("label_names") or [str(i) for i in range(config["num_classes"])]
        return cls(model, names, int(cfg.get("input_size", (3, 224, 224))[-1]), cfg.get("mean"), cfg.get("std"))

    def tensor(self, image) -> torch.Tensor:
        """Any image (path, PIL, HxWx3/4 uint8 array) -> uint8 (3, S, S), converted the way training saw images."""
        if isinstance(image, np.ndarray):
            if image.ndim not in (2, 3) or image.size == 0:
                raise UserError("That does not look like an image.")
            image = Image.fromarray(image.astype(np.uint8))
        try:
            arr = data_lib.to_square(image, self.img_size)
        except (OSError, SyntaxError, Image.DecompressionBombError) as exc:
            raise UserError(f"Could not read that image ({exc.__class__.__name__}): upload a PNG, JPEG or WebP file.") from exc
        return torch.from_numpy(arr).permute(2, 0, 1)

    @torch.no_grad()
    def probabilities(self, images: list) -> torch.Tensor:
        x = torch.stack([self.tensor(im) for im in images])
        return self.model(self.normalize(x)).float().softmax(1)

    def predict(self, images: list, top_k: int = 5) -> list[dict[str, float]]:
        """One {class: probability} dict per image, highest first, at most top_k entries."""
        probs = self.probabilities(images)
        k = max(1, min(int(top_k), len(self.class_names)))
        values, indices = probs.topk(k, dim=1)
        return [
            {self.class_names[i]: float(v) for v, i in zip(vs.tolist(), ix.tolist())} for vs, ix in zip(values, indices)
        ]
