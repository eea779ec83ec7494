"""Reading IRN-style pickled `.npy` files without numpy's object machinery.

IRN-family code saves `np.save(path, {"keys": ..., "high_res": ...})`: a 0-d object
array whose pickle holds a dict of two plain arrays. `np.load(allow_pickle=True)` would
run any code a stranger put in the file, and even numpy's own rebuild functions act on
untrusted state (a `dtype.__setstate__` with an object field at a bad offset crashes the
process; `_reconstruct` allocates whatever shape it is told). So nothing from the file
reaches numpy until it has been checked:

- The unpickler resolves only numpy's array, dtype and scalar rebuild names, and
  `_codecs.encode` (protocol-2 pickles from older numpy store bytes that way). It maps
  each to a small stand-in class defined here; no numpy function ever receives the
  file's state.
- A dtype stand-in accepts only a plain numeric type code (`f4`, `<i8`, ...) with the
  state numpy writes for a built-in type: no fields, no sub-arrays, no user-built
  dtypes. The object type `O8` is accepted only as the 0-d top-level container.
- An array stand-in is built only when its declared shape fits the caller's
  `MapBudget`, its byte length equals the shape times the item size, and its data are
  bytes. The array is then a read-only `np.frombuffer` view of those bytes.
- The file's size is checked against the budget before it is read.

What is accepted, and why, is documented in docs/security.md.
"""

from __future__ import annotations

import io
import math
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from wsssbed.errors import InputError
from wsssbed.io.budget import MapBudget
from wsssbed.io.imageio import regular_file
from wsssbed.io.npy import read_header, read_plain_array

NUMERIC_CODES = frozenset(
    f"{kind}{size}"
    for kind, sizes in (("f", (2, 4, 8)), ("i", (1, 2, 4, 8)), ("u", (1, 2, 4, 8)), ("b", (1,)))
    for size in sizes
)
_NUMPY_MODULES = ("numpy.core.multiarray", "numpy._core.multiarray")
_NUMERIC_MODULES = ("numpy.core.numeric", "numpy._core.numeric")


class _Refused(pickle.UnpicklingError):
    """The stream asks for something the reader does not accept."""


class _NdarrayType:
    """Stands for `numpy.ndarray` as the first argument of `_reconstruct`."""


class _Dtype:
    """A numeric (or top-level object) dtype, rebuilt from a type code and checked state."""

    def __init__(self, code: Any, align: Any = False, copy: Any = False) -> None:
        if not isinstance(code, str):
            raise _Refused(f"dtype from {type(code).__name__}: only type codes are accepted")
        bare = code.lstrip("<>|=")
        if bare not in NUMERIC_CODES and bare != "O8":
            raise _Refused(f"dtype {code!r}: only plain numeric types are accepted")
        self.code = bare
        self.order = code[0] if code[0] in "<>|=" else "="
        self.is_object = bare == "O8"

    def __setstate__(self, state: Any) -> None:
        # numpy writes (version, byteorder, subarray, names, fields, elsize, alignment,
        # flags) for a built-in type, with subarray/names/fields None and -1 sizes.
        if not isinstance(state, tuple) or len(state) not in (8, 9) or state[0] not in (3, 4):
            raise _Refused("dtype state is not that of a built-in numpy type")
        _, order, subarray, names, fields, elsize, alignment = state[:7]
        if order not in ("<", ">", "|", "=") or (subarray, names, fields) != (None, None, None):
            raise _Refused("dtype with fields or sub-arrays (a user-built dtype) refused")
        if (elsize, alignment) != (-1, -1):
            raise _Refused("dtype with a custom item size refused")
        self.order = order

    def numpy(self) -> np.dtype:
        dtype = np.dtype(self.code)
        return dtype.newbyteorder(self.order) if self.order in "<>" else dtype


def _plain_bytes(data: Any, what: str) -> bytes:
    if not isinstance(data, (bytes, bytearray)):
        raise _Refused(f"{what} data must be bytes, got {type(data).__name__}")
    return bytes(data)


def _shape(value: Any) -> tuple[int, ...]:
    if not isinstance(value, tuple) or len(value) > 3:
        raise _Refused("array shape must be a tuple of at most 3 sizes")
    if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in value):
        raise _Refused(f"array shape {value!r} is not a tuple of non-negative integers")
    return value


class _Array:
    """`_reconstruct(ndarray, ...)` followed by `__setstate__`: checked, then built."""

    def __init__(self, budget: MapBudget, where: Path, cls: Any) -> None:
        if cls is not _NdarrayType:
            raise _Refused("only plain numpy arrays are accepted")
        self.budget, self.where = budget, where
        self.built = False
        self.value: Any = None

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, tuple) or len(state) not in (4, 5):
            raise _Refused("array state has an unknown layout")
        shape, dtype, fortran, data = state[-4:]
        shape = _shape(shape)
        if not isinstance(dtype, _Dtype):
            raise _Refused("array dtype is not a plain numpy dtype")
        if dtype.is_object:
            if shape != () or not isinstance(data, list) or len(data) != 1:
                raise _Refused("object arrays are accepted only as the 0-d top-level container")
            self.value, self.built = data[0], True
            return
        self.value = _from_bytes(data, dtype.numpy(), shape, bool(fortran), self.budget, self.where)
        self.built = True


