"""Torch tensors in pickled `.npy` maps (issue 23 section 1; issue 25 section 4): rebuilt
without running code, exactly as torch holds them, and every crafted payload refused with
the file named, before anything of the size it claims is allocated. Payloads are made
here; torch itself is the reference for the legitimate ones."""

from __future__ import annotations

import io
import os
import pickle
import struct
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch
from numpy.lib import format as npy_format
from test_adversarial_maps import measure_reads
from test_native_layouts import clip_es_generate, irn_make_cam, puzzlecam_inference, seam_infer

from wsssbed.errors import InputError
from wsssbed.io.budget import MapBudget
from wsssbed.io.safe_pickle import TORCH_MAGIC, TensorRef, load_npy

BUDGET = MapBudget(20, (37, 50))
INFO = {"protocol_version": 1001, "little_endian": True, "type_sizes": {"short": 2, "int": 4}}


def object_header() -> bytes:
    """The `.npy` header `np.save` writes in front of a pickled object."""
    header = io.BytesIO()
    npy_format.write_array_header_1_0(header, {"descr": "|O", "fortran_order": False, "shape": ()})
    return header.getvalue()


def storage_stream(
    numel: int,
    data: bytes,
    *,
    kind: object = torch.FloatStorage,
    count: int | None = None,
    location: str = "cpu",
    info: object = INFO,
) -> bytes:
    """A legacy `torch.save` stream of one storage (what `_load_from_bytes` gets), with
    every field under the test's control (torch/serialization.py `_legacy_save`)."""
    out = io.BytesIO()
    for value in (TORCH_MAGIC, 1001, info):
        pickle.dump(value, out, protocol=2)
    marker = object()

    class Named(pickle.Pickler):
        def persistent_id(self, obj):
            return ("storage", kind, "0", location, numel, None) if obj is marker else None

    Named(out, protocol=2).dump(marker)
    pickle.dump(["0"], out, protocol=2)
    out.write(struct.pack("<q", numel if count is None else count) + data)
    return out.getvalue()


class Blob:
    """Pickles as `torch.storage._load_from_bytes(data)`."""

    def __init__(self, data: bytes) -> None:
        self.data = data


class Tensor:
    """Pickles as `torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)`."""

    def __init__(self, blob, offset, size, stride, hooks=None, extra=(), state=None) -> None:
        hooks = OrderedDict() if hooks is None else hooks
        self.args = (blob, offset, size, stride, False, hooks, *extra)
        self.state = state


class Call:
    """Pickles as `func(*args)`: what an attacker writes."""

    def __init__(self, func, *args) -> None:
        self.func, self.args = func, args


class Crafter(pickle.Pickler):
    def reducer_override(self, obj):
        if isinstance(obj, Blob):
            return torch.storage._load_from_bytes, (obj.data,)
        if isinstance(obj, Tensor):
            reduced = (torch._utils._rebuild_tensor_v2, obj.args)
            return reduced if obj.state is None else (*reduced, obj.state)
        if isinstance(obj, Call):
            return obj.func, obj.args
        return NotImplemented


def crafted(path: Path, content, protocol: int = 4) -> Path:
    """An `.npy` as `np.save(path, content)` writes it, with the crafting pickler."""
    body = io.BytesIO()
    wrapped = np.array(content, dtype=object) if isinstance(content, dict) else content
    Crafter(body, protocol=protocol).dump(wrapped)
    path.write_bytes(object_header() + body.getvalue())
    return path


def floats(*values: float) -> bytes:
    return struct.pack(f"<{len(values)}f", *values)


def test_the_crafted_stream_is_one_torch_reads():
    """The payload builder is honest: torch's own loader accepts its legitimate streams."""
    stream = storage_stream(3, floats(1, 2, 3))
    assert torch.load(io.BytesIO(stream), weights_only=True).tolist() == [1.0, 2.0, 3.0]


SOURCE = torch.rand(4, 6, 8, generator=torch.Generator().manual_seed(3))


