"""Loading `.npy` files that hold pickled objects without running code from them.

IRN-family code saves `np.save(path, {"keys": ..., "high_res": ...})`, which pickles a
dict. `np.load(..., allow_pickle=True)` would let a crafted file run any code. Here the
pickle stream is read by an unpickler that resolves only the few numpy globals needed to
rebuild arrays, dtypes and scalars; dicts, lists, tuples, strings and numbers need no
globals at all. Anything else is refused before it is called.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

import numpy as np
from numpy.lib import format as npy_format

from wsssbed.errors import InputError

_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
}


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Resolves only the numpy globals in `_ALLOWED_GLOBALS`; refuses everything else."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED_GLOBALS:
            return super().find_class(module, name)
        if module.startswith("torch"):
            raise pickle.UnpicklingError(
                f"holds a pickled torch object ({module}.{name}); save numpy arrays instead"
            )
        raise pickle.UnpicklingError(f"refers to {module}.{name}, which is not a numpy array type")


def load_npy(path: Path) -> Any:
    """Load a `.npy` file: a plain array, or a pickled object through the safe unpickler.

    Raises:
        InputError: missing or corrupt file, or a pickle that refers to anything but
            numpy arrays, dtypes, scalars and plain containers.
    """
    try:
        with open(path, "rb") as stream:
            version = npy_format.read_magic(stream)
            if version == (1, 0):
                _, _, dtype = npy_format.read_array_header_1_0(stream)
            elif version in ((2, 0), (3, 0)):
                _, _, dtype = npy_format.read_array_header_2_0(stream)
            else:
                raise ValueError(f"unsupported .npy version {version}")
            if not dtype.hasobject:
                stream.seek(0)
                return np.load(stream, allow_pickle=False)
            payload = stream.read()
    except FileNotFoundError as exc:
        raise InputError("file not found", path) from exc
    except (ValueError, OSError, EOFError) as exc:
        raise InputError(f"not a valid .npy file: {exc}", path) from exc
    try:
        loaded = _NumpyOnlyUnpickler(io.BytesIO(payload)).load()
    except pickle.UnpicklingError as exc:
        raise InputError(f"unsafe or corrupt pickle refused: {exc}", path) from exc
    except Exception as exc:  # any failure inside a corrupt stream is a bad file
        raise InputError(f"corrupt pickled .npy: {type(exc).__name__}: {exc}", path) from exc
    if isinstance(loaded, np.ndarray) and loaded.dtype == object and loaded.shape == ():
        return loaded.item()
    return loaded