def _from_bytes(
    data: Any, dtype: np.dtype, shape: tuple[int, ...], fortran: bool, budget, where
) -> np.ndarray:
    budget.check_declared(shape, dtype.itemsize, where)
    raw = _plain_bytes(data, "array")
    count = math.prod(shape)
    if len(raw) != count * dtype.itemsize:
        raise _Refused(
            f"array of shape {shape} needs {count * dtype.itemsize:,} bytes, has {len(raw):,}"
        )
    # read-only over the pickle's bytes (no copy); `MapFormat.read` copies what it keeps
    array = np.frombuffer(raw, dtype=dtype, count=count)
    return array.reshape(shape, order="F" if fortran else "C")


class _Unpickler(pickle.Unpickler):
    """Maps the few names IRN pickles use to the stand-ins above; refuses all others."""

    def __init__(self, stream: io.BytesIO, budget: MapBudget, where: Path) -> None:
        super().__init__(stream)
        self.budget, self.where = budget, where

    def find_class(self, module: str, name: str) -> Any:
        if module in _NUMPY_MODULES and name == "_reconstruct":
            return lambda cls, shape, code: _Array(self.budget, self.where, cls)
        if module == "numpy" and name == "ndarray":
            return _NdarrayType
        if module == "numpy" and name == "dtype":
            return _Dtype
        if module in _NUMPY_MODULES and name == "scalar":
            return self._scalar
        if module in _NUMERIC_MODULES and name == "_frombuffer":
            return self._frombuffer
        if (module, name) == ("_codecs", "encode"):
            return _latin1
        if module.startswith("torch"):
            raise _Refused(f"holds a pickled torch object ({module}.{name}); save numpy arrays")
        raise _Refused(f"refers to {module}.{name}, which is not a numpy array type")

    def _scalar(self, dtype: Any, data: Any = None) -> Any:
        if not isinstance(dtype, _Dtype) or dtype.is_object:
            raise _Refused("scalar of a non-numeric type refused")
        return _from_bytes(data, dtype.numpy(), (), False, self.budget, self.where)[()]

    def _frombuffer(self, data: Any, dtype: Any, shape: Any, order: Any) -> np.ndarray:
        if not isinstance(dtype, _Dtype) or dtype.is_object:
            raise _Refused("buffer of a non-numeric type refused")
        fortran = order == "F"
        return _from_bytes(data, dtype.numpy(), _shape(shape), fortran, self.budget, self.where)


def _latin1(text: Any, encoding: Any = "utf-8") -> bytes:
    """`_codecs.encode` as protocol-2 pickles use it: a latin-1 str back to its bytes."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise _Refused("_codecs.encode is accepted only for latin-1 text (old numpy bytes)")
    return text.encode("latin-1")


def _resolve(value: Any, depth: int = 0) -> Any:
    """Replace the array stand-ins by their arrays, in plain containers."""
    if depth > 8:
        raise _Refused("containers nested more than 8 deep")
    if isinstance(value, _Array):
        if not value.built:
            raise _Refused("an array was never given its data")
        return _resolve(value.value, depth + 1)
    if isinstance(value, dict):
        return {_resolve(k, depth + 1): _resolve(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_resolve(v, depth + 1) for v in value)
    if isinstance(value, (_Dtype, _NdarrayType)) or value is _NdarrayType:
        raise _Refused("a bare dtype or array type is not map data")
    return value


def load_npy(path: Path, budget: MapBudget) -> Any:
    """Load an IRN-style `.npy`: a pickled object of plain arrays and containers.

    A plain (unpickled) array is read when its header fits the budget.

    Raises:
        InputError: missing, non-regular, over-budget or corrupt file, or a pickle that
            asks for anything but plain numeric arrays in dicts, lists and tuples.
    """
    size = regular_file(path)
    budget.check_file(size, path)
    try:
        with open(path, "rb") as stream:
            header = read_header(stream)
            if not header[2].hasobject:
                return read_plain_array(stream, header, budget, path)
            payload = stream.read()
    except (ValueError, OSError, EOFError) as exc:
        raise InputError(f"not a valid .npy file: {exc}", path) from exc
    try:
        return _resolve(_Unpickler(io.BytesIO(payload), budget, path).load())
    except InputError:
        raise
    except pickle.UnpicklingError as exc:
        raise InputError(f"unsafe or corrupt pickle refused: {exc}", path) from exc
    except Exception as exc:  # any failure inside a corrupt stream is a bad file
        raise InputError(f"corrupt pickled .npy: {type(exc).__name__}: {exc}", path) from exc
