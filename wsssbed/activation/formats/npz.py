"""`npz`: `<id>.npz` with arrays `keys` (K,) and `cams` (K, H, W); no pickle (wsssbed's own)."""

from __future__ import annotations

import io
import zipfile
import zlib
from pathlib import Path

import numpy as np

from wsssbed.activation.base import FORMATS
from wsssbed.activation.formats.single_file import SingleFileFormat
from wsssbed.errors import InputError
from wsssbed.io.budget import MapBudget
from wsssbed.io.imageio import regular_file, write_atomic
from wsssbed.io.npy import read_header, read_plain_array


@FORMATS.register("npz")
class Npz(SingleFileFormat):
    name = "npz"
    suffix = ".npz"

    def read_raw(
        self, folder: Path, image_id: str, keys: tuple[int, ...] | None, budget: MapBudget
    ) -> tuple[np.ndarray, np.ndarray]:
        path = self.where(folder, image_id)
        budget.check_file(regular_file(path), path)
        try:
            with zipfile.ZipFile(path) as archive:
                names = set(archive.namelist())
                if not {"keys.npy", "cams.npy"} <= names:
                    found = sorted(n.removesuffix(".npy") for n in names)
                    raise InputError(f"needs arrays `keys` and `cams`, has {found}", path)
                return tuple(  # type: ignore[return-value]
                    _read_member(archive, name, budget, path) for name in ("keys.npy", "cams.npy")
                )
        except (ValueError, OSError, zipfile.BadZipFile, EOFError, zlib.error) as exc:
            raise InputError(f"not a valid .npz file: {exc}", path) from exc

    def write(self, folder: Path, image_id: str, keys: np.ndarray, cams: np.ndarray) -> None:
        buffer = io.BytesIO()
        np.savez_compressed(buffer, keys=keys, cams=cams)
        payload = buffer.getvalue()
        write_atomic(self.where(folder, image_id), lambda f: f.write(payload))


def _read_member(archive: zipfile.ZipFile, name: str, budget: MapBudget, path: Path) -> np.ndarray:
    """One `.npy` member, its zip sizes and header checked before anything is inflated."""
    budget.check_file(archive.getinfo(name).file_size, path)
    with archive.open(name) as stream:
        return read_plain_array(stream, read_header(stream), budget, path, f"`{name[:-4]}`")
