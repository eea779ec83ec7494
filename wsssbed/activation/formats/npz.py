"""`npz`: `<id>.npz` with arrays `keys` (K,) and `cams` (K, H, W); no pickle (wsssbed's own)."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np

from wsssbed.activation.base import FORMATS
from wsssbed.activation.formats.single_file import SingleFileFormat
from wsssbed.errors import InputError
from wsssbed.imageio import write_atomic


@FORMATS.register("npz")
class Npz(SingleFileFormat):
    name = "npz"
    suffix = ".npz"

    def read_raw(
        self, folder: Path, image_id: str, keys: tuple[int, ...] | None
    ) -> tuple[np.ndarray, np.ndarray]:
        path = self.where(folder, image_id)
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

    def write(self, folder: Path, image_id: str, keys: np.ndarray, cams: np.ndarray) -> None:
        buffer = io.BytesIO()
        np.savez_compressed(buffer, keys=keys, cams=cams)
        payload = buffer.getvalue()
        write_atomic(self.where(folder, image_id), lambda f: f.write(payload))
