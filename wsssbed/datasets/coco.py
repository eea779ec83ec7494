"""Convert COCO 2014 instance annotations into WSSS semantic masks (classes 0..80).

Each image's mask starts as background (0); non-crowd instances are painted largest
first, so a small object on top of a large one stays visible; crowd regions not covered
by an instance become void (255). The class of a category is its position in the
category-id order (person = 1 ... toothbrush = 80).

The file is a stranger's, and pycocotools trusts it (a polygon coordinate of 1e9 or NaN
crashes the process; an RLE string that ends mid-number is read past its end), so every
part is checked before pycocotools sees it:

- the file, each image and each annotation against the schema below
  (`wsssbed.io.configio.from_table`; fields COCO adds beyond these are ignored);
- images: distinct ids, height and width positive and within the PNG reader's
  `MAX_PIXELS` budget (the mask is allocated at that size);
- annotations: a known image and category, `iscrowd` 0 or 1, a finite `area`;
- polygons: finite coordinates within one picture size of the picture on each side, and
  an outline of at most `OUTLINE_FACTOR` x (height + width) pixels (pycocotools
  allocates about 120 bytes per outline pixel); polygons of fewer than three points are
  dropped, as detectron2 does (COCO holds a few);
- RLE: `size` equal to the picture's, counts non-negative and summing to height x width;
  a compressed `counts` string is decoded here first (pycocotools' LEB128-like format).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from wsssbed.datasets.spec import DatasetSpec
from wsssbed.errors import InputError
from wsssbed.io.configio import from_table, read_json
from wsssbed.io.imageio import MAX_PIXELS, write_png_atomic, write_text
from wsssbed.io.names import check_id
from wsssbed.io.outputs import inside

#: A polygon annotation's outline (sum of its edges' longer side, in pixels) may be at
#: most this many times the picture's height + width.
OUTLINE_FACTOR = 64
MAX_COUNT = 2**32 - 1  # pycocotools stores RLE counts as uint32


@dataclass
class _File:
    images: list[dict]
    annotations: list[dict]
    categories: Any = None


@dataclass
class _Image:
    id: int
    file_name: str
    height: int
    width: int


@dataclass
class _Annotation:
    id: int
    image_id: int
    category_id: int
    segmentation: list[list[float]] | dict
    iscrowd: int = 0
    area: float = 0


@dataclass
class _Rle:
    size: list[int]
    counts: list[int] | str


def category_lookup(spec: DatasetSpec) -> dict[int, int]:
    """COCO category id -> class id (1..80)."""
    return {cat: index + 1 for index, cat in enumerate(spec.category_ids)}


def convert_coco(
    annotations: Path,
    out: Path,
    split: str,
    spec: DatasetSpec,
    progress: Callable[[int, int], None] | None = None,
) -> int:
    """Write `SegmentationClass/<split>2014/<id>.png`, `ImageSets/<split>.txt` and
    `cls_labels/<split>_cls.txt` below `out`; returns the number of images written.

    Raises:
        InputError: naming the file and the image or annotation at fault (see the module
            docstring for what is checked).
    """
    try:
        from pycocotools import mask as mask_utils
    except ImportError as exc:  # pragma: no cover - pycocotools ships with the dev extra
        raise InputError(
            "the COCO converter needs pycocotools: pip install 'wsssbed[coco]'"
        ) from exc
    images, by_image = read_instances(annotations, spec)
    lookup = category_lookup(spec)
    folder = out / "SegmentationClass" / f"{split}2014"
    ids, label_lines = [], []
    for done, image in enumerate(sorted(images, key=lambda i: i.file_name), start=1):
        height, width = image.height, image.width
        mask = np.zeros((height, width), dtype=np.uint8)
        anns = by_image.get(image.id, [])
        for ann in (a for a in anns if a.iscrowd):
            mask[_decode(mask_utils, ann.segmentation, height, width)] = 255
        for ann in sorted((a for a in anns if not a.iscrowd), key=lambda a: a.area, reverse=True):
            mask[_decode(mask_utils, ann.segmentation, height, width)] = lookup[ann.category_id]
        image_id = Path(image.file_name).stem  # checked by read_instances
        write_png_atomic(inside(folder, f"{image_id}.png"), mask, spec.palette())
        present = sorted(set(np.unique(mask).tolist()) - {0, 255})
        ids.append(image_id)
        label_lines.append(" ".join([image_id, *(str(c - 1) for c in present)]))
        if progress is not None:
            progress(done, len(images))
    write_text(out / "ImageSets" / f"{split}.txt", "\n".join(ids) + "\n")
    write_text(out / "cls_labels" / f"{split}_cls.txt", "\n".join(label_lines) + "\n")
    return len(ids)


def read_instances(
    path: Path, spec: DatasetSpec
) -> tuple[list[_Image], dict[int, list[_Annotation]]]:
    """The images and, per image id, the annotations of an instances file, all checked.

    Polygon segmentations come back as lists of (N, 2)-coordinate lists with degenerate
    polygons dropped; RLE ones as `{"size": [h, w], "counts": ...}`.
    """
    top = from_table(_File, read_json(path, "COCO instance-annotation file"), path, "file",
                     extra=True)  # fmt: skip
    images: dict[int, _Image] = {}
    for index, table in enumerate(top.images):
        image = from_table(_Image, table, path, f"images[{index}]", extra=True)
        where = f"image {image.id} ({image.file_name!r:.60})"
        check_id(Path(image.file_name).stem, "image id", path, f"{where}: ")
        if image.id in images:
            raise InputError(f"{where}: image id {image.id} is listed twice", path)
        if image.height <= 0 or image.width <= 0:
            raise InputError(f"{where}: size {image.height}x{image.width} is empty", path)
        if image.height * image.width > MAX_PIXELS:
            raise InputError(
                f"{where}: {image.width}x{image.height} is above the {MAX_PIXELS:,}-pixel budget",
                path,
            )
        images[image.id] = image
    lookup = category_lookup(spec)
    by_image: dict[int, list[_Annotation]] = {}
    for index, table in enumerate(top.annotations):
        where = _annotation_name(table, index)
        ann = from_table(_Annotation, table, path, where, extra=True)
        image = images.get(ann.image_id)
        if image is None:
            raise InputError(f"{where}: image id {ann.image_id} is not among the images", path)
        if ann.category_id not in lookup:
            raise InputError(f"{where}: unknown category id {ann.category_id}", path)
        if ann.iscrowd not in (0, 1):
            raise InputError(f"{where}: iscrowd must be 0 or 1, got {ann.iscrowd}", path)
        if not _finite(ann.area):
            raise InputError(f"{where}: area must be a finite number", path)
        try:
            ann.segmentation = _checked_segmentation(ann.segmentation, image, path, where)
        except _Bad as exc:
            raise InputError(f"{where}: {exc}", path) from None
        by_image.setdefault(ann.image_id, []).append(ann)
    return list(images.values()), by_image


def _annotation_name(table: object, index: int) -> str:
    """`annotation <id> (annotations[<index>])`, the id only when it is an integer."""
    named = table.get("id") if isinstance(table, dict) else None
    shown = named if isinstance(named, int) and not isinstance(named, bool) else "?"
    return f"annotation {shown} (annotations[{index}])"


class _Bad(Exception):
    """A malformed segmentation; the caller names the annotation."""


def _finite(value: float) -> bool:
    return isinstance(value, int) or math.isfinite(value)


def _checked_segmentation(segmentation, image: _Image, path: Path, where: str):
    height, width = image.height, image.width
    if isinstance(segmentation, dict):
        rle = from_table(_Rle, segmentation, path, f"{where} segmentation", extra=True)
        if rle.size != [height, width]:
            raise _Bad(f"RLE size {rle.size} differs from the image's [{height}, {width}]")
        counts = rle_counts(rle.counts) if isinstance(rle.counts, str) else rle.counts
        if any(c < 0 or c > MAX_COUNT for c in counts):
            raise _Bad("RLE counts must be non-negative 32-bit integers")
        if sum(counts) != height * width:
            raise _Bad(f"RLE counts cover {sum(counts):,} pixels, not the image's "
                       f"{height * width:,}")  # fmt: skip
        return {"size": rle.size, "counts": rle.counts}
    polygons = []
    outline = 0
    for number, polygon in enumerate(segmentation):
        if len(polygon) % 2:
            raise _Bad(f"polygon {number} has an odd number of coordinates")
        if len(polygon) < 6:
            continue  # fewer than three points: no area (as detectron2 drops them)
        if not all(-width <= x <= 2 * width for x in polygon[0::2]) or not all(
            -height <= y <= 2 * height for y in polygon[1::2]
        ):  # NaN fails every comparison
            raise _Bad(f"polygon {number} has a coordinate that is not finite or lies more "
                       f"than one picture size outside the {width}x{height} image")  # fmt: skip
        points = np.asarray(polygon, dtype=np.float64).reshape(-1, 2)
        edges = np.abs(points - np.roll(points, 1, axis=0))
        outline += int(np.ceil(edges.max(axis=1)).sum()) + len(points)
        polygons.append(polygon)
    if outline > OUTLINE_FACTOR * (height + width):
        raise _Bad(f"its polygons' outline is {outline:,} pixels, above {OUTLINE_FACTOR} x "
                   "(height + width) of its image")  # fmt: skip
    return polygons


def rle_counts(text: str) -> list[int]:
    """The run lengths of a compressed COCO RLE string (pycocotools' `rleFrString`):
    5 bits per character (offset 48), bit 0x20 continues a number, bit 0x10 of its last
    character is the sign, and from the fourth count on each is a difference to the
    count two before it.

    Raises:
        _Bad: a character outside '0'..'o', a number cut off at the end, or a count
            outside 0..2^32-1.
    """
    counts: list[int] = []
    value = shift = 0
    for char in text:
        code = ord(char) - 48
        if not 0 <= code < 64:
            raise _Bad(f"RLE string holds {char!r}, outside '0'..'o'")
        value |= (code & 0x1F) << shift
        shift += 5
        if code & 0x20:
            if shift > 35:
                raise _Bad("RLE string holds a number longer than 32 bits")
            continue
        if code & 0x10:
            value -= 1 << shift
        if len(counts) > 2:
            value += counts[-2]
        if not 0 <= value <= MAX_COUNT:
            raise _Bad(f"RLE string decodes to a count of {value}")
        counts.append(value)
        value = shift = 0
    if shift:
        raise _Bad("RLE string ends inside a number")
    return counts


def _decode(mask_utils, segmentation, height: int, width: int) -> np.ndarray:
    """(H, W) bool mask of a checked segmentation (see `read_instances`)."""
    if isinstance(segmentation, list):
        if not segmentation:
            return np.zeros((height, width), dtype=bool)
        rle = mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width))
    elif isinstance(segmentation["counts"], list):
        rle = mask_utils.frPyObjects(segmentation, height, width)
    else:
        rle = segmentation
    return mask_utils.decode(rle).astype(bool)
