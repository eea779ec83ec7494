"""Reading pickled `.npy` files (numpy arrays and torch tensors) without running code.

WSSS codebases save `np.save(path, {...})`: a 0-d object array whose pickle holds a dict
of numpy arrays and, in IRN and PuzzleCAM, torch tensors. `np.load(allow_pickle=True)`
runs any callable the file names, numpy's own rebuild functions act on unchecked state
(a `dtype.__setstate__` with an object field at a bad offset crashes the process), and a
torch tensor unpickles through `torch.storage._load_from_bytes`, which calls
`torch.load(weights_only=False)` on bytes from the file: a second pickle that can run
code too. So nothing from the file reaches numpy, torch or any callable it names:

1. Every pickle is scanned opcode by opcode before it is unpickled (`_scan`): only the
   opcodes plain containers, numbers, strings, bytes and the allowed names need; at most
   `MAX_OPCODES` of them and memo indexes below that (the unpickler sizes its memo by the
   largest index); at most `MAX_DICT_ENTRIES` dict entries (counted from the stack, so
   keys that share a hash cannot make the unpickler's dict building quadratic); declared
   lengths that the data really has; nothing after the end.
2. The unpickler maps a few names to stand-ins defined here and refuses every other:
   numpy's `_reconstruct`, `ndarray`, `dtype`, `scalar`, `_frombuffer`; `_codecs.encode`
   (latin-1 text, as protocol 2 stores bytes); torch's `_rebuild_tensor_v2/_v3`,
   `storage._load_from_bytes`, an empty `OrderedDict` and the `uint16/32/64` dtypes. The
   stand-ins only record their arguments.
3. `_Resolver` turns the record into plain values, each shared object once (memoised by
   identity: a list referenced 10^9 times costs one visit per reference written in the
   file), with at most `MAX_VALUES` values, `MAX_DEPTH` levels and no cycles. Each array
   is checked against the image's `MapBudget.check_part` and its data length, then becomes
   a read-only `np.frombuffer` view of the pickle's bytes: no copy.
4. A torch storage's bytes are a legacy `torch.save` stream: five protocol-2 pickles (a
   magic number, the protocol version 1001, system info, the storage as a persistent id
   `('storage', torch.<T>Storage, key, location, numel, None)`, the key list), then an
   int64 element count and the raw little-endian data (torch/serialization.py,
   `_legacy_save`). `_parse_storage` scans and unpickles the five pickles with a stricter
   allow-list (one storage class, no calls), checks the count against the bytes present
   and returns a view of them. A tensor is a `TensorRef`: its view geometry, checked to
   stay inside its storage, copied only when a format asks for it (`TensorRef.numpy`).

`read_structure` does steps 1-3 without the arrays' data (it skips over their bytes):
what a folder's layout is recognised from. What is accepted, and why, is documented in
docs/security.md.
"""

from __future__ import annotations

import io
import math
import pickle
import pickletools
import re
import struct
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple

import numpy as np

from wsssbed.errors import InputError
from wsssbed.io.budget import MapBudget
from wsssbed.io.imageio import regular_file
from wsssbed.io.npy import read_header, read_plain_array

MAX_OPCODES = 100_000  # a 150-class SEAM dict needs ~4,600 (protocol 2)
MAX_VALUES = 10_000  # values resolved (each reference counts once)
# dict entries the pickle may build: integer keys can all share one hash (k * (2**61 - 1)),
# which makes building a dict quadratic (50,000 such keys took 30 s); a 171-class map
# dict has 171
MAX_DICT_ENTRIES = 1_000
MAX_DEPTH = 8
MAX_LONG_BYTES = 12  # LONG1 integers: torch's 80-bit magic number fits
STRUCTURE_BYTES = 256  # `read_structure` keeps strings and bytes up to this long
NESTED_BYTES = 4096  # each pickle in front of a torch storage's data (~100 bytes)
TORCH_MAGIC = 0x1950A86A20F9469CFC6C  # torch/serialization.py MAGIC_NUMBER
LEGACY_PROTOCOL = 1001  # torch/serialization.py PROTOCOL_VERSION

