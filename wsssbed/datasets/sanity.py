"""Is the ground truth what the dataset says it is? Checks with a cause and a fix.

Each check catches a mistake researchers make that would otherwise score silently wrong
or fail with a message that misleads (issue 23):

- `check_split`: a split list under an official name that is not the official list
  (compared with the spec's `split_digests`, or its published size where no digest is
  known);
- `missing_masks_hint`: a split whose masks are in none of the folders read (VOC's
  SegmentationClass alone for train_aug), with how to get the ones that are needed;
- `void_warning`: a class that never occurs while the void looks like it (a binary
  dataset's masks holding only 0 and 255, a class the image-level labels list, or most
  pixels void): 255 used as a class label, so the class is never scored and the rest
  looks perfect.

Masks already reduced, raw ids under the wrong storage, JPEG bytes and colour-coded masks
are caught where masks are read (`local.py`, `wsssbed.io.imageio`, `colours.py`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from wsssbed.datasets.fingerprint import short, split_digest
from wsssbed.datasets.spec import DatasetSpec, GroundTruthSource

#: Above this share of void pixels, a class that never occurs is warned about in any
#: dataset (VOC's own masks: 5.5% void over a split, at most 40% over 4 images).
VOID_MAJORITY = 0.5
#: A data root holding this file is synthetic (wsssbed's embedded sample): its split lists
#: are its own, not the dataset's, so no verdict on official lists is recorded.
SYNTHETIC = "SYNTHETIC.txt"


@dataclass(frozen=True)
class SplitCheck:
    """Whether a split's ids are the official list.

    Attributes:
        official: True: the ids' `split_digest` is the spec's; False: the digest or the
            count differs; None: nothing to compare with (an id file, a synthetic data
            root, a split the spec does not publish, or a published size without a digest
            that matches).
        message: why it is not the official list, what it is likely to be, what it means.
        reason: the message's first part: what the list holds and what it is likely to be.
    """

    official: bool | None
    message: str | None = None
    reason: str | None = None


def check_split(spec: DatasetSpec, split: str, ids: list[str], where: Path | None) -> SplitCheck:
    """Compare the ids a named split lists with the spec's official fingerprint.

    Args:
        split: the split name (not an id file: those are marked by their name).
        where: the list file (or mask folder) the ids came from, for the message.
    """
    if split not in spec.splits:
        return SplitCheck(None)
    expected = spec.splits[split]
    digest = split_digest(ids)
    pinned = spec.split_digests.get(split)
    if pinned == digest or (pinned is None and len(ids) == expected):
        return SplitCheck(True if pinned else None)
    same = [name for name, d in spec.split_digests.items() if d == digest and name != split]
    if same:
        likely = f"these are the official {same[0]} ids: use `split` {same[0]}"
    elif len(ids) != expected:
        likely = f"a subset or another list saved under the name {split!r}"
    else:
        likely = (
            f"as many ids as the official list, but other ones (digest {short(digest)}, "
            f"official {short(pinned)})"
        )
    if where is None:
        source = "the split has"
    else:
        source = f"{where} holds masks of" if where.is_dir() else f"{where} lists"
    reason = (f"{source} {len(ids):,} images, not the official {spec.name} {split} "
              f"({expected:,} images): {likely}")  # fmt: skip
    return SplitCheck(
        False,
        f"{reason}. The run is scored and stored marked as not the official list "
        f"(`split_official` false), since its numbers are not comparable with {split} "
        "results elsewhere; give an id file (`split` FILE.txt) to score part of a split on "
        "purpose",
        reason,
    )


def missing_masks_hint(
    spec: DatasetSpec, root: Path, split: str, chosen: GroundTruthSource | None
) -> str:
    """How to get the masks a split needs when the storage read lacks some: the advice of
    a storage the spec prefers that is not on disk, else how to prepare the dataset."""
    for source in spec.ground_truth:
        if source == chosen:
            break
        folder = root / source.folder.replace("{split}", split)
        if not folder.is_dir() and source.missing:
            return source.missing
    from wsssbed.datasets import BUILTIN

    if spec.name in BUILTIN:
        return (
            f"`wsssbed datasets prepare {spec.name} --from ... --out NEW_ROOT` builds the "
            "whole layout from the official files (docs/datasets.md)"
        )
    return "check the data root and the dataset spec's [[ground_truth]] folders"


def void_warning(
    spec: DatasetSpec,
    gt_pixels: np.ndarray,
    void_ratio: float,
    labelled: frozenset[int] = frozenset(),
) -> str | None:
    """A warning when a class never occurs in the ground truth and the void looks like it:
    255 used as that class's label, so it is never scored and the rest can look perfect.

    A foreground class that never occurs is suspect, with any void at all, when
    - the dataset has one foreground class (a binary mask stored as 0 and 255: the object
      is void, whatever its size), or
    - the run's image-level labels (a label-list file) list it: the labels say it is
      there, no mask holds it;
    and, for any dataset, when most of the ground truth is void (`VOID_MAJORITY`).
    Thresholds measured on VOC (docs/datasets.md): runs on VOC's own masks never warn,
    though their void borders cover 5.5% of the pixels (up to 40% over 4 images).

    Args:
        gt_pixels: (K,) labelled ground-truth pixels per class over the run.
        void_ratio: void (255) pixels / all mask pixels of the run.
        labelled: class ids the run's image-level labels list (none when the labels
            come from the masks themselves).
    """
    absent = [k for k in np.flatnonzero(np.asarray(gt_pixels) == 0).tolist()
              if not (spec.has_background and k == 0)]  # fmt: skip
    if not absent or not void_ratio > 0:
        return None
    binary = spec.num_classes - int(spec.has_background) == 1
    listed = [k for k in absent if k in labelled]
    if binary:
        why = "the dataset has one foreground class and the masks hold only background and void"
    elif listed:
        absent, why = listed, "the image-level labels list it, but no mask holds it"
    elif void_ratio > VOID_MAJORITY:
        why = "most of the ground truth is void"
    else:
        return None
    names = ", ".join(spec.classes[k] for k in absent[:5])
    more = f" and {len(absent) - 5} more" if len(absent) > 5 else ""
    return (
        f"{void_ratio:.0%} of the ground-truth pixels are void (255) and class "
        f"{names}{more} never occurs in it: is 255 used as a class label (a binary mask "
        f"storing the object as 255)? ({why}.) Void pixels are not scored, so that class is never "
        "counted and the others can look perfect. Store each class as its id (e.g. "
        "`mask[mask == 255] = 1`), or give a dataset spec whose classes match the stored "
        "values"
    )
