"""One integer field of a MATLAB v5 `.mat` file, read without trusting its headers.

SBD stores each mask as `GTcls.Segmentation` inside a (usually zlib-compressed) struct.
`scipy.io.loadmat` inflates and allocates whatever the file declares (a 1.78 MB file can
claim gigabytes) and `scipy.io.whosmat` sees only top-level variables, so this module
walks the elements itself (MathWorks, "MAT-File Format", version 5/7):

- the 128-byte header (level-5 text, version 0x0100, `IM`/`MI` byte order); v4 and
  v7.3 (HDF5) files are refused;
- data elements (tag: type and byte count, or the 4-byte "small element" form), and
  `miCOMPRESSED` elements inflated as a stream with a budget on the inflated bytes;
- inside the wanted variable (a 1x1 struct), each field's array flags, dimensions and
  name: the wanted field must be a real, non-logical, 2-D array of an integer class
  stored as integers, with at most `MAX_PIXELS` elements, and its data element must
  hold exactly that many values. Only then is its data read, in chunks, each checked
  against both ends of the allowed range before it is stored as uint8.

Everything else (other variables and fields: SBD's `Boundaries` cells of sparse
matrices, `CategoriesPresent`) is skipped: seeked over in an uncompressed file, inflated
into a small buffer and dropped in a compressed one. Nothing is allocated beyond the
field's (H, W) uint8 result and one chunk.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path
from typing import BinaryIO

import numpy as np

from wsssbed.errors import InputError
from wsssbed.io.imageio import MAX_PIXELS, regular_file

HEADER_BYTES = 128
CHUNK = 1 << 20
#: Most bytes one compressed element may inflate to: the largest legitimate field
#: (`MAX_PIXELS` values of 8 bytes) plus room for the file's other fields and headers.
MAX_INFLATED = 8 * MAX_PIXELS + (64 << 20)
MAX_NAMES = 1 << 16  # bytes of field names one struct may declare

MI_INT8, MI_INT32, MI_UINT32, MI_MATRIX, MI_COMPRESSED = 1, 5, 6, 14, 15
MX_STRUCT = 2
#: Storage types that hold integers (miINT8 ... miUINT64) and their numpy codes.
INTEGER_TYPES = {1: "i1", 2: "u1", 3: "i2", 4: "u2", 5: "i4", 6: "u4", 12: "i8", 13: "u8"}
#: Array classes that are integers (mxINT8 ... mxUINT64).
INTEGER_CLASSES = {8: "int8", 9: "uint8", 10: "int16", 11: "uint16", 12: "int32",
                   13: "uint32", 14: "int64", 15: "uint64"}  # fmt: skip
CLASS_NAMES = {1: "cell", 2: "struct", 3: "object", 4: "char", 5: "sparse", 6: "double",
               7: "single", **INTEGER_CLASSES}  # fmt: skip
FLAG_COMPLEX, FLAG_LOGICAL = 0x08, 0x02


class _Bad(Exception):
    """A malformed element; becomes an InputError naming the file."""


class _Source:
    """Bytes of one element's body: the file itself or an inflating zlib stream, read
    exactly, with a limit on how many bytes it may deliver."""

    def __init__(self, stream: BinaryIO, limit: int, compressed: int | None = None) -> None:
        self.stream, self.limit, self.used = stream, limit, 0
        self.left = compressed  # compressed bytes still in the file (None: plain)
        self.inflater = zlib.decompressobj() if compressed is not None else None
        self.buffer = b""

    def read(self, count: int) -> bytes:
        if count > self.limit - self.used:
            raise _Bad(f"an element claims {count:,} more bytes than the file can hold")
        self.used += count
        if self.inflater is None:
            data = self.stream.read(count)
            if len(data) != count:
                raise _Bad("the file ends inside an element")
            return data
        while len(self.buffer) < count:
            self._inflate(count - len(self.buffer))
        data, self.buffer = self.buffer[:count], self.buffer[count:]
        return data

    def _inflate(self, wanted: int) -> None:
        assert self.inflater is not None and self.left is not None
        pending = self.inflater.unconsumed_tail
        if not pending:
            if self.left <= 0 or self.inflater.eof:
                raise _Bad("a compressed element ends inside a value")
            pending = self.stream.read(min(CHUNK, self.left))
            self.left -= len(pending)
            if not pending:
                raise _Bad("the file ends inside a compressed element")
        try:
            self.buffer += self.inflater.decompress(pending, max(wanted, CHUNK))
        except zlib.error as exc:
            raise _Bad(f"corrupt compressed element: {exc}") from exc

    def skip(self, count: int) -> None:
        if count < 0:
            raise _Bad("an array holds more than its element declares")
        if self.inflater is None and count <= self.limit - self.used:
            self.used += count
            self.stream.seek(count, 1)
            return
        while count:
            count -= len(self.read(min(count, CHUNK)))


def _tag(source: _Source, order: str) -> tuple[int, int, bytes | None]:
    """(type, byte count, data of a small element or None) of the next element."""
    first, second = struct.unpack(order + "II", source.read(8))
    if first >> 16:  # small element: type and count in one word, data in the next
        if first >> 16 > 4:
            raise _Bad(f"a small element claims {first >> 16} bytes; it holds at most 4")
        data = struct.pack(order + "I", second)[: first >> 16]
        return first & 0xFFFF, first >> 16, data
    return first, second, None


def _padded(count: int) -> int:
    return (count + 7) // 8 * 8


def _element(source: _Source, order: str, kind: int, what: str, unit: int = 1,
             exact: int | None = None) -> bytes:  # fmt: skip
    """The data of the next element, which must be of type `kind`, at most MAX_NAMES bytes,
    a whole number of `unit`-byte values, and `exact` bytes when given."""
    found, count, small = _tag(source, order)
    if found != kind:
        raise _Bad(f"{what}: expected element type {kind}, found {found}")
    if count > MAX_NAMES or count % unit or (exact is not None and count != exact):
        wanted = f"{exact}" if exact is not None else f"a multiple of {unit}"
        raise _Bad(f"{what} declares {count:,} bytes, not {wanted}")
    if small is not None:
        return small
    data = source.read(count)
    source.skip(_padded(count) - count)
    return data


def _matrix_header(source: _Source, order: str) -> tuple[int, int, tuple[int, ...], str]:
    """(class, flags, dims, name) at the start of a miMATRIX body."""
    flags = _element(source, order, MI_UINT32, "array flags", exact=8)
    flags_word = struct.unpack(order + "II", flags)[0]
    dims_data = _element(source, order, MI_INT32, "dimensions", unit=4)
    dims = struct.unpack(order + f"{len(dims_data) // 4}i", dims_data)
    if len(dims) < 2 or min(dims) < 0:
        raise _Bad(f"dimensions {dims} are not an array's")
    name = _element(source, order, MI_INT8, "array name").decode("latin-1")
    return flags_word & 0xFF, (flags_word >> 8) & 0xFF, dims, name


def _field_names(source: _Source, order: str) -> list[str]:
    length_data = _element(source, order, MI_INT32, "field name length", exact=4)
    length = struct.unpack(order + "i", length_data)[0]
    names = _element(source, order, MI_INT8, "field names")
    if length <= 0 or len(names) % length:
        raise _Bad(f"field names of length {length} do not divide {len(names)} bytes")
    chunks = [names[i : i + length] for i in range(0, len(names), length)]
    return [c.split(b"\0", 1)[0].decode("latin-1") for c in chunks]


def _integer_data(
    source: _Source, order: str, dims: tuple[int, ...], max_value: int, what: str
) -> np.ndarray:
    """(H, W) uint8 from the data element after an integer array's header, chunk by chunk."""
    kind, count, small = _tag(source, order)
    if kind not in INTEGER_TYPES:
        raise _Bad(f"{what} is stored as element type {kind}, not as integers")
    dtype = np.dtype(INTEGER_TYPES[kind]).newbyteorder(order)
    height, width = dims
    if count != height * width * dtype.itemsize:
        raise _Bad(f"{what} declares {height}x{width} values but holds {count:,} bytes")
    flat = np.empty(height * width, dtype=np.uint8)
    step = max(CHUNK // dtype.itemsize, 1)
    for start in range(0, flat.size, step):
        stop = min(start + step, flat.size)
        raw = small if small is not None else source.read((stop - start) * dtype.itemsize)
        values = np.frombuffer(raw, dtype=dtype)[: stop - start]
        low, high = int(values.min()), int(values.max())
        if low < 0 or high > max_value:
            bad = low if low < 0 else high
            raise _Bad(f"{what} holds {bad}, outside 0..{max_value}")
        flat[start:stop] = values
    if small is None:
        source.skip(_padded(count) - count)
    return flat.reshape(width, height).T.copy()  # MATLAB stores columns first


def _wanted_field(
    source: _Source, order: str, field: str, max_value: int, what: str
) -> np.ndarray | None:
    """The field of the 1x1 struct whose body `source` is at; None when it has none."""
    names = _field_names(source, order)
    for name in names:
        kind, count, _ = _tag(source, order)
        if kind != MI_MATRIX:
            raise _Bad(f"field {name!r} is element type {kind}, not an array")
        if count == 0:  # an empty value
            continue
        body = source.used
        if name != field:
            source.skip(count)
            continue
        mx_class, flags, dims, _ = _matrix_header(source, order)
        label = f"{what}.{field}"
        if mx_class not in INTEGER_CLASSES or flags & (FLAG_COMPLEX | FLAG_LOGICAL):
            kind_name = "logical" if flags & FLAG_LOGICAL else CLASS_NAMES.get(mx_class, mx_class)
            kind_name = f"complex {kind_name}" if flags & FLAG_COMPLEX else kind_name
            raise _Bad(f"{label} is a {kind_name} array; integer class ids only")
        if len(dims) != 2 or 0 in dims:
            raise _Bad(f"{label} has dimensions {dims}; expected a 2-D label map")
        if dims[0] * dims[1] > MAX_PIXELS:
            raise _Bad(f"{label} is {dims[0]}x{dims[1]}, above the {MAX_PIXELS:,}-pixel budget")
        mask = _integer_data(source, order, dims, max_value, label)
        source.skip(count - (source.used - body))  # anything after the data
        return mask
    return None


def read_struct_field(path: Path, variable: str, field: str, max_value: int) -> np.ndarray:
    """`variable.field` of a MATLAB v5 file as (H, W) uint8 values in 0..`max_value`.

    Raises:
        InputError: naming the file: not a level-5 MAT-file, malformed, no such
            variable or field, a field that is not a 2-D integer array, larger than the
            pixel budget, or holding a value outside 0..`max_value`.
    """
    size = regular_file(path)
    try:
        with open(path, "rb") as stream:
            return _read(stream, size, variable, field, max_value)
    except _Bad as exc:
        raise InputError(f"not a readable {variable}.{field} MAT-file: {exc}", path) from None
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror or exc}", path) from exc


