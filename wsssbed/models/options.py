"""Which SAM, CLIP and detector a generator uses: the user's options, and a recipe-carrying slot
that loads the model once per process (workers rebuild it from the recipe)."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np

from wsssbed.datasets.spec import DatasetSpec
from wsssbed.models.boxes import Box
from wsssbed.models.clip import DEFAULT_TEMPLATE, load_clip
from wsssbed.models.grounding_dino import BOX_THRESHOLD, TEXT_THRESHOLD, Detector, load_detector
from wsssbed.models.sam import load_sam
from wsssbed.models.sam_masks import MaskSettings
from wsssbed.models.slot import ModelSlot


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
            "sam_masks": self.masks.path,
            "sam_precision": self.masks.precision,
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


PROMPTS = ("labels", "all")
BOX_CLASSES = ("detector", "clip")


@dataclass(frozen=True)
class DetectorOptions:
    """Which Grounding DINO and how it is prompted (`--detector-*`, `--box-threshold`,
    `--text-threshold`, `--prompt`).

    Attributes:
        weights: folder that transformers' `save_pretrained` wrote.
        box_threshold: a query is a box above this score.
        text_threshold: tokens above this name the box's class.
        prompt: `labels`, each image's image-level labels; `all`, every class.
        classes: `detector`, a box's class is the name it is grounded on; `clip`, the
            detector only finds boxes and CLIP names them (the founding paper's pipeline).
    """

    weights: Path
    box_threshold: float = BOX_THRESHOLD
    text_threshold: float = TEXT_THRESHOLD
    prompt: str = "labels"
    classes: str = "detector"

    def slot(self) -> ModelSlot:
        return ModelSlot(partial(load_detector, self.weights), self.params())

    def params(self) -> dict:
        return {
            "detector": "grounding-dino",
            "detector_weights": str(self.weights.resolve()),
            "box_threshold": self.box_threshold,
            "text_threshold": self.text_threshold,
            "prompt": self.prompt,
            "box_classes": self.classes,
        }

    def detect(
        self, detector: Detector, image: np.ndarray, class_ids: list[int], spec: DatasetSpec
    ) -> list[tuple[Box, str]]:
        """One picture's boxes and phrases, prompted with its image-level `class_ids` (or
        every class). With `classes="detector"`, a box no name is grounded on is dropped;
        with `clip`, every box's class is None (CLIP decides).

        Args:
            detector: the loaded model (`slot().get(device)`).
            image: (H, W, 3) uint8 RGB.
            class_ids: the image's labels, dataset class ids.
            spec: the dataset (class names).
        """
        if self.prompt == "all":
            class_ids = list(range(spec.first_foreground, spec.num_classes))
        prompted = sorted(class_ids)
        found = detector.detect(image, [spec.classes[i] for i in prompted],
                                self.box_threshold, self.text_threshold)  # fmt: skip
        if self.classes == "clip":
            return [(Box(*d.box, None, d.score), d.phrase) for d in found]
        return [(Box(*d.box, prompted[d.name], d.score), d.phrase)
                for d in found if d.name is not None]  # fmt: skip
