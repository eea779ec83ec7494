"""`sam-clip` saliency: SAM's automatic masks, each weighted by how much CLIP sees an
object in it.

For each mask, the masked crop (pixels outside the mask set to the crop's mean colour)
is classified by CLIP over the dataset's foreground class prompts and a few stuff
prompts (`STUFF_NAMES`); the mask's objectness is the total probability of the
foreground classes. A pixel's saliency is the largest objectness of the masks covering
it (0 where none does), stored as round(255 x objectness). It needs no image-level
labels, so it pairs with every activation method like a salient-object detector.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from wsssbed.datasets.local import LocalDataset
from wsssbed.datasets.spec import DatasetSpec
from wsssbed.eval.rules import PictureOnly
from wsssbed.eval.sample import EvalSample
from wsssbed.models.clip import ClipModel
from wsssbed.models.options import ClipOptions, SamOptions
from wsssbed.models.sam_masks import automatic_masks

#: Prompts for what is not an object: the background's competitors in the softmax.
STUFF_NAMES = ("sky", "ground", "grass", "water", "road", "wall", "floor", "tree", "building")


def masked_crop(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The mask's bounding box of `image` (h, w, 3), pixels outside the mask set to the
    crop's mean colour inside the mask."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    window = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
    crop = image[window].copy()
    inside = mask[window]
    crop[~inside] = crop[inside].mean(axis=0).astype(np.uint8)
    return crop


def saliency_from_masks(masks: list[np.ndarray], objectness: np.ndarray, shape) -> np.ndarray:
    """(H, W) uint8: the largest objectness of the masks covering each pixel, x255."""
    best = np.zeros(shape, dtype=np.float32)
    for mask, score in zip(masks, objectness.tolist()):
        np.maximum(best, np.where(mask, np.float32(score), np.float32(0)), out=best)
    return np.rint(np.clip(best, 0, 1) * 255).astype(np.uint8)


@dataclass
class SamClipSaliency:
    """`sam-clip` (see the module docstring)."""

    sam: SamOptions
    clip: ClipOptions
    name = "sam-clip"
    output = "saliency"
    needs_image = True

    def __post_init__(self) -> None:
        self.sam_model = self.sam.slot()
        self.clip_model = self.clip.slot()
        self.rule = PictureOnly("sam-clip", ())

    def params(self) -> dict:
        return {
            **self.sam_model.recipe,
            **self.clip_model.recipe,
            **self.sam.mask_params(),
            "stuff": list(STUFF_NAMES),
        }

    def prepare(self, dataset: LocalDataset, device: torch.device) -> None:
        self.sam_model.get(device)
        self.clip_model.get(device)

    def produce(self, sample: EvalSample, spec: DatasetSpec) -> np.ndarray:
        image = sample.image.cpu().numpy()
        masks = [m for m, _ in automatic_masks(self.sam_model.get(sample.gt.device), image,
                                               self.sam.masks)]  # fmt: skip
        foreground = spec.foreground_names
        clip: ClipModel = self.clip_model.get(sample.gt.device)
        probs = clip.classify([masked_crop(image, m) for m in masks], foreground + STUFF_NAMES)
        objectness = probs[:, : len(foreground)].sum(axis=1)
        return saliency_from_masks(masks, objectness, image.shape[:2])
