"""Activation maps of one image, the map-format interface, and the checks every format shares.

A format is one class in one module of `wsssbed.activation.formats`, registered in
`FORMATS` under the name users type (`--activation-format`): it lists a folder, names
its files, reads and writes one image's maps, and says which files its digest covers.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from wsssbed.datasets.spec import DatasetSpec
from wsssbed.errors import InputError
from wsssbed.io.budget import MapBudget
from wsssbed.registry import Registry


@dataclass(frozen=True)
class ActivationMaps:
    """Activation maps of one image.

    Attributes:
        class_ids: (K,) int64 dataset class ids (background excluded), ascending.
        cams: (K, H, W) float32 scores in [0, 1].
    """

    class_ids: np.ndarray
    cams: np.ndarray


class MapFormat:
    """One way of storing activation maps (see the module docstring).

    Attributes:
        name: the registered name.
        pattern: file-name pattern for messages (`<id>.npy`).
    """

    name: str = ""
    pattern: str = ""
    quantised: bool = False  # `read_raw` gives uint8 maps u, scored as u / 255

    def list_ids(self, folder: Path) -> dict[str, tuple[int, ...] | None]:
        """Image ids with maps in `folder`: id -> 0-based keys (when the names carry them)."""
        raise NotImplementedError

    def is_map_file(self, name: str) -> bool:
        """Whether a file of this name belongs to the maps (what a folder digest covers)."""
        raise NotImplementedError

    def where(self, folder: Path, image_id: str) -> Path:
        """The file (or folder) that errors about an image's maps name."""
        raise NotImplementedError

    def read_raw(
        self, folder: Path, image_id: str, keys: tuple[int, ...] | None, budget: MapBudget
    ) -> tuple[np.ndarray, np.ndarray]:
        """(keys, cams) as stored: 0-based foreground keys (K,) and maps (K, H, W),
        floating point (uint8 for `quantised` formats).

        Declared sizes are checked against `budget` before any data is read.
        """
        raise NotImplementedError

    def write(self, folder: Path, image_id: str, keys: np.ndarray, cams: np.ndarray) -> None:
        """Write one image's maps (0-based keys, float32 cams), atomically per file."""
        raise NotImplementedError

    def read(
        self,
        folder: Path,
        image_id: str,
        spec: DatasetSpec,
        keys: tuple[int, ...] | None = None,
        shape: tuple[int, int] | None = None,
    ) -> ActivationMaps:
        """Read one image's maps as class ids and float32 planes, keys ascending (a copy
        of `read_stored`'s planes).

        Args:
            shape: the ground truth's (H, W); declared map sizes must match it before
                anything is read (None: any size within `MAX_PIXELS`).

        Checked here: key and map dtypes and shapes, duplicate keys. Checked against the
        image by `validate_activation`: size, range, finiteness, labels.
        """
        return self.read_stored(folder, image_id, spec, keys, shape).as_maps()

    def read_stored(
        self,
        folder: Path,
        image_id: str,
        spec: DatasetSpec,
        keys: tuple[int, ...] | None = None,
        shape: tuple[int, int] | None = None,
    ) -> StoredMaps:
        """`read` without the copy: the planes as the file holds them, in its order (the
        same checks)."""
        path = self.where(folder, image_id)
        budget = MapBudget(spec.num_classes - spec.first_foreground, shape)
        raw_keys, cams = self.read_raw(folder, image_id, keys, budget)
        raw_keys = np.asarray(raw_keys)
        if raw_keys.ndim != 1 or raw_keys.dtype.kind not in "iu":
            raise InputError(
                f"`keys` must be a 1-D integer array, got {raw_keys.dtype} {raw_keys.shape}", path
            )
        cams = np.asarray(cams)
        if cams.dtype.kind != "f" and not (self.quantised and cams.dtype == np.uint8):
            raise InputError(f"maps must be floating point, got {cams.dtype}", path)
        if cams.ndim != 3 or cams.shape[0] != raw_keys.shape[0]:
            raise InputError(
                f"maps have shape {cams.shape}, expected ({raw_keys.shape[0]}, H, W) to match "
                "`keys`",
                path,
            )
        if len(set(raw_keys.tolist())) != raw_keys.shape[0]:
            raise InputError("`keys` lists a class twice", path)
        order = np.argsort(raw_keys, kind="stable")
        return StoredMaps(spec.foreground_class_ids(raw_keys[order]), cams, order, path)