@pytest.mark.parametrize(
    "make",
    [
        lambda t: t.half(),
        lambda t: t.bfloat16(),
        lambda t: t.double(),
        lambda t: t.transpose(1, 2),
        lambda t: t[:, ::2, 1:],
        lambda t: t[1:],
        lambda t: t[0, 0, 0],
        lambda t: t[:0],
        lambda t: t[0:1, 0:1, 0:1].expand(4, 3, 5),
        lambda t: (t * 100).to(torch.uint16),
        lambda t: t.clone().requires_grad_(True),
        lambda t: t > 0.5,
        lambda t: (t * 100).to(torch.int32),
        lambda t: (t * 100).to(torch.uint8),
    ],
    ids=["f16", "bf16", "f64", "transpose", "slice", "offset", "0d", "empty", "expand",
         "uint16", "requires_grad", "bool", "int32", "uint8"],
)  # fmt: skip
def test_tensors_read_as_torch_holds_them(tmp_path, make):
    tensor = make(SOURCE)
    np.save(tmp_path / "t.npy", {"cam": tensor})
    ref = load_npy(tmp_path / "t.npy", MapBudget(20, (8, 8)))["cam"]
    assert isinstance(ref, TensorRef)
    got = ref.numpy()
    want = (
        tensor.detach().float().numpy()
        if tensor.dtype == torch.bfloat16
        else tensor.numpy(force=True)
    )
    assert got.shape == want.shape and got.dtype == want.dtype
    assert np.array_equal(got, want)


@pytest.mark.parametrize("protocol", [2, 3])
def test_numpy_1_pickles_with_a_tensor_inside(tmp_path, protocol):
    """numpy 1.x wrote protocol 3 (2 stores bytes through `_codecs.encode`) and named its
    module `numpy.core.multiarray`."""
    content = np.array({"keys": torch.tensor([3, 7]), "high_res": SOURCE[:2].numpy()}, object)
    payload = pickle.dumps(content, protocol=protocol)
    payload = payload.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    (tmp_path / "old.npy").write_bytes(object_header() + payload)
    got = load_npy(tmp_path / "old.npy", MapBudget(20, (6, 8)))
    assert got["keys"].numpy().tolist() == [3, 7]
    assert np.array_equal(got["high_res"], SOURCE[:2].numpy())


def test_one_storage_behind_many_tensors_is_parsed_once(tmp_path):
    blob = Blob(storage_stream(1 << 16, bytes(4 << 16)))  # one bytes object, pickled once
    path = crafted(tmp_path / "x.npy", {"x": [Tensor(blob, i, (2,), (1,)) for i in range(2000)]})
    assert path.stat().st_size < (1 << 18) + 200_000
    refs = load_npy(path, BUDGET)["x"]
    assert len(refs) == 2000 and refs[0].storage is refs[1999].storage


def test_shared_references_resolve_once_and_stay_shared(tmp_path):
    """Issue 25 section 4: a list referenced 70 times per level, 5 levels deep, is 1.7e9
    paths in a file of a few hundred bytes; each object is resolved once."""
    nested: list = [1.0]
    for _ in range(5):
        nested = [nested] * 70
    np.save(tmp_path / "s.npy", {"keys": np.array([3]), "x": nested})
    assert (tmp_path / "s.npy").stat().st_size < 2000
    got = load_npy(tmp_path / "s.npy", BUDGET)["x"]
    assert got[0] is got[69] and got[0][0] is got[0][1]


def test_cuda_tensors_and_old_cuda_storage_classes_are_data(tmp_path):
    """A tensor saved without `.cpu()` says `cuda:0`; torch < 1.13 named the class
    `torch.cuda.FloatStorage`. The bytes are the same."""
    for kind in (torch.FloatStorage, torch.cuda.FloatStorage):
        blob = Blob(storage_stream(2, floats(5, 6), kind=kind, location="cuda:0"))
        path = crafted(tmp_path / "c.npy", {"cam": Tensor(blob, 0, (2,), (1,))})
        assert load_npy(path, BUDGET)["cam"].numpy().tolist() == [5.0, 6.0]


