"""`sam-box`: SAM's mask for each box prompt, classes from the box or from CLIP.

Boxes come from a detector's JSON, from Grounding DINO run on the picture, or from the
connected components of the CAM pseudo-label; overlaps go to the higher score; the class
is the box's label, or CLIP's zero-shot choice over the dataset's classes for a box
without one; uncovered pixels are background (ignore on datasets without one).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from wsssbed.datasets.local import LocalDataset
from wsssbed.datasets.spec import DatasetSpec
from wsssbed.errors import InputError
from wsssbed.eval.rules import PictureOnly, Rule
from wsssbed.eval.sample import EvalSample
from wsssbed.generators.base import ClassicGenerator
from wsssbed.io.digest import file_sha256
from wsssbed.models.boxes import Box, check_inside, component_boxes, read_boxes
from wsssbed.models.clip import ClipModel
from wsssbed.models.options import ClipOptions, DetectorOptions, SamOptions
from wsssbed.models.sam import box_masks


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
class SamBoxGenerator:
    """`sam-box` (see the module docstring).

    Attributes:
        sam: the SAM.
        boxes_file: a detector's boxes (JSON).
        base: the CAM pseudo-label whose regions give boxes.
        detector: Grounding DINO, run on each picture.
        clip: classifies boxes without a label.
        min_pixels: smallest CAM region that gives a box.
    """

    sam: SamOptions
    boxes_file: Path | None = None
    base: ClassicGenerator | None = None
    clip: ClipOptions | None = None
    min_pixels: int = 16
    detector: DetectorOptions | None = None
    name = "sam-box"
    output = "labels"
    needs_image = True

    def __post_init__(self) -> None:
        sources = (self.boxes_file, self.base, self.detector)
        if sum(source is not None for source in sources) != 1:
            raise InputError("sam-box takes its boxes from --boxes FILE, from --boxes "
                             "grounding-dino, or from a CAM pseudo-label (--base with "
                             "--activation): exactly one")  # fmt: skip
        if self.detector is not None and self.detector.classes == "clip" and self.clip is None:
            raise InputError("--box-classes clip needs --clip-weights")
        self.model = self.sam.slot()
        self.clip_model = None if self.clip is None else self.clip.slot()
        self.detector_model = None if self.detector is None else self.detector.slot()
        self.boxes: dict[str, list[Box]] = {}

    @property
    def rule(self) -> Rule:
        return self.base.rule if self.base is not None else PictureOnly("sam-box", ())

    def params(self) -> dict:
        found = {**self.model.recipe, "min_pixels": self.min_pixels}
        if self.boxes_file is not None:
            found["boxes"] = str(self.boxes_file.resolve())
            found["boxes_sha256"] = file_sha256(self.boxes_file)
        elif self.detector is not None:
            found.update(self.detector.params())
        else:
            found.update({"base": self.base.name, **self.base.params()})
        if self.clip_model is not None:
            found.update(self.clip_model.recipe)
        return found

    def prepare(self, dataset: LocalDataset, device: torch.device) -> None:
        if self.boxes_file is not None:
            self.boxes = read_boxes(self.boxes_file, dataset.spec, dataset.ids)
            unlabelled = any(b.class_id is None for v in self.boxes.values() for b in v)
            if unlabelled and self.clip is None:
                raise InputError("some boxes have no label; give --clip-weights to classify "
                                 "them with CLIP", self.boxes_file)  # fmt: skip
            for image_id in dataset.ids:
                if self.boxes.get(image_id):
                    height, width = dataset.image_size(image_id)
                    check_inside(self.boxes[image_id], image_id, height, width, self.boxes_file)
        if self.detector_model is not None:
            self.detector_model.get(device).check_names(
                list(dataset.spec.foreground_names), self.detector.weights
            )
        self.model.get(device)
        if self.clip_model is not None:
            self.clip_model.get(device)

    def produce(self, sample: EvalSample, spec: DatasetSpec) -> np.ndarray:
        image = sample.image.cpu().numpy()
        if self.boxes_file is not None:
            boxes = self.boxes.get(sample.image_id, [])
        elif self.detector is not None:
            found = self.detector.detect(self.detector_model.get(sample.gt.device), image,
                                         sample.class_ids.tolist(), spec)  # fmt: skip
            boxes = [box for box, _ in found]
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
            probs = clip.classify(crops, spec.foreground_names)
            for i, row in zip(unknown, probs):
                found[i] = int(np.argmax(row)) + spec.first_foreground
        return found


def _crop(image: np.ndarray, box: Box) -> np.ndarray:
    """The pixels of a box (at least one), (h, w, 3)."""
    x0, y0 = int(box.x0), int(box.y0)
    x1, y1 = max(int(np.ceil(box.x1)), x0 + 1), max(int(np.ceil(box.y1)), y0 + 1)
    return image[y0:y1, x0:x1]
