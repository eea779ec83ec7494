"""Validate a local copy of a dataset split: counts, unreadable files, unknown labels."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, UnidentifiedImageError

from wsssbed.datasets.local import LocalDataset
from wsssbed.errors import InputError


@dataclass
class CheckReport:
    """Outcome of `check_dataset`.

    Attributes:
        valid_masks: masks that decoded and hold only known labels.
        problems: (file, problem) pairs, in split order.
        class_pixels: (K,) labelled pixels per class over the valid masks.
        images_checked: RGB images found and checked (0 when the copy has none).
        expected: the published size of the split, when it is a published split.
    """

    dataset: str
    split: str
    total: int
    valid_masks: int = 0
    images_checked: int = 0
    expected: int | None = None
    problems: list[tuple[str, str]] = field(default_factory=list)
    class_pixels: np.ndarray | None = None

    @property
    def ok(self) -> bool:
        """No file problem (a split of unpublished size is fine: subsets are allowed)."""
        return not self.problems


def _check_one(dataset: LocalDataset, image_id: str) -> tuple[np.ndarray | None, list, bool]:
    problems = []
    counts = None
    try:
        gt = dataset.read_gt(image_id)
        counts = np.bincount(gt.ravel(), minlength=256)[: dataset.spec.num_classes]
    except InputError as error:
        problems.append((str(error.path or image_id), error.problem))
        gt = None
    image_seen = False
    image_path = dataset.image_path(image_id)
    if image_path is not None:
        image_seen = True
        try:
            with Image.open(image_path) as image:
                size = image.size[::-1]
                image.verify()
            if gt is not None and size != gt.shape:
                problems.append(
                    (
                        str(image_path),
                        f"image is {size[0]}x{size[1]}, mask is {gt.shape[0]}x{gt.shape[1]}",
                    )
                )
        except FileNotFoundError:
            problems.append((str(image_path), "image file not found"))
        except (UnidentifiedImageError, OSError, SyntaxError) as exc:
            problems.append((str(image_path), f"cannot decode image: {exc}"))
    return counts, problems, image_seen


def check_dataset(
    dataset: LocalDataset, threads: int = 4, progress: Callable[[int, int], None] | None = None
) -> CheckReport:
    """Decode every mask of the split (and its image, when the copy has images)."""
    ids = dataset.ids
    report = CheckReport(
        dataset.spec.name, dataset.split, len(ids), expected=dataset.spec.splits.get(dataset.split)
    )
    totals = np.zeros(dataset.spec.num_classes, dtype=np.int64)
    with ThreadPoolExecutor(max_workers=threads) as pool:
        for done, (counts, problems, image_seen) in enumerate(
            pool.map(lambda i: _check_one(dataset, i), ids), start=1
        ):
            if counts is not None and not any(p[0].endswith(".png") for p in problems):
                report.valid_masks += 1
                totals += counts
            report.problems.extend(problems)
            report.images_checked += int(image_seen)
            if progress is not None:
                progress(done, len(ids))
    report.class_pixels = totals
    return report
