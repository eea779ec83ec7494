"""`seam-npy`: the `{class index: map}` dict SEAM, PSA and MCTformer save.

`cam_dict[i] = norm_cam[i]` for each labelled class, then `np.save(path, cam_dict)`
(YudeWang/SEAM infer_SEAM.py:79-85; jiwoon-ahn/psa infer_cls.py:77-83;
xulianuwa/MCTformer engine.py:213-232): Python int keys, 0-based foreground class
indices, each a numpy (H, W) map.

SEAM's normalisation (infer_SEAM.py:73-77) zeroes each map's pixels at its minimum and
subtracts 1e-5, which leaves those pixels below 0, all at one value: the map's minimum
(-1e-5 / (max - min + 1e-5) when the minimum is 0). Such values are set to 0 here, which
changes no label: every rule compares the best score with a threshold or a background
score that is >= 0 (SEAM's own `evaluation.py:25-33` puts the threshold t >= 0 in front
of the maps and takes the argmax), so a score below 0 and a score of 0 both lose. Only
that artefact is accepted: a map whose negative values are not all its minimum (other
than float32 rounding, above -1e-6) is refused, as in any format.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from wsssbed.activation.base import FORMATS
from wsssbed.activation.formats.pickled import PickledNpy, checked_maps
from wsssbed.errors import InputError
from wsssbed.io.budget import MapBudget

ROUNDING = 1e-6  # negative values this close to 0 are float32 rounding of SEAM's formula


def _class_index(key: Any) -> bool:
    return isinstance(key, int) and not isinstance(key, bool)


@FORMATS.register("seam-npy")
class SeamNpy(PickledNpy):
    name = "seam-npy"
    description = "{class index: H x W map}, as SEAM, PSA and MCTformer save"

    @classmethod
    def match(cls, content: Any) -> int | None:
        return 0 if isinstance(content, dict) and all(map(_class_index, content)) else None

    def select(self, content: dict, budget: MapBudget, path: Path) -> tuple[np.ndarray, np.ndarray]:
        if len(content) > budget.planes:
            raise InputError(
                f"{len(content)} class maps; the dataset has {budget.planes} foreground classes",
                path,
            )
        keys = sorted(content)
        outside = [k for k in keys if not 0 <= k < budget.planes]
        if outside:
            raise InputError(
                f"class indices {outside[:5]} are not among the dataset's {budget.planes} "
                "foreground classes (0-based)",
                path,
            )
        planes = [checked_maps(content, k, budget, path, plane=True) for k in keys]
        shapes = sorted({p.shape for p in planes})
        if len(shapes) > 1:
            raise InputError(f"class maps differ in size: {shapes}", path)
        empty = (0, *(budget.shape or (0, 0)))
        cams = np.stack(planes) if planes else np.zeros(empty, np.float32)
        for key, plane in zip(keys, cams):
            negative = plane[plane < 0]
            if negative.size and not np.all((negative == plane.min()) | (negative > -ROUNDING)):
                raise InputError(
                    f"`{key}`: values down to {negative.min():.4g} below 0 that are not SEAM's "
                    "normalisation (which leaves only the map's minimum below 0); normalise "
                    "the maps to [0, 1]",
                    path,
                )
        np.maximum(cams, 0, out=cams)
        return np.asarray(keys, dtype=np.int64), cams

    def content(self, keys: np.ndarray, cams: np.ndarray) -> dict:
        return {int(k): plane for k, plane in zip(keys.tolist(), cams)}
