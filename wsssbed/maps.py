"""Saliency maps and label maps: one `<id>.png` per image (activation maps: `activation/`).

- saliency: 8-bit, value / 255 (RGB is converted to luminance, as WSSS-BED does).
- label maps: class ids, 255 = unlabelled.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from wsssbed.errors import InputError
from wsssbed.imageio import read_png_array, write_png_atomic


def list_png_ids(folder: Path) -> set[str]:
    """Image ids of `<id>.png` files in a saliency or label-map folder."""
    if not folder.is_dir():
        raise InputError("folder not found", folder)
    return {p.name[:-4] for p in folder.iterdir() if p.name.endswith(".png")}


def read_saliency(
    folder: Path, image_id: str, expected: tuple[int, int] | None = None
) -> np.ndarray:
    """HxW float32 saliency in [0, 1]: the 8-bit value / 255 in float32 (WSSS-BED);
    `expected` (H, W) is checked from the header before decoding."""
    stored = read_png_array(folder / f"{image_id}.png", gray=True, expected=expected)
    return stored.astype(np.float32) / np.float32(255.0)


def read_saliency_u8(folder: Path, image_id: str) -> np.ndarray:
    """HxW uint8 saliency as stored."""
    return read_png_array(folder / f"{image_id}.png", gray=True)


def write_saliency(folder: Path, image_id: str, saliency_u8: np.ndarray) -> None:
    """Write an HxW uint8 saliency map as `<id>.png`."""
    write_png_atomic(folder / f"{image_id}.png", saliency_u8)


def read_label_map(
    folder: Path, image_id: str, expected: tuple[int, int] | None = None
) -> np.ndarray:
    """HxW uint8 class ids of a hard label map (255 = unlabelled); `expected` (H, W) is
    checked from the header before decoding."""
    return read_png_array(folder / f"{image_id}.png", expected=expected)


def write_label_map(folder: Path, image_id: str, labels: np.ndarray, palette: list[int]) -> None:
    """Write an HxW uint8 label map as a palette PNG, atomically."""
    write_png_atomic(folder / f"{image_id}.png", labels, palette)
