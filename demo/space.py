"""Where the app runs, and the limits that follow: a laptop, a free CPU Space, or a ZeroGPU Space.

A Hugging Face Space sets `SYSTEM=spaces` and `SPACE_ID=owner/name`; a ZeroGPU Space also sets
`SPACES_ZERO_GPU`. A free CPU Space has 2 vCPUs and 16 GB shared by every visitor, and its disk is wiped on
restart, so there the app starts from a recipe that finishes in minutes and caps what one visitor may ask for.
Locally nothing is capped beyond the engine's own checks.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

from engine.errors import UserError
from engine.train import TrainConfig

_TRUE = {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class Limits:
    max_epochs: int = 50  # epochs of a head on cached features: milliseconds each once the images are embedded
    max_img_size: int = 384
    max_batch_size: int = 256
    max_images: int | None = None  # images a dataset may hold (None: no cap)
    max_network_epochs: int | None = None  # epochs through the whole network, which cost minutes (None: max_epochs)

    def epochs_cap(self, strategy: str) -> int:
        """The most epochs a run of this strategy may ask for here."""
        if strategy == "head" or self.max_network_epochs is None:
            return self.max_epochs
        return min(self.max_epochs, self.max_network_epochs)

    def check(self, cfg: TrainConfig, where: str) -> TrainConfig:
        """Refuse settings beyond the caps with a message naming the cap and what to do instead."""
        epochs_what = "epochs" if cfg.resolved_strategy() == "head" else "epochs through the whole network"
        for value, cap, what in [(cfg.epochs, self.epochs_cap(cfg.resolved_strategy()), epochs_what),
                                 (cfg.freeze_epochs, self.max_epochs, "frozen epochs"),
                                 (cfg.img_size, self.max_img_size, "image size"),
                                 (cfg.batch_size, self.max_batch_size, "batch size")]:
            if value > cap:
                raise UserError(f"{where} allows at most {cap} for {what} (got {value}): lower it, or run Snapfit "
                                "on your own machine (`python -m engine train`) for bigger runs.")
        return cfg

    def check_dataset(self, num_images: int, where: str) -> None:
        if self.max_images is not None and num_images > self.max_images:
            raise UserError(f"{where} takes at most {self.max_images:,} images per dataset (this one has {num_images:,}): "
                            "lower 'At most this many images per class' for a Hub dataset, upload fewer images, or run "
                            "Snapfit on your own machine.")


@dataclass(frozen=True)
class Place:
    """Where the app runs."""

    space_id: str | None = None  # owner/name on a Space
    zero_gpu: bool = False

    @property
    def on_space(self) -> bool:
        return self.space_id is not None

    @property
    def name(self) -> str:
        if not self.on_space:
            return "This machine"
        return f"This {'ZeroGPU ' if self.zero_gpu else ''}Space ({self.space_id})"

    @property
    def limits(self) -> Limits:
        if not self.on_space:
            return Limits()
        if self.zero_gpu:  # a GPU for each chunk of work, but a daily quota per visitor
            return Limits(max_epochs=30, max_img_size=224, max_batch_size=256, max_images=20_000)
        # 224 px: the built-in EfficientNet-Lite's features are far better there than at 160 (README, "Measured"), and a
        # head on cached features costs one forward pass per image; whole-network epochs stay few
        return Limits(max_epochs=30, max_img_size=224, max_batch_size=128, max_images=3_000, max_network_epochs=10)

    def check(self, cfg: TrainConfig) -> TrainConfig:
        """cfg, if within this place's caps (a UserError naming the cap otherwise)."""
        return self.limits.check(cfg, self.name)

    def check_dataset(self, num_images: int) -> None:
        self.limits.check_dataset(num_images, self.name)

    def storage_note(self) -> str:
        """What a visitor must know about where their model lives (shown in the Train and Export tabs)."""
        if not self.on_space:
            return ""
        caps = self.limits
        return (f"**Running on a Hugging Face Space ({self.space_id}).** Your model is saved in this Space's temporary "
                "storage, which is wiped whenever the Space restarts or sleeps: download it as a .zip or push it to the "
                "Hub (Export tab) to keep it. To share the machine fairly, runs are capped at "
                f"{caps.epochs_cap('full')} epochs through the whole network, "
                f"{caps.max_img_size} px and {caps.max_images} images.")


def detect(environ=None) -> Place:
    env = os.environ if environ is None else environ
    space_id = env.get("SPACE_ID") or ("space" if env.get("SYSTEM") == "spaces" else None)
    return Place(space_id, zero_gpu=str(env.get("SPACES_ZERO_GPU", "")).lower() in _TRUE)