NUMERIC_CODES = frozenset(
    f"{kind}{size}"
    for kind, sizes in (("f", (2, 4, 8)), ("i", (1, 2, 4, 8)), ("u", (1, 2, 4, 8)), ("b", (1,)))
    for size in sizes
)
_NUMPY_MODULES = ("numpy.core.multiarray", "numpy._core.multiarray")
_NUMERIC_MODULES = ("numpy.core.numeric", "numpy._core.numeric")


class _Refused(pickle.UnpicklingError):
    """The stream asks for something the reader does not accept."""


# ---------------------------------------------------------------- opcode scan

_OPCODES = {op.code.encode("latin-1"): op for op in pickletools.opcodes}
_LENGTH_FIELD = {  # opcodes whose argument is `<length><bytes>`: the length's size
    pickletools.TAKEN_FROM_ARGUMENT1: 1,
    pickletools.TAKEN_FROM_ARGUMENT4U: 4,
    pickletools.TAKEN_FROM_ARGUMENT8U: 8,
}
_PLAIN = frozenset(
    {
        *("PROTO", "FRAME", "STOP", "MARK", "POP", "POP_MARK"),
        *("NONE", "NEWTRUE", "NEWFALSE", "BININT", "BININT1", "BININT2", "LONG1", "BINFLOAT"),
        *("SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8"),
        *("SHORT_BINBYTES", "BINBYTES", "BINBYTES8", "BYTEARRAY8"),
        *("EMPTY_TUPLE", "TUPLE", "TUPLE1", "TUPLE2", "TUPLE3", "EMPTY_LIST", "APPEND"),
        *("APPENDS", "LIST", "EMPTY_DICT", "DICT", "SETITEM", "SETITEMS"),
        *("BINPUT", "LONG_BINPUT", "MEMOIZE", "BINGET", "LONG_BINGET"),
    }
)
_OUTER_NAMES = _PLAIN | {"GLOBAL", "STACK_GLOBAL", "REDUCE", "BUILD"}
# a torch storage stream's pickles: numbers, strings, containers; one names the storage
_NESTED_NAMES = _PLAIN - {"SHORT_BINBYTES", "BINBYTES", "BINBYTES8", "BYTEARRAY8"}
_CHECKED = {"BINPUT": "memo", "LONG_BINPUT": "memo", "BINGET": "memo", "LONG_BINGET": "memo"}
_CHECKED |= {"PROTO": "proto", "FRAME": "frame", "LONG1": "long", "STOP": "stop"}


class _Op(NamedTuple):
    """How `_scan` steps over one opcode."""

    name: str
    size: int  # bytes of its fixed argument, or of its length field (`data`)
    data: bool  # the argument is `<length><bytes>`
    lines: bool  # the argument is two lines (GLOBAL)
    check: str  # what of it is checked: memo, proto, frame, long, stop or nothing
    marked: bool  # it pops the stack down to the last MARK
    pushed: int  # stack items it adds (below that MARK, for a marked one)


def _ops(names: frozenset[str]) -> dict[bytes, _Op]:
    table = {}
    mark = pickletools.markobject
    for code, op in _OPCODES.items():
        if op.name in names:
            n = op.arg.n if op.arg is not None else 0
            size, lines = _LENGTH_FIELD.get(n, max(n, 0)), n == pickletools.UP_TO_NEWLINE
            marked = mark in op.stack_before
            pushed = len(op.stack_after) - (op.stack_before.index(mark) if marked
                                            else len(op.stack_before))  # fmt: skip
            check = _CHECKED.get(op.name, "")
            table[code] = _Op(op.name, size, n in _LENGTH_FIELD, lines, check, marked, pushed)
    return table


