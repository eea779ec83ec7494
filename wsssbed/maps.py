"""Readers and writers of activation, saliency and label-map formats, with validation.

Formats (one folder per source, files named by image id):

- ``irn-npy``: ``<id>.npy`` holding a pickled dict with ``keys`` (0-based foreground
  class indices, shape (K,)) and ``high_res`` or ``cam`` (float32, K x H x W), as
  IRN-family code writes it. Read through a restricted unpickler (`safe_pickle`).
- ``png-per-class``: ``<id>_<key>.png`` per foreground class, 8-bit, value / 255 (WSSS-BED).
- ``npz``: ``<id>.npz`` with arrays ``keys`` (K,) and ``cams`` (K, H, W); no pickle.
- saliency ``png``: ``<id>.png``, 8-bit, value / 255 (RGB is converted to luminance).
- label maps: ``<id>.png``, class ids, 255 = unlabelled.

All activation values are float32 in [0, 1] and must be finite.
"""

from __future__ import annotations

import io
import zipfile
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from wsssbed.datasets.spec import DatasetSpec
from wsssbed.errors import InputError
from wsssbed.imageio import read_png_array, write_atomic, write_png_atomic
from wsssbed.safe_pickle import load_npy

ACTIVATION_FORMATS = ("irn-npy", "png-per-class", "npz")


@dataclass(frozen=True)
class ActivationMaps:
    """Activation maps of one image.

    Attributes:
        class_ids: (K,) int64 dataset class ids (background excluded), ascending.
        cams: (K, H, W) float32 scores in [0, 1].
    """

    class_ids: np.ndarray
    cams: np.ndarray


def list_activation_ids(folder: Path, fmt: str) -> dict[str, tuple[int, ...] | None]:
    """Image ids with maps in `folder`: id -> 0-based keys (png-per-class) or None."""
    check_format(fmt)
    if not folder.is_dir():
        raise InputError("activation folder not found", folder)
    found: dict[str, tuple[int, ...] | None] = {}
    if fmt == "png-per-class":
        keys: dict[str, list[int]] = defaultdict(list)
        for entry in folder.iterdir():
            stem, _, key = entry.name.removesuffix(".png").rpartition("_")
            if entry.suffix == ".png" and stem and key.isdigit():
                keys[stem].append(int(key))
        found = {image_id: tuple(sorted(k)) for image_id, k in keys.items()}
    else:
        suffix = ".npy" if fmt == "irn-npy" else ".npz"
        found = {p.name[: -len(suffix)]: None for p in folder.iterdir() if p.name.endswith(suffix)}
    return found


def list_png_ids(folder: Path) -> set[str]:
    """Image ids of `<id>.png` files in a saliency or label-map folder."""
    if not folder.is_dir():
        raise InputError("folder not found", folder)
    return {p.name[:-4] for p in folder.iterdir() if p.name.endswith(".png")}


def check_format(fmt: str) -> None:
    """Refuse an unknown activation format name."""
    if fmt not in ACTIVATION_FORMATS:
        raise InputError(f"unknown activation format {fmt!r}; use one of {ACTIVATION_FORMATS}")


def activation_file(folder: Path, image_id: str, fmt: str, key: int | None = None) -> Path:
    """Path of an image's map file (png-per-class: the file of 0-based `key`)."""
    if fmt == "irn-npy":
        return folder / f"{image_id}.npy"
    if fmt == "npz":
        return folder / f"{image_id}.npz"
    return folder / f"{image_id}_{key}.png"


def read_activation(
    folder: Path,
    image_id: str,
    fmt: str,
    spec: DatasetSpec,
    keys: tuple[int, ...] | None = None,
) -> ActivationMaps:
    """Read one image's activation maps (unvalidated against ground truth; see `validate`).

    Args:
        keys: 0-based foreground keys to read for png-per-class (from the folder listing).
    """
    check_format(fmt)
    if fmt == "png-per-class":
        if not keys:
            raise InputError(f"no activation maps `{image_id}_<class>.png`", folder)
        planes = [read_png_array(activation_file(folder, image_id, fmt, k)) for k in keys]
        shapes = {p.shape for p in planes}
        if len(shapes) != 1:
            raise InputError(
                f"per-class maps of {image_id} differ in size: {sorted(shapes)}", folder
            )
        cams = np.stack(planes).astype(np.float32) / np.float32(255.0)
        return ActivationMaps(spec.foreground_class_ids(np.array(keys)), cams)
    path = activation_file(folder, image_id, fmt)
    if fmt == "npz":
        raw_keys, cams = _read_npz(path)
    else:
        raw_keys, cams = _read_irn_npy(path)
    raw_keys = np.asarray(raw_keys)
    if raw_keys.ndim != 1 or raw_keys.dtype.kind not in "iu":
        raise InputError(
            f"`keys` must be a 1-D integer array, got {raw_keys.dtype} {raw_keys.shape}", path
        )
    cams = np.asarray(cams)
    if cams.dtype.kind != "f":
        raise InputError(f"maps must be floating point, got {cams.dtype}", path)
    if cams.ndim != 3 or cams.shape[0] != raw_keys.shape[0]:
        raise InputError(
            f"maps have shape {cams.shape}, expected ({raw_keys.shape[0]}, H, W) to match `keys`",
            path,
        )
    if len(set(raw_keys.tolist())) != raw_keys.shape[0]:
        raise InputError("`keys` lists a class twice", path)
    order = np.argsort(raw_keys, kind="stable")
    class_ids = spec.foreground_class_ids(raw_keys[order])
    return ActivationMaps(class_ids, np.ascontiguousarray(cams[order], dtype=np.float32))


