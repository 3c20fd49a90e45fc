"""Predictor: class probabilities for new images from a model folder, with optional test-time augmentation
(the image and its mirror image, averaged) and a Grad-CAM heatmap for CNNs, shown over the image at its own size.

A multi-label model (config.json's multi_label) gives each label its own sigmoid probability; the labels an image
gets are those at or above their threshold (config.json's thresholds, chosen on validation)."""
from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from engine import data as data_lib
from engine import images
from engine.errors import UserError
from engine.export import decision_rule, load_model_folder
from engine.models import has_depthwise
from engine.multilabel import decide

CAM_SIDE = 512  # the longest side of a Grad-CAM overlay: the image's own size up to this


class Predictor:
    """Loads a model folder once; `predict()` returns the top-k classes with probabilities (every label, for a
    multi-label model), `predict_labels()` a multi-label model's labels above and below their thresholds."""

    def __init__(self, model: torch.nn.Module, class_names: list[str], img_size: int, mean, std,
                 multi_label: bool = False, thresholds: list[float] | None = None) -> None:
        # channels_last: depthwise nets (the built-in EfficientNet-Lites) run their frozen forward 1.7x faster on a CPU
        # in fp32 (benchmarks/pretrained_speed.py); a ResNet gains nothing there
        channels_last = has_depthwise(model)
        self.model = model.eval().to(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
        self.class_names = list(class_names)
        self.img_size = img_size
        self.normalize = data_lib.Normalizer(mean, std, channels_last)
        self.multi_label = multi_label
        self.thresholds = list(thresholds) if thresholds is not None else None
        if multi_label and (self.thresholds is None or len(self.thresholds) != len(self.class_names)):
            raise ValueError("a multi-label Predictor needs one threshold per label")

    @classmethod
    def from_folder(cls, model_dir: str | Path) -> Predictor:
        model, config = load_model_folder(model_dir)
        cfg = config.get("pretrained_cfg", {})
        names = config.get("label_names") or [str(i) for i in range(config["num_classes"])]
        multi_label, thresholds = decision_rule(config)
        return cls(model, names, int(cfg.get("input_size", (3, 224, 224))[-1]), cfg.get("mean"), cfg.get("std"),
                   multi_label, thresholds)

    def tensor(self, image) -> torch.Tensor:
        """Any image (path, PIL, HxWx3/4 uint8 array) -> uint8 (3, S, S), converted the way training saw images."""
        try:
            arr = data_lib.to_square(as_image(image), self.img_size)
        except (OSError, SyntaxError, Image.DecompressionBombError) as exc:
            raise UserError(f"Could not read that image ({exc.__class__.__name__}): upload a PNG, JPEG or WebP file.") from exc
        return torch.from_numpy(arr).permute(2, 0, 1)

    def _to_probs(self, logits: torch.Tensor) -> torch.Tensor:
        return logits.float().sigmoid() if self.multi_label else logits.float().softmax(1)

    @torch.no_grad()
    def probabilities(self, images: list, tta: bool = False) -> torch.Tensor:
        """N x classes: softmax probabilities, or for a multi-label model each label's sigmoid."""
        x = self.normalize(torch.stack([self.tensor(im) for im in images]))
        probs = self._to_probs(self.model(x))
        if tta:  # flip TTA: average with the mirror image (the light/standard augmentations flip too)
            probs = (probs + self._to_probs(self.model(x.flip(3)))) / 2
        return probs

    def predict(self, images: list, top_k: int = 5, tta: bool = False) -> list[dict[str, float]]:
        """One {class: probability} dict per image, highest first, at most top_k entries (a multi-label model: every
        label, as each has its own probability; predict_labels says which the image gets)."""
        probs = self.probabilities(images, tta)
        k = len(self.class_names) if self.multi_label else max(1, min(int(top_k), len(self.class_names)))
        values, indices = probs.topk(k, dim=1)
        return [
            {self.class_names[i]: float(v) for v, i in zip(vs.tolist(), ix.tolist())} for vs, ix in zip(values, indices)
        ]

    def predict_labels(self, images: list, tta: bool = False) -> list[dict[str, dict[str, float]]]:
        """A multi-label model's answer per image: dict(above={label: probability}, below={...}), each highest
        first; `above` holds the labels at or above their threshold (possibly none, possibly several)."""
        if not self.multi_label:
            raise UserError("This model gives one class per image, not several labels: use predict().")
        probs = self.probabilities(images, tta)
        out = []
        for row, chosen in zip(probs, decide(probs, self.thresholds)):
            order = row.argsort(descending=True, stable=True).tolist()
            out.append({side: {self.class_names[i]: float(row[i]) for i in order if bool(chosen[i]) == wanted}
                        for side, wanted in (("above", True), ("below", False))})
        return out

    def gradcam(self, image, class_name: str | None = None, max_side: int = CAM_SIDE) -> tuple[Image.Image | None, str]:
        """Grad-CAM (Selvaraju et al.) for the predicted class (multi-label: the most probable label), or
        `class_name`, overlaid on the image at its own size (longest side at most max_side): see `heat_map` and
        `overlay`. Returns (overlay, caption); (None, reason) for models whose features are not a spatial map
        (Vision Transformers)."""
        image = as_image(image)
        cam, index = self.heat_map(image, class_name)
        if cam is None:
            return None, "Grad-CAM is not available for this model (its features are tokens, not a spatial map)."
        return overlay(image, cam, max_side), f"Where the model looked for '{self.class_names[index]}'"

    def heat_map(self, image, class_name: str | None = None) -> tuple[torch.Tensor | None, int]:
        """Grad-CAM on the model's input (the image's centre square at the model's size): the last feature map
        weighted by its mean gradient for the class, at the feature map's own resolution, in [0, 1]. Returns (map,
        class index); the map is None when the features are tokens, not a spatial map."""
        x = self.normalize(self.tensor(image)[None])
        with torch.enable_grad():
            feats = self.model.forward_features(x)
            if feats.ndim != 4:
                return None, -1
            logits = self.model.forward_head(feats)
            index = self.class_names.index(class_name) if class_name else int(logits.argmax(1))
            (grads,) = torch.autograd.grad(logits[0, index], feats)
        cam = (grads.mean((2, 3), keepdim=True) * feats).sum(1).relu().detach()[0].float()
        return (cam / cam.max() if cam.max() > 0 else cam), index


def as_image(image) -> Image.Image | str | Path:
    """A path or PIL image as it is; an H x W (x 3/4) array as a PIL image."""
    if isinstance(image, np.ndarray):
        if image.ndim not in (2, 3) or image.size == 0:
            raise UserError("That does not look like an image.")
        return Image.fromarray(image.astype(np.uint8))
    return image


def overlay(image, cam: torch.Tensor, max_side: int = CAM_SIDE) -> Image.Image:
    """A heat map (values in [0, 1], any resolution) over the image shown at its own size (longest side at most
    max_side). The map covers the centre square the model saw (data.to_square crops it); the rest stays plain."""
    base = np.asarray(images.for_display(as_image(image), max_side), dtype=np.float32)
    h, w = base.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    # bilinear up from the feature map's few cells: a smooth map at the picture's own resolution
    cam = F.interpolate(cam[None, None], size=(side, side), mode="bilinear", align_corners=False)[0, 0].clamp(0, 1)
    heat = matplotlib.colormaps["jet"](cam.numpy())[..., :3] * 255
    square = base[top:top + side, left:left + side]
    base[top:top + side, left:left + side] = 0.55 * square + 0.45 * heat
    return Image.fromarray(base.round().astype(np.uint8))