class _Entries:
    """Dict entries a pickle builds, counted from its stack as `_scan` steps: the items
    above each MARK (`levels`), halved at a SETITEMS or DICT. A POP with no item above
    the last MARK pops the MARK, as the unpickler does."""

    def __init__(self) -> None:
        self.levels, self.count = [0], 0

    def step(self, op: _Op) -> None:
        if op.name == "MARK":
            self.levels.append(0)
            return
        if op.marked or (op.name == "POP" and len(self.levels) > 1 and not self.levels[-1]):
            items = max(self.levels.pop(), 0) if len(self.levels) > 1 else 0
            self.count += items // 2 if op.name in ("SETITEMS", "DICT") else 0
            if op.name == "POP":
                return
        self.count += op.name == "SETITEM"
        self.levels[-1] += op.pushed
        if self.count > MAX_DICT_ENTRIES:
            raise _Refused(f"more than {MAX_DICT_ENTRIES:,} dict entries")


_OUTER = _ops(_OUTER_NAMES)
_NESTED = _ops(_NESTED_NAMES)
_STORAGE = _ops(_NESTED_NAMES | {"GLOBAL", "BINPERSID"})


def _scan(
    stream: BinaryIO,
    end: int,
    allowed: dict[bytes, _Op],
    skeleton: BinaryIO | None = None,
    spans: list[tuple[int, int, bool]] | None = None,
) -> None:
    """Check one pickle from `stream`'s position to its STOP (nothing is built).

    Args:
        end: where the stream's data end (a length beyond it is refused).
        skeleton: when given, receives the pickle without FRAMEs and with every string
            or bytes longer than `STRUCTURE_BYTES` replaced by a reference to its span
            (`BININT i, BINPERSID`; the original pickle cannot hold BINPERSID), which is
            appended to `spans` as (offset, length, is text). Those data are skipped
            (a seek), not read.

    Raises:
        _Refused: an opcode outside `allowed`, too many opcodes or dict entries, a memo
            index or integer out of bounds, a length the data do not have, or no STOP.
    """
    read, write = stream.read, skeleton.write if skeleton is not None else None
    entries = _Entries()
    for _ in range(MAX_OPCODES):
        code = read(1)
        op = allowed.get(code)
        if op is None:
            known = _OPCODES.get(code)
            if known is not None:
                raise _Refused(f"pickle opcode {known.name} is not accepted")
            raise _Refused("truncated pickle" if not code else f"unknown opcode {code!r}")
        entries.step(op)
        head = data = b""
        if op.lines:  # GLOBAL: two names, each on its own line
            head = stream.readline(STRUCTURE_BYTES) + stream.readline(STRUCTURE_BYTES)
            if head.count(b"\n") != 2:
                raise _Refused("GLOBAL name is not two short lines")
        elif op.size:
            head = read(op.size)
            if len(head) != op.size:
                raise _Refused("truncated pickle")
            value = int.from_bytes(head, "little")
            if (op.data or op.check == "frame") and value > end - stream.tell():
                raise _Refused(f"{op.name} declares {value:,} bytes; the file has fewer")
            if op.check == "frame":  # a frame only groups the opcodes that follow
                continue
            if op.check == "memo" and value >= MAX_OPCODES:
                raise _Refused(f"pickle memo index {value:,} is out of bounds")
            if op.check == "proto" and not 2 <= value <= 5:
                raise _Refused(f"pickle protocol {value} is not accepted")
            if op.check == "long" and value > MAX_LONG_BYTES:
                raise _Refused(f"integer of {value} bytes")
            if op.data and (write is None or value > STRUCTURE_BYTES):  # skipped, not read
                if write is not None:
                    spans.append((stream.tell(), value, "UNICODE" in op.name))
                    write(b"J" + (len(spans) - 1).to_bytes(4, "little") + b"Q")
                stream.seek(value, io.SEEK_CUR)
                continue
            if op.data:
                data = read(value)
        if write is not None:
            write(code + head + data)
        if op.check == "stop":
            return
    raise _Refused(f"more than {MAX_OPCODES:,} pickle opcodes")


# ---------------------------------------------------------------- stand-ins


class _Recorded:
    """A stand-in whose state the pickle may not set (BUILD would replace its checked
    attributes)."""

    def __setstate__(self, state: Any) -> None:
        raise _Refused(f"state given to {type(self).__name__.strip('_')}")


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


