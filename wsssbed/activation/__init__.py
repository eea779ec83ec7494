"""Activation sources: precomputed map formats (`formats/`, one module each, registered
in `FORMATS`), read, written, checked and digested through one door. Generators that
compute maps (CLIP Grad-CAM) live in `wsssbed.generators`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from wsssbed.activation.base import (
    FORMATS,
    ActivationMaps,
    MapFormat,
    map_format,
    validate_activation,
)
from wsssbed.activation.detect import AUTO, Detection, detect_format, resolve_format
from wsssbed.datasets.spec import DatasetSpec
from wsssbed.io.digest import FolderDigest, folder_digest
from wsssbed.saliency.maps import SALIENCY_FORMAT, is_saliency_file


def list_activation_ids(folder: Path, fmt: str) -> dict[str, tuple[int, ...] | None]:
    """Image ids with maps in `folder`: id -> 0-based keys (png-per-class) or None."""
    return map_format(fmt).list_ids(folder)


def read_activation(
    folder: Path,
    image_id: str,
    fmt: str,
    spec: DatasetSpec,
    keys: tuple[int, ...] | None = None,
    shape: tuple[int, int] | None = None,
) -> ActivationMaps:
    """Read one image's maps in format `fmt` (see `MapFormat.read`)."""
    return map_format(fmt).read(folder, image_id, spec, keys, shape)


def write_activation(
    folder: Path, image_id: str, fmt: str, spec: DatasetSpec, maps: ActivationMaps
) -> None:
    """Write one image's maps in format `fmt`, atomically per file."""
    keys = spec.foreground_keys(maps.class_ids)
    map_format(fmt).write(folder, image_id, keys, np.asarray(maps.cams, dtype=np.float32))


def map_file_rule(fmt: str) -> Callable[[str], bool]:
    """Which file names belong to a map folder of activation format `fmt` (each format's
    own rule), or of saliency maps (`png`)."""
    return is_saliency_file if fmt == SALIENCY_FORMAT else map_format(fmt).is_map_file


def digest_maps(
    folder: Path, fmt: str, progress: Callable[[int, int], None] | None = None
) -> FolderDigest:
    """The content digest of a map folder of format `fmt` (`auto`: the one it holds;
    `wsssbed.io.digest`)."""
    fmt = resolve_format(folder, fmt)
    return folder_digest(folder, map_file_rule(fmt), fmt, progress)


__all__ = [
    "AUTO",
    "FORMATS",
    "ActivationMaps",
    "Detection",
    "MapFormat",
    "detect_format",
    "digest_maps",
    "list_activation_ids",
    "map_file_rule",
    "map_format",
    "read_activation",
    "resolve_format",
    "validate_activation",
    "write_activation",
]
