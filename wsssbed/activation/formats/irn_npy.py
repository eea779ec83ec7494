"""`irn-npy`: `<id>.npy` holding a pickled dict, as IRN-family code writes it.

The dict has `keys` (0-based foreground class indices, (K,)) and `high_res` or `cam`
(float32, (K, H, W)). It is read through a restricted reader (`wsssbed.io.safe_pickle`)
that cannot run code and hands numpy nothing it has not checked.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from wsssbed.activation.base import FORMATS
from wsssbed.activation.formats.single_file import SingleFileFormat
from wsssbed.errors import InputError
from wsssbed.io.budget import MapBudget
from wsssbed.io.imageio import write_atomic
from wsssbed.io.safe_pickle import load_npy


@FORMATS.register("irn-npy")
class IrnNpy(SingleFileFormat):
    name = "irn-npy"
    suffix = ".npy"

    def read_raw(
        self, folder: Path, image_id: str, keys: tuple[int, ...] | None, budget: MapBudget
    ) -> tuple[np.ndarray, np.ndarray]:
        path = self.where(folder, image_id)
        content = load_npy(path, budget)
        if not isinstance(content, dict) or "keys" not in content:
            raise InputError("expected a pickled dict with `keys` and `high_res` (or `cam`)", path)
        for name in ("high_res", "cam"):
            if isinstance(content.get(name), np.ndarray):
                return content["keys"], content[name]
        raise InputError("dict has no numpy `high_res` or `cam` array", path)

    def write(self, folder: Path, image_id: str, keys: np.ndarray, cams: np.ndarray) -> None:
        buffer = io.BytesIO()
        np.save(buffer, {"keys": keys, "high_res": cams}, allow_pickle=True)
        payload = buffer.getvalue()
        write_atomic(self.where(folder, image_id), lambda f: f.write(payload))