def _read(stream: BinaryIO, size: int, variable: str, field: str, max_value: int) -> np.ndarray:
    header = stream.read(HEADER_BYTES)
    if len(header) < HEADER_BYTES or b"MATLAB 5.0 MAT-file" not in header[:116]:
        version = "a v7.3 (HDF5) file" if header.startswith(b"MATLAB 7.3") else "not level 5"
        raise _Bad(f"{version}; save it with MATLAB's -v7 or scipy.io.savemat")
    order = {b"IM": "<", b"MI": ">"}.get(header[126:128])
    if order is None or struct.unpack(order + "H", header[124:126])[0] != 0x0100:
        raise _Bad("unknown byte order or version in the header")
    plain = _Source(stream, size - HEADER_BYTES)
    while plain.used < plain.limit:
        kind, count, _ = _tag(plain, order)
        if count > plain.limit - plain.used:
            raise _Bad(f"an element claims {count:,} bytes, more than the file holds")
        source = plain
        if kind == MI_COMPRESSED:
            plain.used += count
            source = _Source(stream, MAX_INFLATED, compressed=count)
            kind, count, _ = _tag(source, order)
        if kind != MI_MATRIX:
            raise _Bad(f"top-level element type {kind} is not an array")
        start = source.used
        mx_class, _, dims, name = _matrix_header(source, order) if count else (0, 0, (), "")
        if name == variable:
            if mx_class != MX_STRUCT or tuple(dims) != (1, 1):
                raise _Bad(f"{variable} is a {CLASS_NAMES.get(mx_class, mx_class)} of "
                           f"dimensions {dims}, not a 1x1 struct")  # fmt: skip
            found = _wanted_field(source, order, field, max_value, variable)
            if found is None:
                raise _Bad(f"{variable} has no field {field}")
            return found
        if source is plain:
            plain.skip(count - (plain.used - start))
        else:
            stream.seek(source.left or 0, 1)  # the rest of the compressed element
    raise _Bad(f"no variable {variable}")
