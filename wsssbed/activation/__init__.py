"""Activation sources: precomputed map formats (`formats/`, one module each) and the
CLIP Grad-CAM generator (`clip_cam.py`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from wsssbed.activation.base import (
    FORMATS,
    ActivationMaps,
    MapFormat,
    map_format,
    validate_activation,
)
from wsssbed.datasets.spec import DatasetSpec


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


__all__ = [
    "FORMATS",
    "ActivationMaps",
    "MapFormat",
    "list_activation_ids",
    "map_format",
    "read_activation",
    "validate_activation",
    "write_activation",
]
