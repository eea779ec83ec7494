"""Foundation-model generators: SAM refinement, box-prompted SAM, CLIP activations.

- `sam-refine`: SAM's automatic masks of the picture; each mask takes the class the
  CAM pseudo-label (a classic generator, `--base`) votes for most inside it, smaller
  masks painted over larger ones; pixels no mask covers, and masks whose pixels are all
  ignore, keep the CAM label.
- `sam-box`: SAM's mask for each box prompt, from a detector's JSON or from the
  connected components of the CAM pseudo-label; overlaps go to the higher score; the
  class is the box's label, or CLIP's zero-shot choice over the dataset's classes for a
  box without one; uncovered pixels are background (ignore on datasets without one).
- `clip-cam`: CLIP Grad-CAM for each image-level label, written as `npz` activation
  maps that the sweep evaluates like any method's.

Models are loaded once per process (`ModelSlot`) on the device of the images.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import torch

from wsssbed.datasets.local import LocalDataset
from wsssbed.datasets.spec import DatasetSpec
from wsssbed.errors import InputError
from wsssbed.eval.rules import PictureOnly, Rule
from wsssbed.eval.sample import EvalSample
from wsssbed.foundation.clip import DEFAULT_TEMPLATE, ClipModel, load_clip
from wsssbed.foundation.sam import MaskSettings, automatic_masks, box_masks, load_sam
from wsssbed.foundation.slot import ModelSlot
from wsssbed.maps import ActivationMaps
from wsssbed.pseudo.boxes import Box, check_inside, component_boxes, read_boxes
from wsssbed.pseudo.generators import ClassicGenerator

FOUNDATION = ("sam-refine", "sam-box")


@dataclass(frozen=True)
class SamOptions:
    """Which SAM, and its automatic-mask filters (`--sam-*` options)."""

    checkpoint: Path
    model_type: str = "auto"
    masks: MaskSettings = field(default_factory=MaskSettings)

    def slot(self) -> ModelSlot:
        recipe = {"sam_checkpoint": str(self.checkpoint.resolve()), "sam_model": self.model_type}
        return ModelSlot(partial(load_sam, self.checkpoint, self.model_type), recipe)

    def mask_params(self) -> dict:
        """The automatic-mask filters, as recorded with generators that use them."""
        return {
            "points_per_side": self.masks.points_per_side,
            "pred_iou_thresh": self.masks.pred_iou_thresh,
            "stability_thresh": self.masks.stability_thresh,
        }


@dataclass(frozen=True)
class ClipOptions:
    """Which CLIP (`--clip-*` options): open_clip name or config, local weights, template."""

    weights: Path
    model: str | None = None
    config: Path | None = None
    template: str = DEFAULT_TEMPLATE

    def slot(self) -> ModelSlot:
        recipe = {
            "clip_model": self.model or (self.config.stem if self.config else ""),
            "clip_config": "" if self.config is None else str(self.config.resolve()),
            "clip_weights": str(self.weights.resolve()),
            "clip_template": self.template,
        }
        load = partial(load_clip, self.model, self.weights, self.config, template=self.template)
        return ModelSlot(load, recipe)  # load(device)


def foreground_names(spec: DatasetSpec) -> tuple[str, ...]:
    """The dataset's foreground class names, in class-id order."""
    return spec.classes[spec.first_foreground :]


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


def paint_boxes(
    masks: np.ndarray, class_ids: list[int], scores: list[float], fill: int
) -> np.ndarray:
    """Label map from box masks (the `sam-box` rule).

    Args:
        masks: (N, H, W) bool, one per box.
        class_ids: the class of each box.
        scores: each box's score; where masks overlap, the higher score wins (the
            earlier box on a tie).
        fill: the label of pixels no mask covers.

    Returns:
        (H, W) uint8 labels.
    """
    labels = np.full(masks.shape[1:], fill, dtype=np.uint8)
    order = sorted(range(len(scores)), key=lambda i: (scores[i], -i))  # best painted last
    for i in order:
        labels[masks[i]] = class_ids[i]
    return labels


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


