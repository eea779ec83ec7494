"""`clip-cam`: CLIP Grad-CAM of each image-level label, written as `npz` activation maps
that the sweep evaluates like any method's (CLIP-ES style; see docs/generators.md)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from wsssbed.activation.base import ActivationMaps
from wsssbed.datasets.local import LocalDataset
from wsssbed.datasets.spec import DatasetSpec
from wsssbed.eval.rules import PictureOnly
from wsssbed.eval.sample import EvalSample
from wsssbed.models.clip import ClipModel
from wsssbed.models.options import ClipOptions


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
        cams = clip.grad_cam(sample.image.cpu().numpy(), spec.foreground_names, targets)
        return ActivationMaps(class_ids, cams)
