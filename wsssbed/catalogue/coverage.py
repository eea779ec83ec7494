"""Does a folder of maps cover a manifest's split exactly, as its format lays it out?

A catalogue entry knows its dataset, split and format, so before a user's first local
copy is pinned as that entry's maps, the copy must hold exactly the files the format
lays out for that split: one `<id>.<ext>` per image for single-file formats and saliency
maps; for `png-per-class`, one `<id>_<key>.png` for each of the image's labels (the
classes present in its mask, as the sweep reads them) and nothing else. Files that are
not maps (a README) are ignored, as the digest ignores them.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from wsssbed.activation import map_format
from wsssbed.catalogue.manifest import Manifest
from wsssbed.datasets.local import LocalDataset, labels_from_mask
from wsssbed.errors import InputError
from wsssbed.io.imageio import list_png_ids
from wsssbed.saliency.maps import SALIENCY_FORMAT

Progress = Callable[[int, int], None]
PER_CLASS = "png-per-class"  # the format whose file names carry the image's labels
SHOWN = 3  # examples named per problem


def _first(items: list[str]) -> str:
    return ", ".join(items[:SHOWN]) + (", ..." if len(items) > SHOWN else "")


def _images(count: int) -> str:
    return f"{count:,} image" + ("" if count == 1 else "s")


def _label_keys(dataset: LocalDataset, progress: Progress | None) -> dict[str, set[int]]:
    """Each image's labels as 0-based foreground keys (the keys per-class file names use),
    read from its mask."""
    spec = dataset.spec
    keys = {}
    for done, image_id in enumerate(dataset.ids, start=1):
        labels = labels_from_mask(dataset.read_gt(image_id), spec)
        keys[image_id] = set(spec.foreground_keys(labels).tolist())
        if progress is not None:
            progress(done, len(dataset.ids))
    return keys


def check_coverage(
    manifest: Manifest, folder: Path, dataset: LocalDataset, progress: Progress | None = None
) -> None:
    """Refuse `folder` unless it holds exactly the maps of `manifest`'s split.

    Args:
        dataset: the manifest's split below the user's data root (ids and masks).
        progress: called with (masks read, total) while reading labels (per-class only).

    Raises:
        InputError: naming the folder, with the counts of missing and extra images (and,
            for per-class files, of images whose label files differ) and examples.
    """
    fmt = manifest.content.format
    if fmt == SALIENCY_FORMAT:
        found: dict[str, tuple[int, ...] | None] = dict.fromkeys(list_png_ids(folder))
        pattern = "<id>.png"
    else:
        layout = map_format(fmt)
        found, pattern = layout.list_ids(folder), layout.pattern
    ids = dataset.ids
    wanted = set(ids)
    missing = [i for i in ids if i not in found]
    extra = sorted(set(found) - wanted)
    problems = []
    if missing:
        problems.append(f"{_images(len(missing))} of the split without maps ({_first(missing)})")
    if extra:
        problems.append(f"maps of {_images(len(extra))} outside the split ({_first(extra)})")
    if fmt == PER_CLASS and not missing:
        labels = _label_keys(dataset, progress)
        lacking = [f"{i} {sorted(labels[i] - set(found[i] or ()))}" for i in ids
                   if labels[i] - set(found[i] or ())]  # fmt: skip
        unlabelled = [f"{i} {sorted(set(found[i] or ()) - labels[i])}" for i in ids
                      if set(found[i] or ()) - labels[i]]  # fmt: skip
        if lacking:
            problems.append(
                f"missing maps of labelled classes for {_images(len(lacking))} (image and "
                f"keys: {_first(lacking)})"
            )
        if unlabelled:
            problems.append(
                f"maps of classes the image is not labelled with for "
                f"{_images(len(unlabelled))} ({_first(unlabelled)})"
            )
    if problems:
        spec = dataset.spec
        raise InputError(
            f"this copy does not cover {manifest.ref}'s split {spec.name}/{manifest.split} "
            f"exactly: the split has {_images(len(ids))}, the folder {fmt} maps "
            f"({pattern}) of {len(found):,}; " + "; ".join(problems) + ". Nothing was "
            "registered: a copy is pinned as a catalogue entry only when it holds that "
            "entry's maps, all of them and nothing else",
            folder,
        )