class _Array:
    """A numpy array as pickled: shape, dtype, order and data, checked when resolved."""

    def __init__(self, cls: Any = _NdarrayType, *_: Any) -> None:
        if cls is not _NdarrayType:
            raise _Refused("only plain numpy arrays are accepted")
        self.state: tuple | None = None

    def __setstate__(self, state: Any) -> None:
        if self.state is not None or not isinstance(state, tuple) or len(state) not in (4, 5):
            raise _Refused("array state has an unknown layout")
        shape, dtype, fortran, data = state[-4:]
        if not isinstance(dtype, _Dtype):
            raise _Refused("array dtype is not a plain numpy dtype")
        self.state = (shape, dtype, bool(fortran), data)


def _frombuffer(data: Any, dtype: Any, shape: Any, order: Any) -> _Array:
    """numpy's protocol-5 `_frombuffer(buffer, dtype, shape, order)`."""
    array = _Array()
    array.__setstate__((shape, dtype, order == "F", data))
    return array


def _scalar(dtype: Any, data: Any = None) -> Any:
    """numpy's `scalar(dtype, bytes)`: one number."""
    if not isinstance(dtype, _Dtype) or dtype.is_object:
        raise _Refused("scalar of a non-numeric type refused")
    numpy_dtype = dtype.numpy()
    if not isinstance(data, bytes) or len(data) != numpy_dtype.itemsize:
        raise _Refused("scalar data of the wrong type or length")
    return np.frombuffer(data, numpy_dtype)[0].item()  # a Python number: no numpy state


def _latin1(text: Any, encoding: Any = "utf-8") -> bytes:
    """`_codecs.encode` as protocol-2 pickles use it: a latin-1 str back to its bytes."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise _Refused("_codecs.encode is accepted only for latin-1 text (old numpy bytes)")
    return text.encode("latin-1")


def _empty_ordered_dict(*args: Any) -> OrderedDict:
    """`OrderedDict()`: a tensor's (empty) backward hooks."""
    if args:
        raise _Refused("OrderedDict with contents (tensor backward hooks) refused")
    return OrderedDict()


class _TorchDtype(_Recorded):
    """`torch.uint16` (32, 64), named by `_rebuild_tensor_v3`; or a legacy storage class."""

    def __init__(self, name: str) -> None:
        self.name = name


class _StorageBytes(_Recorded):
    """`torch.storage._load_from_bytes(blob)`: parsed when resolved."""

    def __init__(self, blob: Any) -> None:
        self.blob = blob


class _Tensor(_Recorded):
    """`torch._utils._rebuild_tensor_v2/_v3(storage, offset, size, stride, ...)`."""

    def __init__(self, v3: bool, args: tuple) -> None:
        if len(args) < (7 if v3 else 6) or len(args) > (8 if v3 else 7):
            raise _Refused("tensor rebuilt with an unexpected number of arguments")
        self.storage, self.offset, self.shape, self.strides, grad, hooks = args[:6]
        self.dtype = args[6] if v3 else None
        metadata = args[7 if v3 else 6] if len(args) > (7 if v3 else 6) else None
        if not isinstance(grad, bool) or not (isinstance(hooks, dict) and not hooks):
            raise _Refused("tensor with backward hooks or a non-boolean requires_grad")
        if not (metadata is None or (isinstance(metadata, dict) and not any(metadata.values()))):
            raise _Refused("tensor with conjugate or negative bits refused")
        if v3 and not isinstance(self.dtype, _TorchDtype):
            raise _Refused("_rebuild_tensor_v3 without a plain dtype")


# legacy storage class -> element type (bf16 kept as its uint16 bits)
_STORAGE_TYPES = {
    "DoubleStorage": np.dtype("<f8"),
    "FloatStorage": np.dtype("<f4"),
    "HalfStorage": np.dtype("<f2"),
    "BFloat16Storage": np.dtype("<u2"),
    "LongStorage": np.dtype("<i8"),
    "IntStorage": np.dtype("<i4"),
    "ShortStorage": np.dtype("<i2"),
    "CharStorage": np.dtype("i1"),
    "ByteStorage": np.dtype("u1"),
    "BoolStorage": np.dtype("?"),
    "UntypedStorage": np.dtype("u1"),  # bytes, reinterpreted by `_rebuild_tensor_v3`
}
_V3_DTYPES = {"uint16": np.dtype("<u2"), "uint32": np.dtype("<u4"), "uint64": np.dtype("<u8")}


