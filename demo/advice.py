"""Before a run: what the Train tab says it will train on, and when the data and settings predict a poor result.

The rules come from what was measured (README, "Measured"; benchmarks/): from random weights a ResNet needs
hundreds of images per class to beat ImageNet features, which work from a handful; ImageNet features are weak on
tiny inputs; and a network fine-tuned on few images without augmentation learns them by heart.
"""
from __future__ import annotations

from demo import data_report
from engine import data as data_lib

SCRATCH_MIN_PER_CLASS = 100  # below this many images in a class, random weights do poorly on photos
TINY_CLASS = 5  # a class with fewer images can hardly be learned, nor judged on validation
PRETRAINED_MIN_SIZE = 96  # px: ImageNet features fade below this (the built-in Lite models were trained at 224)
AUGMENT_BELOW_PER_CLASS = 50  # fine-tuning the whole network on fewer images per class: augment


def training_on(dataset: data_lib.LabelledImages) -> str:
    """One line naming the dataset a run will use."""
    return f"Trains on {data_report.headline(dataset)} (chosen on the **Data** tab)."


def poor_run_warnings(dataset: data_lib.LabelledImages, weights: str, strategy: str, img_size, augment: str,
                      builtin_better: str) -> list[str]:
    """Why a run with these settings on this dataset is likely to disappoint, each with the better choice."""
    counts = dataset.counts()
    if not counts:
        return []
    smallest = min(counts.values())
    found = []
    tiny = [name for name, n in counts.items() if n < TINY_CLASS]
    if tiny:
        found.append(f"{data_lib.listed(tiny)} {'has' if len(tiny) == 1 else 'have'} fewer than {TINY_CLASS} images: "
                     "add 10-20 per class, or expect guesses for them.")
    if weights == "scratch" and smallest < SCRATCH_MIN_PER_CLASS:
        found.append(f"From random weights ({smallest} images in the smallest class) a model learns little: choose "
                     f"Weights *pretrained* with {builtin_better}, whose ImageNet features work from a few images.")
    if weights != "scratch" and isinstance(img_size, int | float) and img_size < PRETRAINED_MIN_SIZE:
        found.append(f"At {int(img_size)} px, ImageNet features see little: use {PRETRAINED_MIN_SIZE} px or more "
                     "(224, as the quick and best recipes do).")
    if strategy != "head" and augment == "none" and smallest < AUGMENT_BELOW_PER_CLASS:
        found.append(f"Training the whole network on {smallest} images per class without augmentation tends to learn "
                     "them by heart: set Augmentation to *light* (Advanced), or train the head only.")
    return found
