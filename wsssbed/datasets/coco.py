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
  `MAX_PIXELS` budget (the mask is allocated at that size), and distinct mask names
  (the `file_name` without folder and suffix: `a.jpg` and `a.png` would write one mask);
- annotations: a known image and category, `iscrowd` 0 or 1, a finite `area`;
- polygons: finite coordinates within one picture size of the picture on each side, and
  an outline of at most `OUTLINE_FACTOR` x (height + width) pixels (pycocotools
  allocates about 120 bytes per outline pixel); polygons of fewer than three points are
  dropped, as detectron2 does (COCO holds a few);
- RLE: `size` equal to the picture's, counts non-negative and summing to height x width;
  a compressed `counts` string is decoded here first (pycocotools' LEB128-like format);
- work: an annotation is decoded only over the columns it covers (the whole picture for
  an RLE), and the areas decoded for one image may add up to at most `MAX_LAYERS` times
  its own (so ten thousand tiny polygons on a 64-megapixel picture cost their strips,
  not ten thousand passes over the picture).
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
#: The areas decoded for one image (the columns a polygon covers, the whole picture for
#: an RLE) may add up to at most this many times the picture (COCO 2014 has at most 93
#: annotations on an image).
MAX_LAYERS = 128


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
            _paint(mask, mask_utils, ann.segmentation, 255)
        for ann in sorted((a for a in anns if not a.iscrowd), key=lambda a: a.area, reverse=True):
            _paint(mask, mask_utils, ann.segmentation, lookup[ann.category_id])
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
    named: dict[str, _Image] = {}  # mask name -> the image it names
    for index, table in enumerate(top.images):
        image = from_table(_Image, table, path, f"images[{index}]", extra=True)
        where = f"image {image.id} ({image.file_name!r:.60})"
        stem = check_id(Path(image.file_name).stem, "image id", path, f"{where}: ")
        if image.id in images:
            raise InputError(f"{where}: image id {image.id} is listed twice", path)
        if stem in named:
            raise InputError(
                f"{where} and image {named[stem].id} ({named[stem].file_name!r:.60}) would "
                f"both write mask {stem}.png (a mask is named by the file name without its "
                "folder and suffix); rename one",
                path,
            )
        named[stem] = image
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
    decoded: dict[int, int] = {}  # image id -> pixels its annotations decode
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
        decoded[image.id] = decoded.get(image.id, 0) + _decoded_area(ann.segmentation, image)
        if decoded[image.id] > MAX_LAYERS * image.height * image.width:
            raise InputError(
                f"{where}: the annotations of image {image.id} cover more than {MAX_LAYERS} "
                f"times its {image.width}x{image.height} pixels (the columns each polygon "
                "spans, the whole picture for an RLE); a crafted file",
                path,
            )
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


def _columns(polygons: list[list[float]], width: int) -> int:
    """Columns of the picture a polygon annotation can paint (its x-range and a pixel of
    pycocotools' rounding on each side, within the picture)."""
    xs = [x for polygon in polygons for x in polygon[0::2]]
    return max(0, min(width, math.ceil(max(xs)) + 2) - max(0, math.floor(min(xs)) - 1))


def _decoded_area(segmentation, image: _Image) -> int:
    """Pixels `_paint` decodes for a checked segmentation, at most: the full-height strip
    of the columns a polygon can paint; the whole picture for an RLE."""
    if isinstance(segmentation, dict):
        return image.height * image.width
    return _columns(segmentation, image.width) * image.height if segmentation else 0


def _paint(mask: np.ndarray, mask_utils, segmentation, value: int) -> None:
    """Set `value` where a checked segmentation (see `read_instances`) covers `mask` (H, W).

    pycocotools makes the annotation's RLE (column-major runs over the whole picture,
    its cost grows with the outline), and only the strip of columns its runs cover is
    decoded here: the pixels are exactly pycocotools' `decode`, without a pass over the
    whole picture per annotation."""
    height, width = mask.shape
    if isinstance(segmentation, list):
        if not segmentation:
            return
        rle = mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width))
    elif isinstance(segmentation["counts"], list):
        rle = mask_utils.frPyObjects(segmentation, height, width)
    else:
        rle = segmentation
    counts = rle["counts"]
    counts = rle_counts(counts.decode("ascii") if isinstance(counts, bytes) else counts)
    edges = np.cumsum([0, *counts], dtype=np.int64)  # run k covers edges[k]..edges[k + 1]
    starts, ends = edges[1:-1:2], edges[2::2]  # runs of ones: the odd runs
    starts, ends = starts[ends > starts], ends[ends > starts]
    if not starts.size:
        return
    first, last = int(starts[0]) // height, (int(ends[-1]) - 1) // height + 1
    offset = first * height
    change = np.zeros((last - first) * height + 1, dtype=np.int8)
    np.add.at(change, starts - offset, 1)
    np.add.at(change, ends - offset, -1)
    strip = (np.cumsum(change[:-1]) > 0).reshape(last - first, height).T
    mask[:, first:last][strip] = value
