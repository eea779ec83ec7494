"""`puzzlecam-npy`: what PuzzleCAM's `inference_classification.py` saves.

`keys = np.pad(keys + 1, (1, 0), mode='constant')` then `np.save(npy_path, {"keys": keys,
"cam": strided_cams.cpu(), "hr_cam": hr_cams.cpu().numpy()})` (OFRIN/PuzzleCAM
inference_classification.py:181-182): `keys` numpy int64 with background 0 first and the
foreground indices + 1 (K + 1,), `cam` a torch tensor at stride 4, `hr_cam` numpy float32
(K, H, W), foreground only. Its random walk (`inference_rw.py:168`) saves the same keys
with `rw` (K, H, W). The maps are `hr_cam`, else `rw`, as its `evaluate.py:46-51` takes
them; the low-resolution `cam` is never copied.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from wsssbed.activation.base import FORMATS
from wsssbed.activation.formats.pickled import PickledNpy
from wsssbed.errors import InputError
from wsssbed.io.budget import MapBudget


@FORMATS.register("puzzlecam-npy")
class PuzzleCamNpy(PickledNpy):
    name = "puzzlecam-npy"
    map_keys = ("hr_cam", "rw")
    description = "`keys` with background 0 first, and `hr_cam` or `rw`, as PuzzleCAM saves"

    def select(self, content: dict, budget: MapBudget, path: Path) -> tuple[np.ndarray, np.ndarray]:
        padded, cams = super().select(content, budget, path)
        padded = np.asarray(padded)
        if padded.ndim != 1 or padded.dtype.kind not in "iu" or not padded.size or padded[0]:
            raise InputError(
                f"`keys` {padded.tolist()[:8]} do not start with PuzzleCAM's background 0 "
                "(then each class index + 1)",
                path,
            )
        return padded[1:].astype(np.int64) - 1, cams

    def content(self, keys: np.ndarray, cams: np.ndarray) -> dict:
        return {"keys": np.pad(keys + 1, (1, 0), mode="constant"), "hr_cam": cams}