def _nested_info_with_a_call() -> bytes:
    evil = io.BytesIO()
    for value in (TORCH_MAGIC, 1001):
        pickle.dump(value, evil, protocol=2)
    Crafter(evil, protocol=2).dump({"protocol_version": 1001, "x": Call(eval, "1")})
    valid = storage_stream(1, floats(1))
    head = io.BytesIO()
    for value in (TORCH_MAGIC, 1001, INFO):
        pickle.dump(value, head, protocol=2)
    return evil.getvalue() + valid[len(head.getvalue()) :]


def _one(stream: bytes, size=(1,), stride=(1,), offset=0, **kw) -> dict:
    return {"keys": np.array([3]), "cam": Tensor(Blob(stream), offset, size, stride, **kw)}


ONE = storage_stream(3, floats(1, 2, 3))
CRAFTED = {
    "outer-system": (None, r"posix\.system|nt\.system"),  # made in the test: a sentinel
    "outer-eval": ({"keys": Call(eval, "1+1")}, r"builtins\.eval"),
    "nested-system": (_one(storage_stream(1, floats(1), kind=os.system)), "system"),
    "nested-info-call": (_one(_nested_info_with_a_call()), "GLOBAL|REDUCE"),
    "claims-1e12": (_one(storage_stream(10**12, floats(1, 2, 3))), r"1,000,000,000,000 elements"),
    "count-header": (_one(storage_stream(3, floats(1, 2, 3), count=10**12)), "its data"),
    "beyond-storage": (_one(ONE, (10, 10), (10, 1)), "reaches beyond its 3-element storage"),
    "offset-beyond": (_one(ONE, (2,), (1,), offset=2), "reaches beyond"),
    "negative-stride": (_one(ONE, (2,), (-1,)), "non-negative"),
    "zero-stride-huge": (
        _one(ONE, (20, 100_000, 100_000), (0, 0, 0)),
        r"`cam`: map size 100000x100000 differs",
    ),
    "neg-bit": (_one(ONE, extra=({"neg": True},)), "negative bits"),
    "hooks": (_one(ONE, hooks=OrderedDict(a=1)), "backward hooks"),
    "build-on-tensor": (_one(ONE, state={"storage": 1}), "state given to Tensor"),
    "location": (_one(storage_stream(1, floats(1), location="meta;rm -rf")), "location"),
    "zip": (_one(b"PK\x03\x04" + bytes(40)), "zip format"),
    "untyped-v2": (_one(storage_stream(4, bytes(4), kind=torch.UntypedStorage)), "untyped"),
    "many-values": ({"keys": np.array([3]), "x": [1] * 20_000}, "more than 10,000 values"),
}


@pytest.mark.parametrize("name", CRAFTED)
def test_crafted_torch_payloads_are_refused_naming_the_file(tmp_path, name):
    content, message = CRAFTED[name]
    sentinel = tmp_path / "pwned"
    if content is None:
        content = {"keys": Call(os.system, f"touch {sentinel}")}
    path = crafted(tmp_path / "x.npy", content)
    with pytest.raises(InputError, match=message) as info:
        load_npy(path, BUDGET)
    assert str(path) in str(info.value)
    assert not sentinel.exists()


def test_a_container_holding_itself_is_refused(tmp_path):
    loop: list = []
    loop.append(loop)
    np.save(tmp_path / "l.npy", {"keys": loop})
    with pytest.raises(InputError, match="a container holds itself"):
        load_npy(tmp_path / "l.npy", BUDGET)