def _read_irn_npy(path: Path) -> tuple[np.ndarray, np.ndarray]:
    content = load_npy(path)
    if not isinstance(content, dict) or "keys" not in content:
        raise InputError("expected a pickled dict with `keys` and `high_res` (or `cam`)", path)
    for name in ("high_res", "cam"):
        if isinstance(content.get(name), np.ndarray):
            return content["keys"], content[name]
    raise InputError("dict has no numpy `high_res` or `cam` array", path)


def _read_npz(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as archive:
            if "keys" not in archive or "cams" not in archive:
                raise InputError(
                    f"needs arrays `keys` and `cams`, has {sorted(archive.files)}", path
                )
            return archive["keys"], archive["cams"]
    except FileNotFoundError as exc:
        raise InputError("file not found", path) from exc
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
        raise InputError(f"not a valid .npz file: {exc}", path) from exc


def validate_activation(
    maps: ActivationMaps,
    gt_shape: tuple[int, int],
    labels: tuple[int, ...],
    spec: DatasetSpec,
    where: Path,
) -> None:
    """Check a map against its image: size, finiteness, range and class keys.

    Args:
        gt_shape: (H, W) of the ground truth.
        labels: the image's image-level labels (dataset class ids).
        where: file or folder named in errors.
    """
    if maps.cams.shape[1:] != tuple(gt_shape):
        raise InputError(
            f"map size {maps.cams.shape[1]}x{maps.cams.shape[2]} differs from the ground "
            f"truth's {gt_shape[0]}x{gt_shape[1]} (H x W)",
            where,
        )
    ids = maps.class_ids
    if ids.size and (ids.min() < spec.first_foreground or ids.max() >= spec.num_classes):
        raise InputError(
            f"class keys {spec.foreground_keys(ids).tolist()} fall outside the "
            f"dataset's {spec.num_classes - spec.first_foreground} foreground "
            "classes",
            where,
        )
    outside = sorted(set(ids.tolist()) - set(labels))
    if outside:
        names = [spec.classes[c] for c in outside]
        raise InputError(
            f"maps for classes {names} that the image is not labelled with "
            f"(labels: {[spec.classes[c] for c in labels]})",
            where,
        )
    if not np.isfinite(maps.cams).all():
        raise InputError("maps contain NaN or infinite values", where)
    if maps.cams.size and (maps.cams.min() < 0.0 or maps.cams.max() > 1.0):
        raise InputError(
            f"map values span [{maps.cams.min():.4g}, {maps.cams.max():.4g}], "
            "outside [0, 1]; normalise them first",
            where,
        )


def write_activation(
    folder: Path, image_id: str, fmt: str, spec: DatasetSpec, maps: ActivationMaps
) -> None:
    """Write one image's maps in `fmt`, atomically per file."""
    check_format(fmt)
    keys = spec.foreground_keys(maps.class_ids)
    cams = np.asarray(maps.cams, dtype=np.float32)
    if fmt == "png-per-class":
        for key, plane in zip(keys.tolist(), cams):
            quantised = np.rint(np.clip(plane, 0.0, 1.0) * 255.0).astype(np.uint8)
            write_png_atomic(activation_file(folder, image_id, fmt, key), quantised)
        return
    buffer = io.BytesIO()
    if fmt == "npz":
        np.savez_compressed(buffer, keys=keys, cams=cams)
    else:
        np.save(buffer, {"keys": keys, "high_res": cams}, allow_pickle=True)
    payload = buffer.getvalue()
    write_atomic(activation_file(folder, image_id, fmt), lambda f: f.write(payload))


def read_saliency(folder: Path, image_id: str) -> np.ndarray:
    """HxW float32 saliency in [0, 1]: the 8-bit value / 255 in float32 (WSSS-BED)."""
    return read_png_array(folder / f"{image_id}.png", gray=True).astype(np.float32) / np.float32(
        255.0
    )


def read_saliency_u8(folder: Path, image_id: str) -> np.ndarray:
    """HxW uint8 saliency as stored."""
    return read_png_array(folder / f"{image_id}.png", gray=True)


def write_saliency(folder: Path, image_id: str, saliency_u8: np.ndarray) -> None:
    """Write an HxW uint8 saliency map as `<id>.png`."""
    write_png_atomic(folder / f"{image_id}.png", saliency_u8)


def read_label_map(folder: Path, image_id: str) -> np.ndarray:
    """HxW uint8 class ids of a hard label map (255 = unlabelled)."""
    return read_png_array(folder / f"{image_id}.png")


def write_label_map(folder: Path, image_id: str, labels: np.ndarray, palette: list[int]) -> None:
    """Write an HxW uint8 label map as a palette PNG, atomically."""
    write_png_atomic(folder / f"{image_id}.png", labels, palette)