@dataclass
class SamBoxGenerator:
    """`sam-box` (see the module docstring).

    Attributes:
        sam: the SAM.
        boxes_file: a detector's boxes (JSON); None: boxes from `base`'s CAM regions.
        base: the CAM pseudo-label whose regions give boxes (without `boxes_file`).
        clip: classifies boxes without a label.
        min_pixels: smallest CAM region that gives a box.
    """

    sam: SamOptions
    boxes_file: Path | None = None
    base: ClassicGenerator | None = None
    clip: ClipOptions | None = None
    min_pixels: int = 16
    name = "sam-box"
    output = "labels"
    needs_image = True

    def __post_init__(self) -> None:
        if (self.boxes_file is None) == (self.base is None):
            raise InputError("sam-box takes its boxes from --boxes FILE or from a CAM "
                             "pseudo-label (--base with --activation), exactly one")  # fmt: skip
        self.model = self.sam.slot()
        self.clip_model = None if self.clip is None else self.clip.slot()
        self.boxes: dict[str, list[Box]] = {}

    @property
    def rule(self) -> Rule:
        return PictureOnly("sam-box", ()) if self.base is None else self.base.rule

    def params(self) -> dict:
        found = {**self.model.recipe, "min_pixels": self.min_pixels}
        if self.boxes_file is not None:
            found["boxes"] = str(self.boxes_file.resolve())
        else:
            found.update({"base": self.base.name, **self.base.params()})
        if self.clip_model is not None:
            found.update(self.clip_model.recipe)
        return found

    def prepare(self, dataset: LocalDataset, device: torch.device) -> None:
        if self.boxes_file is not None:
            self.boxes = read_boxes(self.boxes_file, dataset.spec)
            unlabelled = any(b.class_id is None for v in self.boxes.values() for b in v)
            if unlabelled and self.clip is None:
                raise InputError("some boxes have no label; give --clip-weights to classify "
                                 "them with CLIP", self.boxes_file)  # fmt: skip
            for image_id in dataset.ids:
                if self.boxes.get(image_id):
                    height, width = dataset.image_size(image_id)
                    check_inside(self.boxes[image_id], image_id, height, width, self.boxes_file)
        self.model.get(device)
        if self.clip_model is not None:
            self.clip_model.get(device)

    def produce(self, sample: EvalSample, spec: DatasetSpec) -> np.ndarray:
        image = sample.image.cpu().numpy()
        if self.base is None:
            boxes = self.boxes.get(sample.image_id, [])
        else:
            boxes = component_boxes(
                self.base.produce(sample, spec),
                sample.class_ids.cpu().numpy(),
                sample.cams.cpu().numpy(),
                self.min_pixels,
            )
        corners = np.array([[b.x0, b.y0, b.x1, b.y1] for b in boxes], dtype=np.float32)
        masks = box_masks(self.model.get(sample.gt.device), image, corners.reshape(-1, 4))
        class_ids = self._classes(boxes, image, spec, sample.gt.device)
        fill = 0 if spec.has_background else spec.ignore_index
        return paint_boxes(masks, class_ids, [b.score for b in boxes], fill)

    def _classes(self, boxes: list[Box], image: np.ndarray, spec: DatasetSpec, device) -> list:
        unknown = [i for i, b in enumerate(boxes) if b.class_id is None]
        found = [b.class_id for b in boxes]
        if unknown:
            clip: ClipModel = self.clip_model.get(device)
            crops = [_crop(image, boxes[i]) for i in unknown]
            probs = clip.classify(crops, foreground_names(spec))
            for i, row in zip(unknown, probs):
                found[i] = int(np.argmax(row)) + spec.first_foreground
        return found


def _crop(image: np.ndarray, box: Box) -> np.ndarray:
    """The pixels of a box (at least one), (h, w, 3)."""
    x0, y0 = int(box.x0), int(box.y0)
    x1, y1 = max(int(np.ceil(box.x1)), x0 + 1), max(int(np.ceil(box.y1)), y0 + 1)
    return image[y0:y1, x0:x1]


@dataclass
class ClipCamGenerator:
    """`clip-cam`: CLIP Grad-CAM of each image-level label, as activation maps."""

    clip: ClipOptions
    name = "clip-cam"
    output = "activation"
    needs_image = True

    def __post_init__(self) -> None:
        self.model = self.clip.slot()
        self.rule = PictureOnly("clip-cam", ())

    def params(self) -> dict:
        return dict(self.model.recipe)

    def prepare(self, dataset: LocalDataset, device: torch.device) -> None:
        self.model.get(device)

    def produce(self, sample: EvalSample, spec: DatasetSpec) -> ActivationMaps:
        class_ids = np.sort(sample.class_ids.cpu().numpy()).astype(np.int64)
        clip: ClipModel = self.model.get(sample.gt.device)
        targets = (class_ids - spec.first_foreground).tolist()
        cams = clip.grad_cam(sample.image.cpu().numpy(), foreground_names(spec), targets)
        return ActivationMaps(class_ids, cams)
