"""`sam-refine`: SAM's automatic masks of the picture vote on a CAM pseudo-label.

Each mask takes the class the CAM pseudo-label (a classic generator, `--base`) votes for
most inside it, smaller masks painted over larger ones; pixels no mask covers, and masks
whose pixels are all ignore, keep the CAM label.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from wsssbed.datasets.local import LocalDataset
from wsssbed.datasets.spec import DatasetSpec
from wsssbed.eval.rules import Rule
from wsssbed.eval.sample import EvalSample
from wsssbed.generators.base import ClassicGenerator
from wsssbed.models.options import SamOptions
from wsssbed.models.sam_masks import automatic_masks


def refine_with_masks(labels: np.ndarray, masks: list[np.ndarray], num_classes: int) -> np.ndarray:
    """SAM refinement of a pseudo-label (the `sam-refine` rule).

    Args:
        labels: (H, W) uint8 CAM pseudo-label, 255 = ignore.
        masks: (H, W) bool masks, painted in order (largest first, so smaller win).
        num_classes: classes of the dataset; votes go to ids below it (ignore never wins).

    Returns:
        (H, W) uint8: each mask's pixels take the most frequent class of `labels` inside
        it (lowest id on a tie); masks with no labelled pixel, and uncovered pixels, keep
        `labels`.
    """
    refined = labels.copy()
    for mask in masks:
        votes = np.bincount(labels[mask], minlength=256)[:num_classes]
        if votes.any():
            refined[mask] = int(np.argmax(votes))
    return refined


@dataclass
class SamRefineGenerator:
    """`sam-refine` (see the module docstring)."""

    base: ClassicGenerator
    sam: SamOptions
    name = "sam-refine"
    output = "labels"
    needs_image = True

    def __post_init__(self) -> None:
        self.model = self.sam.slot()

    @property
    def rule(self) -> Rule:
        return self.base.rule

    def params(self) -> dict:
        return {
            "base": self.base.name,
            **self.base.params(),
            **self.model.recipe,
            **self.sam.mask_params(),
        }

    def prepare(self, dataset: LocalDataset, device: torch.device) -> None:
        self.model.get(device)

    def produce(self, sample: EvalSample, spec: DatasetSpec) -> np.ndarray:
        labels = self.base.produce(sample, spec)
        sam = self.model.get(sample.gt.device)
        masks = automatic_masks(sam, sample.image.cpu().numpy(), self.sam.masks)
        return refine_with_masks(labels, [m for m, _ in masks], spec.num_classes)