class _Unpickler(pickle.Unpickler):
    """Maps the names numpy and torch pickles use to the stand-ins; refuses all others."""

    def find_class(self, module: str, name: str) -> Any:
        if module in _NUMPY_MODULES and name == "_reconstruct":
            return _Array
        if module in _NUMPY_MODULES and name == "scalar":
            return _scalar
        if module in _NUMERIC_MODULES and name == "_frombuffer":
            return _frombuffer
        if module == "numpy" and name in ("ndarray", "dtype"):
            return _NdarrayType if name == "ndarray" else _Dtype
        if (module, name) == ("_codecs", "encode"):
            return _latin1
        if (module, name) == ("collections", "OrderedDict"):
            return _empty_ordered_dict
        if (module, name) == ("torch.storage", "_load_from_bytes"):
            return _StorageBytes
        if module == "torch._utils" and name in ("_rebuild_tensor_v2", "_rebuild_tensor_v3"):
            v3 = name.endswith("v3")
            return lambda *args: _Tensor(v3, args)
        if module == "torch" and name in _V3_DTYPES:
            return _TorchDtype(name)
        raise _Refused(f"refers to {module}.{name}, which is not a numpy array or torch tensor")


# ---------------------------------------------------------------- torch storages


class _NoNames(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        raise _Refused(f"torch storage stream refers to {module}.{name}")


class _StorageName(pickle.Unpickler):
    """The storage pickle of a legacy stream: one storage class in one persistent id."""

    def __init__(self, data: bytes) -> None:
        super().__init__(io.BytesIO(data))
        self.found: list[tuple[str, str, int]] = []

    def find_class(self, module: str, name: str) -> Any:
        legacy = module in ("torch", "torch.cuda") and name in _STORAGE_TYPES
        if (legacy and name != "UntypedStorage") or (module, name) in (
            ("torch", "UntypedStorage"),
            ("torch.storage", "UntypedStorage"),
        ):
            return _TorchDtype(name)
        raise _Refused(f"torch storage stream refers to {module}.{name}")

    def persistent_load(self, pid: Any) -> Any:
        if not (isinstance(pid, tuple) and len(pid) == 6 and pid[0] == "storage"):
            raise _Refused("torch storage stream with an unknown persistent id")
        _, kind, key, location, numel, view = pid
        if not isinstance(kind, _TorchDtype) or not isinstance(key, str) or len(key) > 64:
            raise _Refused("torch storage with an unknown class or key")
        if not isinstance(location, str) or not _LOCATION.fullmatch(location):
            raise _Refused(f"torch storage location {location!r:.40} is not cpu or cuda")
        if type(numel) is not int or numel < 0 or view is not None:
            raise _Refused("torch storage with a bad element count or a view")
        self.found.append((kind.name, key, numel))
        return key


_LOCATION = re.compile(r"(cpu|cuda(:\d{1,3})?)")


def _parse_storage(blob: Any) -> tuple[str, np.ndarray]:
    """A legacy `torch.save` stream of one storage: its class name and its elements (a
    read-only view of `blob`).

    Raises:
        _Refused: not such a stream, a name other than one storage class, or an element
            count that differs from the data present.
    """
    if not isinstance(blob, (bytes, memoryview)):
        raise _Refused("torch storage bytes are not bytes")
    if blob[:4] == b"PK\x03\x04":
        raise _Refused("torch storage in zip format (no torch writes it inside a tensor)")
    head = bytes(blob[: 5 * NESTED_BYTES])  # the five pickles; the data follow
    stream, pickles = io.BytesIO(head), []
    for allowed in (_NESTED, _NESTED, _NESTED, _STORAGE, _NESTED):
        start = stream.tell()
        _scan(stream, len(head), allowed)
        if stream.tell() - start > NESTED_BYTES:
            raise _Refused("torch storage stream with an oversized header pickle")
        pickles.append(head[start : stream.tell()])
    magic, version, info = (_NoNames(io.BytesIO(p)).load() for p in pickles[:3])
    if magic != TORCH_MAGIC or version != LEGACY_PROTOCOL:
        raise _Refused("torch storage bytes are not a legacy torch.save stream")
    if not isinstance(info, dict) or info.get("little_endian") is not True:
        raise _Refused("torch storage stream without little-endian system info")
    named = _StorageName(pickles[3])
    key = named.load()
    if len(named.found) != 1 or _NoNames(io.BytesIO(pickles[4])).load() != [key]:
        raise _Refused("torch storage stream must hold exactly one storage")
    kind, _, numel = named.found[0]
    dtype, start = _STORAGE_TYPES[kind], stream.tell()
    if len(blob) - start < 8:
        raise _Refused("torch storage stream ends before its element count")
    (count,) = struct.unpack_from("<q", blob, start)
    if count != numel:
        raise _Refused(f"torch storage declares {numel:,} elements, its data {count:,}")
    if len(blob) - start - 8 != numel * dtype.itemsize:  # before anything is made
        raise _Refused(
            f"torch storage of {numel:,} elements of {dtype.itemsize} bytes has "
            f"{len(blob) - start - 8:,} bytes of data"
        )
    return kind, np.frombuffer(blob, dtype, numel, start + 8)


@dataclass(frozen=True)
class TensorRef:
    """A torch tensor as stored, not yet copied.

    Attributes:
        storage: (N,) read-only view of its storage's elements (bf16 as uint16 bits).
        shape, strides: the tensor's view, strides in elements (checked to stay inside).
        offset: first element.
        bfloat16: the elements are bfloat16 (`numpy` widens them to float32).
    """

    storage: np.ndarray
    shape: tuple[int, ...]
    strides: tuple[int, ...]
    offset: int
    bfloat16: bool = False

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(np.float32) if self.bfloat16 else self.storage.dtype

    def numpy(self) -> np.ndarray:
        """The tensor's values: a view when its elements are contiguous in the storage,
        else one C-ordered copy (bf16 widened to float32)."""
        count = math.prod(self.shape)
        contiguous = all(
            stride == math.prod(self.shape[axis + 1 :])
            for axis, stride in enumerate(self.strides)
            if self.shape[axis] > 1
        )
        if contiguous:
            values = self.storage[self.offset : self.offset + count].reshape(self.shape)
        else:
            item = self.storage.itemsize
            values = np.array(
                np.lib.stride_tricks.as_strided(
                    self.storage[self.offset :],
                    self.shape,
                    tuple(s * item for s in self.strides),
                    writeable=False,
                )
            )
        if self.bfloat16:
            return (values.astype(np.uint32) << 16).view(np.float32)
        return values


@dataclass(frozen=True)
class ArraySpec:
    """An array seen by `read_structure`: its shape and where it came from."""

    shape: tuple[int, ...]
    source: str  # `numpy` or `torch`


# ---------------------------------------------------------------- resolving


def _shape(value: Any, what: str) -> tuple[int, ...]:
    if not isinstance(value, tuple) or len(value) > 3:
        raise _Refused(f"{what} must be a tuple of at most 3 sizes")
    if not all(type(n) is int and 0 <= n < 1 << 40 for n in value):
        raise _Refused(f"{what} {value!r} is not a tuple of non-negative integers")
    return value


_LEAVES = (int, float, str, bytes, bool, type(None))


def _name(where: str) -> str:
    """How messages name a value of the file: `` `high_res` ``, `` `x/3` ``, or nothing."""
    return f"`{where}`" if where else ""


class _Resolver:
    """Stand-ins to values (see the module docstring, step 3).

    Args:
        budget: the image's budget; None reads the structure only (arrays -> `ArraySpec`).
    """

    def __init__(self, budget: MapBudget | None, path: Path) -> None:
        self.budget, self.path = budget, path
        self.done: dict[int, Any] = {}
        self.busy: set[int] = set()
        self.storages: dict[int, tuple[str, np.ndarray]] = {}  # each bytes object parsed once
        self.values = 0

    def __call__(self, value: Any, where: str = "", depth: int = 0) -> Any:
        self.values += 1
        if self.values > MAX_VALUES:
            raise _Refused(f"more than {MAX_VALUES:,} values")
        if depth > MAX_DEPTH:
            raise _Refused(f"containers nested more than {MAX_DEPTH} deep")
        if isinstance(value, _LEAVES):
            return value
        key = id(value)
        if key in self.done:
            return self.done[key]
        if key in self.busy:
            raise _Refused("a container holds itself")
        self.busy.add(key)
        try:
            out = self._convert(value, where, depth)
        except _Refused as exc:
            if not where or str(exc).startswith("`"):
                raise
            raise _Refused(f"{_name(where)}: {exc}") from None
        self.busy.discard(key)
        self.done[key] = out
        return out

    def _convert(self, value: Any, where: str, depth: int) -> Any:
        child = f"{where}/" if where else ""
        if isinstance(value, dict):
            out = {}
            for k, v in value.items():
                k = self(k, where, depth + 1)
                if not isinstance(k, _LEAVES):
                    raise _Refused("a dict key is not a plain value")
                out[k] = self(v, f"{child}{k}", depth + 1)
            return out
        if isinstance(value, (list, tuple)):
            items = [self(v, f"{where}[{i}]", depth + 1) for i, v in enumerate(value)]
            return items if isinstance(value, list) else tuple(items)
        if isinstance(value, _Array):
            return self._array(value, where, depth)
        if isinstance(value, _Tensor):
            return self._tensor(value, where)
        raise _Refused(f"a bare {type(value).__name__.strip('_').lower()} is not map data")

    def _array(self, array: _Array, where: str, depth: int) -> Any:
        if array.state is None:
            raise _Refused("an array was never given its data")
        shape, dtype, fortran, data = array.state
        if dtype.is_object:
            if shape != () or not isinstance(data, list) or len(data) != 1:
                raise _Refused("object arrays are accepted only as the 0-d top-level container")
            return self(data[0], where, depth + 1)
        shape, numpy_dtype = _shape(shape, "array shape"), dtype.numpy()
        if self.budget is None:
            return ArraySpec(shape, "numpy")
        self.budget.check_part(shape, numpy_dtype.itemsize, self.path, _name(where))
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise _Refused(f"array data must be bytes, got {type(data).__name__}")
        count = math.prod(shape)
        if len(data) != count * numpy_dtype.itemsize:
            raise _Refused(
                f"array of shape {shape} needs {count * numpy_dtype.itemsize:,} bytes, "
                f"has {len(data):,}"
            )
        # read-only over the pickle's bytes (no copy); `MapFormat.read` copies what it keeps
        values = np.frombuffer(data, numpy_dtype, count)
        values.flags.writeable = False
        return values.reshape(shape, order="F" if fortran else "C")

    def _tensor(self, tensor: _Tensor, where: str) -> Any:
        shape = _shape(tensor.shape, "tensor size")
        strides = _shape(tensor.strides, "tensor stride")
        if not isinstance(tensor.storage, _StorageBytes):
            raise _Refused("tensor rebuilt from something that is not torch storage bytes")
        if len(strides) != len(shape) or type(tensor.offset) is not int or tensor.offset < 0:
            raise _Refused("tensor stride or offset does not match its size")
        if self.budget is None:
            return ArraySpec(shape, "torch")
        blob = tensor.storage.blob
        if id(blob) not in self.storages:
            self.storages[id(blob)] = _parse_storage(blob)
        kind, storage = self.storages[id(blob)]
        if tensor.dtype is not None:  # v3: an untyped (byte) storage read as `dtype`
            dtype = _V3_DTYPES[tensor.dtype.name]
            if kind != "UntypedStorage" or storage.size % dtype.itemsize:
                raise _Refused("v3 tensor over a storage that is not whole bytes of its type")
            storage = storage.view(dtype)
        elif kind == "UntypedStorage":
            raise _Refused("v2 tensor over an untyped storage")
        bfloat16 = kind == "BFloat16Storage"
        self.budget.check_part(shape, 4 if bfloat16 else storage.itemsize, self.path, _name(where))
        if (
            math.prod(shape)
            and tensor.offset + sum((n - 1) * s for n, s in zip(shape, strides)) >= storage.size
        ):
            raise _Refused(f"tensor view reaches beyond its {storage.size:,}-element storage")
        return TensorRef(storage, shape, strides, tensor.offset, bfloat16)


# ---------------------------------------------------------------- entry points


def _outer_pickle(stream: BinaryIO, end: int, data: memoryview | None) -> Any:
    """Scan the pickle from `stream`'s position to `end`, then unpickle its skeleton into
    stand-ins: long strings and bytes become views of `data` (the bytes `stream` reads,
    from its position), or empty when `data` is None (nothing was read)."""
    start, skeleton, spans = stream.tell(), io.BytesIO(), []
    _scan(stream, end, _OUTER, skeleton, spans)
    if stream.tell() != end:
        raise _Refused(f"{end - stream.tell():,} bytes after the pickle")
    unpickler = _Unpickler(io.BytesIO(skeleton.getvalue()))
    unpickler.persistent_load = lambda index: _span(data, *spans[index], start)
    return unpickler.load()


def _span(data: memoryview | None, offset: int, length: int, text: bool, start: int) -> Any:
    """The string or bytes the skeleton refers to: a view of `data` (no copy), or empty."""
    if data is None:
        return "" if text else b""
    view = data[offset - start : offset - start + length]
    return str(view, "utf-8", "surrogatepass") if text else view


def _guarded(path: Path, call: Callable[[], Any]) -> Any:
    """`call()`, with a refused or corrupt stream as an `InputError` naming `path`."""
    try:
        return call()
    except InputError:
        raise
    except pickle.UnpicklingError as exc:
        raise InputError(f"unsafe or corrupt pickle refused: {exc}", path) from exc
    except Exception as exc:  # any failure inside a corrupt stream is a bad file
        raise InputError(f"corrupt pickled .npy: {type(exc).__name__}: {exc}", path) from exc


def _header(stream: BinaryIO, path: Path) -> tuple[tuple[int, ...], bool, np.dtype]:
    try:
        return read_header(stream)
    except (ValueError, OSError, EOFError) as exc:
        raise InputError(f"not a valid .npy file: {exc}", path) from exc


def load_npy(path: Path, budget: MapBudget) -> Any:
    """The content of an `.npy` file: a plain array, or the value a pickled one holds,
    with numpy arrays as read-only views of its bytes and torch tensors as `TensorRef`.

    The file's size is checked against `budget` before it is read, and every array
    against `budget.check_part`; a format checks the maps it reads exactly.

    Raises:
        InputError: missing, non-regular, over-budget or corrupt file, or a pickle that
            asks for anything but numbers, strings, containers, numpy arrays and torch
            tensors (the message names the value, e.g. `` `high_res` ``).
    """
    size = regular_file(path)
    budget.check_file(size, path)
    with open(path, "rb") as stream:
        header = _header(stream, path)
        if not header[2].hasobject:
            return read_plain_array(stream, header, budget, path)
        # the one copy (arrays are views of it); a sized read (a bare `read()` after
        # the header takes ten times as long)
        payload = stream.read(size - stream.tell())
    resolve = _Resolver(budget, path)
    data = memoryview(payload)
    return _guarded(path, lambda: resolve(_outer_pickle(io.BytesIO(payload), len(payload), data)))


def read_structure(path: Path) -> Any:
    """What an `.npy` file holds, every array as an `ArraySpec`, its data skipped.

    The pickle is checked as by `load_npy` (opcodes, names, containers) but its strings
    and bytes longer than `STRUCTURE_BYTES` are skipped, not read, and torch storages are
    not parsed: a few hundred bytes are read whatever the file's size. For recognising a
    folder's layout; the maps themselves are read with `load_npy`.

    Raises:
        InputError: as `load_npy`, for what the structure shows.
    """
    size = regular_file(path)
    with open(path, "rb") as stream:
        shape, _, dtype = _header(stream, path)
        if not dtype.hasobject:
            return ArraySpec(tuple(shape), "numpy")
        resolve = _Resolver(None, path)
        return _guarded(path, lambda: resolve(_outer_pickle(stream, size, None)))
