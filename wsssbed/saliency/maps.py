"""Saliency maps: one 8-bit `<id>.png` per image, value / 255 (RGB is converted to
luminance, as WSSS-BED does). Activation maps: `wsssbed.activation`."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from wsssbed.io.imageio import read_png_array, write_png_atomic
from wsssbed.io.outputs import inside

SALIENCY_FORMAT = "png"  # the format name of saliency folders in manifests: `<id>.png`


def is_saliency_file(name: str) -> bool:
    """Whether a file name belongs to a saliency folder."""
    return name.endswith(".png")


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
    write_png_atomic(inside(folder, f"{image_id}.png"), saliency_u8)
