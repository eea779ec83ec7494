"""Box prompts: a grounding detector's JSON, or the connected components of a CAM label.

The JSON maps image ids to lists of boxes, the shape a detector such as Grounding-DINO
writes: `{"2007_000032": [{"box": [x0, y0, x1, y1], "label": "aeroplane", "score": 0.9}]}`.
Coordinates are pixels, `x0 < x1 <= width`, `y0 < y1 <= height`. `label` is a dataset
class name, or absent / null for boxes whose class CLIP should decide. `score` (default
1) orders overlapping masks: the higher score wins. `phrase` (what a grounding detector
read, as `wsssbed boxes` writes it) is allowed and unused; any other field is refused.
Every entry is checked against this schema (`wsssbed.io.configio.from_table`: booleans
are not numbers), an image may have at most `MAX_BOXES` boxes, and every image id must
belong to the split being labelled.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from wsssbed.datasets.spec import DatasetSpec
from wsssbed.errors import InputError
from wsssbed.io.configio import from_table, read_json
from wsssbed.io.names import check_id

#: Most boxes one image may have (Grounding DINO proposes 900 queries).
MAX_BOXES = 900


@dataclass(frozen=True)
class Box:
    """One prompt: pixel corners, dataset class id (None: ask CLIP) and score."""

    x0: float
    y0: float
    x1: float
    y1: float
    class_id: int | None
    score: float


@dataclass
class _Entry:
    """One box as the file holds it (checked by `from_table`)."""

    box: list[float]
    label: str | None = None
    score: float = 1.0
    phrase: str | None = None  # what a grounding detector read; not used here


def read_boxes(path: Path, spec: DatasetSpec, ids: list[str] | None = None) -> dict[str, list[Box]]:
    """Parse and check a box file (see the module docstring).

    Args:
        ids: the split's image ids; the file may name no other image.

    Raises:
        InputError: unreadable JSON, an entry against the schema (`box` four finite
            numbers, `label` a class name or null, `score` a finite number, `phrase`
            text; booleans are not numbers), an empty box, a label the dataset lacks, more
            than `MAX_BOXES` boxes for one image, or an image outside `ids`; the message
            names the file, the image and the box.
    """
    parsed = read_json(path, "box file")
    if not isinstance(parsed, dict):
        raise InputError("expected an object of image id -> list of boxes", path)
    if ids is not None:
        outside = sorted(set(parsed) - set(ids))
        if outside:
            raise InputError(
                f"{len(outside)} image ids are not in the split (first: {outside[0]!r}); "
                "give the boxes of this split's images",
                path,
            )
    by_name = {name: i for i, name in enumerate(spec.classes) if i >= spec.first_foreground}
    found: dict[str, list[Box]] = {}
    for image_id, entries in parsed.items():
        check_id(image_id, "image id", path)
        if not isinstance(entries, list):
            raise InputError(f"image {image_id}: expected a list of boxes", path)
        if len(entries) > MAX_BOXES:
            raise InputError(f"image {image_id}: {len(entries):,} boxes, above the "
                             f"{MAX_BOXES} one image may have", path)  # fmt: skip
        found[image_id] = [_parse_box(e, f"image {image_id}, box {n}", by_name, spec, path)
                           for n, e in enumerate(entries)]  # fmt: skip
    return found


def _parse_box(
    table: object, where: str, by_name: dict[str, int], spec: DatasetSpec, path: Path
) -> Box:
    entry = from_table(_Entry, table, path, where)
    corners = [_real(v) for v in entry.box]
    if len(corners) != 4 or None in corners:
        raise InputError(f"{where}: 'box' must be four finite numbers x0, y0, x1, y1", path)
    x0, y0, x1, y1 = corners
    if not (x0 < x1 and y0 < y1):
        raise InputError(f"{where}: empty box {corners} (needs x0 < x1 and y0 < y1)", path)
    if entry.label is not None and entry.label not in by_name:
        raise InputError(
            f"{where}: label {entry.label!r:.40} is not a {spec.name} class "
            f"({', '.join(list(by_name)[:6])}, ...)",
            path,
        )
    score = _real(entry.score)
    if score is None:
        raise InputError(f"{where}: 'score' must be a finite number", path)
    class_id = None if entry.label is None else by_name[entry.label]
    return Box(x0, y0, x1, y1, class_id, score)


def _real(value: float) -> float | None:
    """`value` as a float, or None when it is not finite (a 401-digit integer neither)."""
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


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
