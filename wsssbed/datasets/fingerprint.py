"""Ground-truth fingerprints: which masks, decoded and mapped, a run scored.

Two labs with the same label arrays agree whatever PNG encoder wrote their files, and
one changed pixel changes the fingerprint. All digests are `sha256:` + 64 hex digits:

- image hash: sha256 of the mapped (H, W) uint8 array's height and width (two
  little-endian uint32) followed by its bytes in row-major order;
- `gt_digest`: sha256 over the images sorted by id (Python's code-point order), each
  contributing its id in UTF-8, a NUL byte and its 32-byte image hash;
- `split_digest`: sha256 of the sorted ids, each followed by a newline.

Sorting makes both independent of the order a split file lists its ids in.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

SHORT = 12  # hex digits shown by `results show` and the leaderboard


def image_hash(gt: np.ndarray) -> bytes:
    """32-byte sha256 of one mapped (H, W) uint8 mask (shape, then bytes)."""
    height, width = gt.shape
    digest = hashlib.sha256(struct.pack("<II", height, width))
    digest.update(np.ascontiguousarray(gt, dtype=np.uint8).data)
    return digest.digest()


def gt_digest(hashes: Mapping[str, bytes]) -> str:
    """Fingerprint of a run's ground truth from its image hashes (id -> `image_hash`)."""
    digest = hashlib.sha256()
    for image_id in sorted(hashes):
        digest.update(image_id.encode("utf-8") + b"\0" + hashes[image_id])
    return "sha256:" + digest.hexdigest()


def split_digest(ids: Iterable[str]) -> str:
    """Fingerprint of the set of image ids a run scored."""
    text = "".join(f"{image_id}\n" for image_id in sorted(ids))
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()


def short(digest: object) -> str:
    """The first `SHORT` hex digits of a digest, for tables ("-" when there is none)."""
    if not isinstance(digest, str) or not digest:
        return "-"
    return digest.removeprefix("sha256:")[:SHORT]


def scored_split(run: Mapping) -> str:
    """How a stored run's split is shown and grouped: its name, marked `(not the official
    list)` when its ids are not the spec's official list (`split_official` false), so
    it is never compared with runs on the official split."""
    official = run.get("split_official")
    if official is None or official != official or bool(official):  # null, NaN, True
        return str(run["split"])
    return f"{run['split']}{UNOFFICIAL}"


UNOFFICIAL = " (not the official list)"


def mixed_ground_truth(runs: pd.DataFrame) -> dict[tuple[str, str], list[str]]:
    """(dataset, split) scored on more than one ground truth -> their short fingerprints
    (the split as `scored_split` shows it).

    A run without a fingerprint (stored before results schema 4) counts as "-", unknown.
    """
    mixed = {}
    shown = runs.assign(split=[scored_split(run) for _, run in runs.iterrows()])
    for (dataset, split), group in shown.groupby(["dataset", "split"], sort=True):
        found = sorted({short(d) for d in group.gt_digest})
        if len(found) > 1:
            mixed[(dataset, split)] = found
    return mixed
