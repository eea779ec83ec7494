"""Ground-truth fingerprints: which masks, decoded and mapped, a run scored.

Two labs with the same label arrays agree whatever PNG encoder wrote their files, and
one changed pixel changes the fingerprint. All digests are `sha256:` + 64 hex digits:

- image hash: sha256 of the mapped (H, W) uint8 array's height and width (two
  little-endian uint32) followed by its bytes in row-major order;
- `gt_digest`: sha256 over the images sorted by id (Python's code-point order), each
  contributing its id in UTF-8, a NUL byte and its 32-byte image hash;
- `split_digest`: sha256 of the sorted ids, each followed by a newline.

Sorting makes both independent of the order a split file lists its ids in.

A run's subset (the images it scored) is identified by its `split_digest`, never by a
name: two different id files both called `ids.txt` are two subsets, and the same ids under
two names are one (`subset_of`, `with_subsets`).
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import PurePath
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

SHORT = 12  # hex digits shown by `results show` and the leaderboard
SUBSET_PREFIX = 8  # hex digits of `split_digest` that tell subsets apart in their names


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


@dataclass(frozen=True)
class Subset:
    """The images a run scored.

    Attributes:
        key: its identity, the `split_digest` (`split:<name>` for runs stored before results
            schema 4, which did not record one).
        name: how reports show it: the official split name (`train`), marked `(not the
            official list)` when its ids are not the spec's official list
            (`split_official` false, so it is never compared with the official split), or
            an id file's stem and the digest's first `SUBSET_PREFIX` hex digits
            (`hard@3f2a9c1e`).
    """

    key: str
    name: str


def subset_of(run: Mapping) -> Subset:
    """A stored run's subset, from its `split`, `split_file` and `split_digest` columns."""
    digest = run.get("split_digest")
    split = str(run.get("split"))
    if not isinstance(digest, str) or not digest:
        return Subset(f"split:{split}", split)
    if isinstance(run.get("split_file"), str):  # an id-list file: its stem names it
        return Subset(digest, f"{PurePath(split).stem}@{_prefix(digest)}")
    return Subset(digest, split if is_official(run) else f"{split}{UNOFFICIAL}")


def is_official(run: Mapping) -> bool:
    """Whether a stored run's split is its dataset's official list (`split_official`; runs
    stored before it was recorded, and id-list files, count as official here)."""
    official = run.get("split_official")
    return official is None or official != official or bool(official)  # null, NaN, True


UNOFFICIAL = " (not the official list)"


def _prefix(digest: str) -> str:
    return digest.removeprefix("sha256:")[:SUBSET_PREFIX]


def with_subsets(runs: pd.DataFrame) -> pd.DataFrame:
    """`runs` with `subset_key` and `subset` (the name) columns from `subset_of`.

    A name that two different subsets share in `runs` (a split name whose id list differs
    between data roots) gets the digest's prefix too, so no two subsets read alike.
    """
    found = [subset_of(run) for _, run in runs.iterrows()]
    keys = [s.key for s in found]
    names = [s.name for s in found]
    shared = {n for n in names if len({k for k, m in zip(keys, names) if m == n}) > 1}
    names = [
        f"{n}@{_prefix(k)}" if n in shared and k.startswith("sha256:") else n
        for k, n in zip(keys, names)
    ]
    return runs.assign(subset_key=keys, subset=names)


def mixed_ground_truth(runs: pd.DataFrame) -> dict[tuple[str, str], list[str]]:
    """(dataset, subset name) scored on more than one ground truth -> their short
    fingerprints. Subsets are told apart by `split_digest` (`with_subsets`, applied here
    unless `runs` has its columns already), not by name.

    A run without a fingerprint (stored before results schema 4) counts as "-", unknown.
    """
    mixed = {}
    if "subset_key" not in runs:
        runs = with_subsets(runs)
    for (dataset, _), group in runs.groupby(["dataset", "subset_key"], sort=True):
        found = sorted({short(d) for d in group.gt_digest})
        if len(found) > 1:
            mixed[(dataset, group.subset.iloc[0])] = found
    return mixed