@dataclass(frozen=True)
class StoredMaps:
    """One image's maps as its file holds them (`MapFormat.read_stored`).

    Attributes:
        class_ids: (K,) int64 dataset class ids, ascending.
        planes: (K, H, W) scores in the file's order and dtype, possibly read-only views
            of the file's bytes: floating point, or uint8 u scored as float32(u) / 255
            (`quantised` formats).
        order: (K,) int64 index into `planes` of each of `class_ids`.
        where: the file (or folder) errors about these maps name.
    """

    class_ids: np.ndarray
    planes: np.ndarray
    order: np.ndarray
    where: Path

    @property
    def quantised(self) -> bool:
        return self.planes.dtype == np.uint8

    def as_maps(self) -> ActivationMaps:
        """The maps as float32 planes in ascending class order (a copy)."""
        cams = self.planes[self.order]
        if self.quantised:
            return ActivationMaps(self.class_ids, cams.astype(np.float32) / np.float32(255.0))
        return ActivationMaps(self.class_ids, np.ascontiguousarray(cams, dtype=np.float32))


FORMATS: Registry[type[MapFormat]] = Registry("activation format", "wsssbed.activation.formats")


def map_format(name: str) -> MapFormat:
    """The registered format `name` (an error names the closest one)."""
    return FORMATS.get(name, "activation format")()


def validate_activation(
    maps: ActivationMaps,
    gt_shape: tuple[int, int],
    labels: tuple[int, ...],
    spec: DatasetSpec,
    where: Path,
) -> None:
    """Check a map against its image: size, class keys, labels, finiteness and range, in
    that order (the first failure is reported).

    Args:
        gt_shape: (H, W) of the ground truth.
        labels: the image's image-level labels (dataset class ids).
        where: file or folder named in errors.
    """
    check_size_and_keys(maps.cams.shape, maps.class_ids, gt_shape, spec, where)
    check_labels(maps.class_ids, labels, spec, where)
    check_values(maps.cams, where)


def check_size_and_keys(
    shape: tuple[int, ...],
    ids: np.ndarray,
    gt_shape: tuple[int, int],
    spec: DatasetSpec,
    where: Path,
) -> None:
    """`validate_activation`'s first checks: the maps' (K, H, W) size and class ids."""
    if tuple(shape[1:]) != tuple(gt_shape):
        raise InputError(
            f"map size {shape[1]}x{shape[2]} differs from the ground "
            f"truth's {gt_shape[0]}x{gt_shape[1]} (H x W)",
            where,
        )
    if ids.size and (ids.min() < spec.first_foreground or ids.max() >= spec.num_classes):
        raise InputError(
            f"class keys {spec.foreground_keys(ids).tolist()} fall outside the "
            f"dataset's {spec.num_classes - spec.first_foreground} foreground "
            "classes",
            where,
        )


def check_labels(ids: np.ndarray, labels: tuple[int, ...], spec: DatasetSpec, where: Path) -> None:
    """`validate_activation`'s label check: maps only for the image's labels."""
    outside = sorted(set(ids.tolist()) - set(labels))
    if outside:
        names = [spec.classes[c] for c in outside]
        raise InputError(
            f"maps for classes {names} that the image is not labelled with "
            f"(labels: {[spec.classes[c] for c in labels]})",
            where,
        )


def check_values(cams: np.ndarray, where: Path) -> None:
    """`validate_activation`'s value checks: finite, within [0, 1]."""
    if not np.isfinite(cams).all():
        raise InputError("maps contain NaN or infinite values", where)
    if cams.size and (cams.min() < 0.0 or cams.max() > 1.0):
        raise InputError(
            f"map values span [{cams.min():.9g}, {cams.max():.9g}], "
            "outside [0, 1]; normalise them first",
            where,
        )
