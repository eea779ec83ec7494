"""`png-per-class`: `<id>_<key>.png` per foreground class, 8-bit, value / 255 (WSSS-BED)."""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

import numpy as np

from wsssbed.activation.base import FORMATS, MapFormat
from wsssbed.errors import InputError
from wsssbed.io.budget import MapBudget
from wsssbed.io.imageio import read_png_array, write_png_atomic
from wsssbed.io.outputs import inside

_NAME = re.compile(r"^(?P<id>.+)_(?P<key>[0-9]+)\.png$")
_NUMBERED = re.compile(r"^.+_(?P<key>[^_.]+)\.png$")  # any `<id>_<something>.png`
KEY_DIGITS = 6  # a class index has fewer digits than this


@FORMATS.register("png-per-class")
class PngPerClass(MapFormat):
    name = "png-per-class"
    pattern = "<id>_<class>.png"
    quantised = True

    def list_ids(self, folder: Path) -> dict[str, tuple[int, ...] | None]:
        if not folder.is_dir():
            raise InputError("activation folder not found", folder)
        keys: dict[str, list[int]] = defaultdict(list)
        for entry in folder.iterdir():
            match = _NAME.match(entry.name)
            if not match:
                numbered = _NUMBERED.match(entry.name)
                if numbered and numbered["key"].isnumeric():  # `²`, `٣`: digits, not ASCII
                    raise InputError(
                        f"class index {numbered['key']!r} is not written in ASCII digits 0-9",
                        entry,
                    )
                continue
            if len(match["key"]) > KEY_DIGITS:
                raise InputError(f"class index {match['key']} is no class of any dataset", entry)
            key = int(match["key"])
            if match["key"] != str(key):  # `_016` would be read as `_16`: one name per class
                canonical = f"{match['id']}_{key}.png"
                both = (folder / canonical).exists()
                raise InputError(
                    f"{entry.name} writes class {key} with leading zeros; name it {canonical}"
                    + (f" ({canonical} exists too: two files for one class)" if both else ""),
                    folder,
                )
            keys[match["id"]].append(key)
        return {image_id: tuple(sorted(k)) for image_id, k in keys.items()}

    def is_map_file(self, name: str) -> bool:
        numbered = _NUMBERED.match(name)
        return numbered is not None and numbered["key"].isnumeric()  # `list_ids` checks it

    def where(self, folder: Path, image_id: str) -> Path:
        return folder / image_id

    def read_raw(
        self, folder: Path, image_id: str, keys: tuple[int, ...] | None, budget: MapBudget
    ) -> tuple[np.ndarray, np.ndarray]:
        if not keys:
            raise InputError(f"no activation maps `{image_id}_<class>.png`", folder)
        if len(keys) > budget.planes:
            raise InputError(
                f"{len(keys)} per-class maps for {image_id}; the dataset has {budget.planes} "
                "foreground classes",
                folder,
            )
        for k in keys:
            if k >= budget.planes:
                raise InputError(
                    f"class index {k} is not one of the dataset's {budget.planes} foreground "
                    "classes (0-based)",
                    folder / f"{image_id}_{k}.png",
                )
        planes = [
            read_png_array(folder / f"{image_id}_{k}.png", expected=budget.shape, writable=False)
            for k in keys
        ]
        shapes = {p.shape for p in planes}
        if len(shapes) != 1:
            raise InputError(
                f"per-class maps of {image_id} differ in size: {sorted(shapes)}", folder
            )
        cams = planes[0][None] if len(planes) == 1 else np.stack(planes)
        return np.asarray(keys, dtype=np.int64), cams  # uint8, scored as value / 255

    def write(self, folder: Path, image_id: str, keys: np.ndarray, cams: np.ndarray) -> None:
        for key, plane in zip(keys.tolist(), cams):
            quantised = np.rint(np.clip(plane, 0.0, 1.0) * 255.0).astype(np.uint8)
            write_png_atomic(inside(folder, f"{image_id}_{key}.png"), quantised)
