"""Predictor: class probabilities for new images from a model folder, with optional test-time augmentation
(the image and its mirror image, averaged) and a Grad-CAM heatmap for CNNs."""
from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from engine import data as data_lib
from engine.errors import UserError
from engine.export import load_model_folder
from engine.models import has_depthwise


class Predictor:
    """Loads a model folder once; `predict()` returns the top-k classes with probabilities."""

    def __init__(self, model: torch.nn.Module, class_names: list[str], img_size: int, mean, std) -> None:
        # channels_last: depthwise nets (the built-in EfficientNet-Lites) run their frozen forward 1.7x faster on a CPU
        # in fp32 (benchmarks/pretrained_speed.py); a ResNet gains nothing there
        channels_last = has_depthwise(model)
        self.model = model.eval().to(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
        self.class_names = list(class_names)
        self.img_size = img_size
        self.normalize = data_lib.Normalizer(mean, std, channels_last)

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
    def probabilities(self, images: list, tta: bool = False) -> torch.Tensor:
        x = self.normalize(torch.stack([self.tensor(im) for im in images]))
        probs = self.model(x).float().softmax(1)
        if tta:  # flip TTA: average with the mirror image (the light/standard augmentations flip too)
            probs = (probs + self.model(x.flip(3)).float().softmax(1)) / 2
        return probs

    def predict(self, images: list, top_k: int = 5, tta: bool = False) -> list[dict[str, float]]:
        """One {class: probability} dict per image, highest first, at most top_k entries."""
        probs = self.probabilities(images, tta)
        k = max(1, min(int(top_k), len(self.class_names)))
        values, indices = probs.topk(k, dim=1)
        return [
            {self.class_names[i]: float(v) for v, i in zip(vs.tolist(), ix.tolist())} for vs, ix in zip(values, indices)
        ]

    def gradcam(self, image, class_name: str | None = None) -> tuple[Image.Image | None, str]:
        """Grad-CAM (Selvaraju et al.) for the predicted class, or `class_name`: the last feature map weighted
        by its mean gradient, overlaid on the image. Returns (overlay, caption); (None, reason) for models whose
        features are not a spatial map (Vision Transformers)."""
        decoded = self.tensor(image)  # uint8 (3, S, S): the model's input and the overlay's background
        x = self.normalize(decoded[None])
        with torch.enable_grad():
            feats = self.model.forward_features(x)
            if feats.ndim != 4:
                return None, "Grad-CAM is not available for this model (its features are tokens, not a spatial map)."
            logits = self.model.forward_head(feats)
            index = self.class_names.index(class_name) if class_name else int(logits.argmax(1))
            (grads,) = torch.autograd.grad(logits[0, index], feats)
        cam = (grads.mean((2, 3), keepdim=True) * feats).sum(1, keepdim=True).relu().detach()
        cam = F.interpolate(cam, size=(self.img_size, self.img_size), mode="bilinear", align_corners=False)[0, 0]
        cam = (cam / cam.max()).numpy() if cam.max() > 0 else cam.numpy()
        heat = (matplotlib.colormaps["jet"](cam)[..., :3] * 255).astype(np.uint8)
        base = decoded.permute(1, 2, 0).numpy()
        overlay = (0.55 * base + 0.45 * heat).astype(np.uint8)
        return Image.fromarray(overlay), f"Where the model looked for '{self.class_names[index]}'"
