"""Convert COCO 2014 instance annotations into WSSS semantic masks (classes 0..80).

Each image's mask starts as background (0); non-crowd instances are painted largest
first, so a small object on top of a large one stays visible; crowd regions not covered
by an instance become void (255). The class of a category is its position in the
category-id order (person = 1 ... toothbrush = 80).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from wsssbed.datasets.spec import DatasetSpec
from wsssbed.errors import InputError
from wsssbed.io.imageio import write_png_atomic
from wsssbed.io.names import check_id
from wsssbed.io.outputs import inside


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
    `cls_labels/<split>_cls.txt` below `out`; returns the number of images written."""
    try:
        from pycocotools import mask as mask_utils
    except ImportError as exc:  # pragma: no cover - pycocotools ships with the dev extra
        raise InputError(
            "the COCO converter needs pycocotools: pip install 'wsssbed[coco]'"
        ) from exc
    try:
        data = json.loads(annotations.read_text(encoding="utf-8"))
        images = data["images"]
        instances = data["annotations"]
    except FileNotFoundError as exc:
        raise InputError("annotation file not found", annotations) from exc
    except (json.JSONDecodeError, KeyError, UnicodeDecodeError) as exc:
        raise InputError(f"not a COCO instance-annotation file: {exc}", annotations) from exc
    lookup = category_lookup(spec)
    by_image: dict[int, list[dict]] = {}
    for ann in instances:
        if ann["category_id"] not in lookup:
            raise InputError(
                f"annotation {ann.get('id')} has unknown category id {ann['category_id']}",
                annotations,
            )
        by_image.setdefault(ann["image_id"], []).append(ann)
    folder = out / "SegmentationClass" / f"{split}2014"
    ids, label_lines = [], []
    for done, image in enumerate(sorted(images, key=lambda i: i["file_name"]), start=1):
        image_id = check_id(Path(image["file_name"]).stem, "image id", annotations)
        height, width = image["height"], image["width"]
        mask = np.zeros((height, width), dtype=np.uint8)
        anns = by_image.get(image["id"], [])
        for ann in (a for a in anns if a.get("iscrowd", 0)):
            mask[_decode(mask_utils, ann, height, width)] = 255
        for ann in sorted(
            (a for a in anns if not a.get("iscrowd", 0)),
            key=lambda a: a.get("area", 0),
            reverse=True,
        ):
            mask[_decode(mask_utils, ann, height, width)] = lookup[ann["category_id"]]
        write_png_atomic(inside(folder, f"{image_id}.png"), mask, spec.palette())
        present = sorted(set(np.unique(mask).tolist()) - {0, 255})
        ids.append(image_id)
        label_lines.append(" ".join([image_id, *(str(c - 1) for c in present)]))
        if progress is not None:
            progress(done, len(images))
    (out / "ImageSets").mkdir(parents=True, exist_ok=True)
    (out / "cls_labels").mkdir(parents=True, exist_ok=True)
    (out / "ImageSets" / f"{split}.txt").write_text("\n".join(ids) + "\n")
    (out / "cls_labels" / f"{split}_cls.txt").write_text("\n".join(label_lines) + "\n")
    return len(ids)


def _decode(mask_utils, ann: dict, height: int, width: int) -> np.ndarray:
    segmentation = ann["segmentation"]
    if isinstance(segmentation, list):
        rles = mask_utils.frPyObjects(segmentation, height, width)
        rle = mask_utils.merge(rles)
    elif isinstance(segmentation.get("counts"), list):
        rle = mask_utils.frPyObjects(segmentation, height, width)
    else:
        rle = segmentation
    return mask_utils.decode(rle).astype(bool)
