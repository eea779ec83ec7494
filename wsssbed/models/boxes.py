"""Box prompts: a grounding detector's JSON, or the connected components of a CAM label.

The JSON maps image ids to lists of boxes, the shape a detector such as Grounding-DINO
writes: `{"2007_000032": [{"box": [x0, y0, x1, y1], "label": "aeroplane", "score": 0.9}]}`.
Coordinates are pixels, `x0 < x1 <= width`, `y0 < y1 <= height`. `label` is a dataset
class name, or absent / null for boxes whose class CLIP should decide. `score` (default
1) orders overlapping masks: the higher score wins.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from wsssbed.datasets.spec import DatasetSpec
from wsssbed.errors import InputError
from wsssbed.io.configio import read_json
from wsssbed.io.names import check_id


@dataclass(frozen=True)
class Box:
    """One prompt: pixel corners, dataset class id (None: ask CLIP) and score."""

    x0: float
    y0: float
    x1: float
    y1: float
    class_id: int | None
    score: float


def read_boxes(path: Path, spec: DatasetSpec) -> dict[str, list[Box]]:
    """Parse and check a box file (see the module docstring).

    Raises:
        InputError: unreadable JSON, a malformed entry, or a label the dataset lacks;
            the message names the image and the box.
    """
    parsed = read_json(path, "box file")
    if not isinstance(parsed, dict):
        raise InputError("expected an object of image id -> list of boxes", path)
    by_name = {name: i for i, name in enumerate(spec.classes) if i >= spec.first_foreground}
    found: dict[str, list[Box]] = {}
    for image_id, entries in parsed.items():
        check_id(image_id, "image id", path)
        if not isinstance(entries, list):
            raise InputError(f"image {image_id}: expected a list of boxes", path)
        found[image_id] = [_parse_box(e, image_id, n, by_name, spec, path)
                           for n, e in enumerate(entries)]  # fmt: skip
    return found


def _parse_box(
    entry: object, image_id: str, index: int, by_name: dict[str, int], spec: DatasetSpec,
    path: Path,
) -> Box:  # fmt: skip
    where = f"image {image_id}, box {index}"
    if not isinstance(entry, dict) or "box" not in entry:
        raise InputError(f"{where}: expected {{'box': [x0, y0, x1, y1], 'label': ..., "
                         "'score': ...}", path)  # fmt: skip
    corners = entry["box"]
    if (
        not isinstance(corners, list)
        or len(corners) != 4
        or not all(isinstance(v, int | float) and math.isfinite(v) for v in corners)
    ):
        raise InputError(f"{where}: 'box' must be four finite numbers x0, y0, x1, y1", path)
    x0, y0, x1, y1 = (float(v) for v in corners)
    if not (x0 < x1 and y0 < y1):
        raise InputError(f"{where}: empty box {corners} (needs x0 < x1 and y0 < y1)", path)
    label = entry.get("label")
    if label is not None and label not in by_name:
        raise InputError(
            f"{where}: label {label!r} is not a {spec.name} class "
            f"({', '.join(list(by_name)[:6])}, ...)",
            path,
        )
    score = entry.get("score", 1.0)
    if not isinstance(score, int | float) or not math.isfinite(score):
        raise InputError(f"{where}: 'score' must be a finite number", path)
    return Box(x0, y0, x1, y1, None if label is None else by_name[label], float(score))


def check_inside(boxes: list[Box], image_id: str, height: int, width: int, path: Path) -> None:
    """Refuse a box that reaches outside its (height, width) picture."""
    for index, b in enumerate(boxes):
        if b.x0 < 0 or b.y0 < 0 or b.x1 > width or b.y1 > height:
            raise InputError(
                f"image {image_id}, box {index} [{b.x0:g}, {b.y0:g}, {b.x1:g}, {b.y1:g}] "
                f"reaches outside the {width}x{height} image",
                path,
            )


def component_boxes(
    labels: np.ndarray, class_ids: np.ndarray, cams: np.ndarray, min_pixels: int
) -> list[Box]:
    """One box per 8-connected region of each foreground class of a CAM pseudo-label.

    Args:
        labels: (H, W) uint8 pseudo-label (255 = ignore).
        class_ids: (K,) dataset class ids of `cams`.
        cams: (K, H, W) activation maps; a box's score is its class's mean inside it.
        min_pixels: smaller regions give no box.

    Returns:
        Boxes covering each region's pixels (`x1`, `y1` exclusive).
    """
    from scipy import ndimage

    boxes = []
    for plane, class_id in zip(cams, class_ids.tolist()):
        regions, _ = ndimage.label(labels == class_id, structure=np.ones((3, 3)))
        for index, window in enumerate(ndimage.find_objects(regions), start=1):
            inside = regions[window] == index
            if inside.sum() < min_pixels:
                continue
            rows, cols = window
            score = float(plane[window][inside].mean())
            boxes.append(Box(cols.start, rows.start, cols.stop, rows.stop, class_id, score))
    return boxes
