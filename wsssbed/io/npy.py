"""Reading `.npy` streams (files or zip members) whose headers are checked first."""

from __future__ import annotations

import math
import tokenize
from pathlib import Path
from typing import BinaryIO

import numpy as np
from numpy.lib import format as npy_format

from wsssbed.errors import InputError
from wsssbed.io.budget import MapBudget


def read_header(stream: BinaryIO) -> tuple[tuple[int, ...], bool, np.dtype]:
    """(shape, fortran order, dtype) from an `.npy` header; the stream is left at the data.

    Raises:
        ValueError: not an `.npy` stream, an unknown version, a header numpy cannot parse
            (its own parser raises several kinds of error: all become this one), or a
            shape that is not a tuple of non-negative sizes.
    """
    try:
        version = npy_format.read_magic(stream)
        if version == (1, 0):
            header = npy_format.read_array_header_1_0(stream)
        elif version in ((2, 0), (3, 0)):
            header = npy_format.read_array_header_2_0(stream)
        else:
            raise ValueError(f"unsupported .npy version {version}")
    except (SyntaxError, tokenize.TokenError, TypeError, MemoryError, RecursionError) as exc:
        raise ValueError(f"the header does not parse ({type(exc).__name__}: {exc})") from exc
    shape = header[0]
    if not all(isinstance(n, int) and n >= 0 for n in shape):
        raise ValueError(f"the header declares shape {shape}, not non-negative sizes")
    return header


def read_plain_array(
    stream: BinaryIO,
    header: tuple[tuple[int, ...], bool, np.dtype],
    budget: MapBudget,
    where: Path,
    what: str = "array",
) -> np.ndarray:
    """The array after `header`: plain numbers only, its shape within `budget`, and no
    more bytes read (or inflated, for a zip member) than that shape needs."""
    shape, fortran, dtype = header
    if dtype.hasobject or dtype.kind not in "fiub" or dtype.fields is not None:
        raise InputError(f"{what} has dtype {dtype}: plain numbers only", where)
    budget.check_declared(shape, dtype.itemsize, where)
    data = bytearray(math.prod(shape) * dtype.itemsize)
    view, filled = memoryview(data), 0
    while filled < len(data):
        got = stream.readinto(view[filled:])
        if not got:
            raise InputError(f"{what} ends after {filled:,} of {len(data):,} bytes", where)
        filled += got
    return np.frombuffer(data, dtype=dtype).reshape(shape, order="F" if fortran else "C")