@pytest.mark.parametrize(
    "payload,message",
    [
        (b"\x80\x04]r\xff\xff\xff\x7f.", "memo index 2,147,483,647 is out of bounds"),
        (b"\x80\x04\x8e" + struct.pack("<Q", 1 << 40) + b"abc.", "declares 1,099,511,627,776"),
        (pickle.dumps(np.array({"k": {1, 2}}, dtype=object), protocol=4), "EMPTY_SET"),
        (b"\x80\x04K\x01K\x02\x82.", "EXT1"),
        (b"\x80\x04(cbuiltins\nobject\no.", "OBJ"),
        (b"\x80\x02(cos\nsystem\nS'true'\ni.", "STRING|INST"),
        (b"\x80\x04\x8a\x20" + bytes(32) + b".", "integer of 32 bytes"),
        (b"\x80\x04}.junk", "4 bytes after the pickle"),
        (b"\x80\x04}", "truncated pickle"),
        (b"\x80\x07}.", "protocol 7"),
    ],
    ids=["memo", "binbytes8-lie", "set", "ext", "obj", "inst", "long", "trailing", "truncated",
         "protocol"],
)  # fmt: skip
def test_opcodes_are_checked_before_unpickling(tmp_path, payload, message):
    (tmp_path / "p.npy").write_bytes(object_header() + payload)
    with pytest.raises(InputError, match=message):
        load_npy(tmp_path / "p.npy", BUDGET)


def test_new_layouts_stay_within_twice_the_largest_legitimate_maps(tmp_path):
    """Peak memory of a fresh process reading the largest legitimate file of each new
    layout (20 classes at 375x500) and the crafted torch payloads, after one read of the
    same maps as npz: growth below twice the maps' bytes."""
    shape = (375, 500)
    keys = np.arange(20)
    cams = np.random.default_rng(0).random((20, *shape), dtype=np.float32)
    files = {}

    def folder(name: str, fmt: str) -> Path:
        (tmp_path / name).mkdir()
        files[name] = fmt
        return tmp_path / name / "a.npy"

    (tmp_path / "legit").mkdir()
    np.savez(tmp_path / "legit/a.npz", keys=keys, cams=cams)
    for name, writer, fmt in (
        ("irn", irn_make_cam, "irn-npy"),
        ("seam", seam_infer, "seam-npy"),
        ("puzzlecam", puzzlecam_inference, "puzzlecam-npy"),
        ("clip-es", clip_es_generate, "clip-es-npy"),
    ):
        writer(folder(name, fmt), keys, cams)
    one = Blob(storage_stream(1, floats(0.5)))
    big = Blob(storage_stream(1 << 18, bytes(4 << 18)))
    nested: list = [1.0]
    for _ in range(5):
        nested = [nested] * 70
    for name, content in {
        "claims-1e12": {"keys": keys, "high_res": Tensor(Blob(storage_stream(10**12, b"")), 0,
                                                         (20, *shape), (0, 0, 0))},
        "zero-stride-huge": {"keys": keys, "high_res": Tensor(one, 0, (20, 10**5, 10**5),
                                                              (0, 0, 0))},
        "zero-stride-legit": {"keys": keys, "high_res": Tensor(one, 0, (20, *shape), (0, 0, 0))},
        "300-views": {"keys": keys, "high_res": cams[:1].repeat(20, 0),
                      "x": [Tensor(big, 0, (1, *shape), (0, 0, 0)) for _ in range(300)]},
        "shared-1.7e9": {"keys": keys, "high_res": Tensor(one, 0, (20, *shape), (0, 0, 0)),
                       "x": nested},
    }.items():  # fmt: skip
        crafted(folder(name, "irn-npy"), content)
    report = measure_reads(tmp_path, files)
    outcome = report["outcome"]
    assert {k for k, v in outcome.items() if v == "read"} == {
        "irn", "seam", "puzzlecam", "clip-es", "zero-stride-legit", "300-views", "shared-1.7e9"
    }, outcome  # fmt: skip
    assert "1,000,000,000,000 elements" in outcome["claims-1e12"]
    assert "100000x100000 differs" in outcome["zero-stride-huge"]
    assert report["peak"] - report["baseline"] < 2 * cams.nbytes, report
