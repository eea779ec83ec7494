"""Crafted map files (issue 16, classes 1, 2 and 5): the restricted reader, memory budgets
checked before allocation, and files that would block a read. Every payload is made here."""

from __future__ import annotations

import io
import json
import os
import pickle
import shutil
import struct
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from numpy.lib import format as npy_format
from PIL import Image

from wsssbed.activation import read_activation
from wsssbed.datasets import get_dataset
from wsssbed.errors import InputError
from wsssbed.io.budget import MapBudget
from wsssbed.io.safe_pickle import load_npy

VOC = get_dataset("voc2012")
SHAPE = (4, 5)
BUDGET = MapBudget(20, SHAPE)
RECONSTRUCT = np.ndarray.__reduce__(np.zeros(1))[0]  # numpy's own `_reconstruct`


class Reduce:
    """Pickles as `func(*args)` then `__setstate__(state)`: how payloads are hand-built."""

    def __init__(self, func, args, state=None):
        self.func, self.args, self.state = func, args, state

    def __reduce__(self):
        return (self.func, self.args) if self.state is None else (self.func, self.args, self.state)


def dtype(code: str, state=(3, "<", None, None, None, -1, -1, 0)) -> Reduce:
    return Reduce(np.dtype, (code, False, True), state)


def array(shape, descr: Reduce, data) -> Reduce:
    return Reduce(RECONSTRUCT, (np.ndarray, (0,), b"b"), (1, shape, descr, False, data))


def write_pickled(path: Path, content, protocol: int = 4) -> Path:
    """An `.npy` whose payload is `content` pickled, behind an object-dtype header."""
    with open(path, "wb") as stream:
        npy_format.write_array_header_1_0(
            stream, {"descr": "|O", "fortran_order": False, "shape": ()}
        )
        pickle.dump(content, stream, protocol=protocol)
    return path


def irn(keys: Reduce, cams: Reduce) -> Reduce:
    return array(
        (), dtype("O8", (3, "|", None, None, None, -1, -1, 63)), [{"keys": keys, "high_res": cams}]
    )


GOOD_KEYS = array((1,), dtype("i8"), np.array([14], "<i8").tobytes())
GOOD_CAMS = array((1, *SHAPE), dtype("f4"), np.full((1, *SHAPE), 0.5, "<f4").tobytes())


OBJECT_STATE = (3, "|", None, None, None, -1, -1, 63)
# an object field at an offset past the item: numpy's own __setstate__ corrupts memory
OBJECT_FIELD = (3, "|", None, ("a",), {"a": (np.dtype("O"), 4096)}, 8, 1, 63)
TWO_FIELDS = (3, "|", None, ("a", "b"), {"a": (np.dtype("f4"), 0), "b": (np.dtype("i4"), 4)},
              8, 1, 0)  # fmt: skip
CRAFTED = {
    "object-field-offset": (array((1,), dtype("f8", OBJECT_FIELD), bytes(8)), "user-built dtype"),
    "structured": (array((1,), dtype("f8", TWO_FIELDS), bytes(8)), "user-built dtype"),
    "void-code": (array((1,), dtype("V8"), bytes(8)), "plain numeric"),
    "itemsize": (
        array((1,), dtype("f4", (3, "<", None, None, None, 64, 1, 0)), bytes(64)),
        "custom item size",
    ),
    "unicode": (array((2,), dtype("U10"), bytes(80)), "plain numeric"),
    "object-inner": (array((2,), dtype("O8", OBJECT_STATE), [1, 2]), "0-d top-level"),
    "huge-shape": (array((1, 40000, 40000), dtype("f4"), bytes(8)), "40000x40000 differs"),
    "short-data": (array((1, *SHAPE), dtype("f4"), bytes(8)), "needs 80 bytes, has 8"),
    "list-data": (array((1, *SHAPE), dtype("f4"), [0.0] * 20), "must be bytes"),
    "negative-shape": (array((1, -5, 2), dtype("f4"), b""), "non-negative"),
    "eval": (Reduce(eval, ("1+1",)), "builtins.eval"),
    "system": (Reduce(os.system, ("true",)), "system"),
    "codecs": (Reduce(__import__("codecs").encode, ("x", "rot13")), "latin-1"),
    "bare-dtype": (Reduce(np.dtype, ("f4", False, True)), "bare dtype"),
    "deep": ([[[[[[[[[[GOOD_CAMS]]]]]]]]]], "nested"),
}


@pytest.mark.parametrize("name", CRAFTED)
def test_crafted_pickles_are_refused_with_a_message(tmp_path, name):
    cams, message = CRAFTED[name]
    path = write_pickled(tmp_path / "x.npy", irn(GOOD_KEYS, cams))
    with pytest.raises(InputError, match=message) as info:
        load_npy(path, BUDGET)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_every_pickle_protocol_numpy_writes_is_read(tmp_path, protocol):
    """Protocol 2 (older numpy) stores bytes through `_codecs.encode`; 5 uses `_frombuffer`."""
    cams = np.random.default_rng(protocol).random((2, *SHAPE), dtype=np.float32)
    content = np.empty((), dtype=object)
    content[()] = {"keys": np.array([14, 3]), "high_res": np.asfortranarray(cams)}
    write_pickled(tmp_path / "a.npy", content, protocol)
    maps = read_activation(tmp_path, "a", "irn-npy", VOC, shape=SHAPE)
    assert maps.class_ids.tolist() == [4, 15] and np.array_equal(maps.cams[1], cams[0])
    assert maps.cams.flags.writeable


def test_a_plain_npy_declaring_ten_trillion_elements_is_refused_from_its_header(tmp_path):
    path = tmp_path / "a.npy"
    with open(path, "wb") as stream:
        npy_format.write_array_header_1_0(
            stream, {"descr": "<f4", "fortran_order": False, "shape": (10**13,)}
        )
    with pytest.raises(InputError, match=r"declares an array of shape \(10000000000000,\)"):
        load_npy(path, BUDGET)


def _npz_member_with_header(archive: zipfile.ZipFile, name: str, shape, zeros: int) -> None:
    with archive.open(name, "w", force_zip64=True) as member:
        npy_format.write_array_header_1_0(
            member, {"descr": "<f4", "fortran_order": False, "shape": shape}
        )
        chunk = bytes(1 << 20)
        for _ in range(zeros):
            member.write(chunk)


def _npz_bomb(path: Path, zeros_mb: int = 64) -> Path:
    """keys fine; cams declares 1 x 40000 x 40000 and deflates 64 MiB of zeros."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        with archive.open("keys.npy", "w") as member:
            np.save(member, np.array([14]))
        _npz_member_with_header(archive, "cams.npy", (1, 40000, 40000), zeros_mb)
    return path


def test_an_npz_bomb_is_refused_before_inflating(tmp_path):
    path = _npz_bomb(tmp_path / "a.npz")
    assert path.stat().st_size < 1 << 20
    with pytest.raises(InputError, match="67,108,992 bytes, above this image's budget"):
        read_activation(tmp_path, "a", "npz", VOC, shape=SHAPE)  # the zip's declared size
    _npz_bomb(tmp_path / "b.npz", zeros_mb=0)  # small member: its npy header is checked
    with pytest.raises(InputError, match="40000x40000 differs from the ground truth's 4x5"):
        read_activation(tmp_path, "b", "npz", VOC, shape=SHAPE)


def test_an_npz_member_shorter_than_its_header_is_refused(tmp_path):
    with zipfile.ZipFile(tmp_path / "a.npz", "w") as archive:
        with archive.open("keys.npy", "w") as member:
            np.save(member, np.array([14]))
        _npz_member_with_header(archive, "cams.npy", (1, *SHAPE), 0)
    with pytest.raises(InputError, match="ends after 0 of 80 bytes"):
        read_activation(tmp_path, "a", "npz", VOC, shape=SHAPE)


def _png(path: Path, shape) -> None:
    Image.fromarray(np.zeros(shape, np.uint8)).save(path)


def test_per_class_pngs_are_budgeted_by_count_and_header(tmp_path):
    from wsssbed.activation import list_activation_ids

    many = tmp_path / "many"
    many.mkdir()
    for key in range(40):  # each file is small; together 40 planes for a 20-class dataset
        _png(many / f"a_{key}.png", SHAPE)
    keys = list_activation_ids(many, "png-per-class")["a"]
    with pytest.raises(InputError, match="40 per-class maps for a; the dataset has 20"):
        read_activation(many, "a", "png-per-class", VOC, keys, shape=SHAPE)
    big = tmp_path / "big"
    big.mkdir()
    _png(big / "a_3.png", (3000, 3000))
    with pytest.raises(InputError, match="3000x3000 differs from the ground truth's 4x5"):
        read_activation(big, "a", "png-per-class", VOC, (3,), shape=SHAPE)
    twice = tmp_path / "twice"
    twice.mkdir()
    _png(twice / "a_16.png", SHAPE)
    _png(twice / "a_016.png", SHAPE)
    with pytest.raises(
        InputError, match=r"a_016.png .*\(a_16.png exists too: two files for one class\)"
    ):
        list_activation_ids(twice, "png-per-class")


def test_a_file_over_the_budget_is_refused_before_it_is_read(tmp_path):
    path = tmp_path / "a.npy"
    path.write_bytes(b"\x93NUMPY" + bytes(BUDGET.max_bytes + (1 << 17)))
    with pytest.raises(InputError, match="above this image's budget"):
        load_npy(path, BUDGET)


MEASURE = """
import json, resource, sys
from pathlib import Path
from wsssbed.activation import read_activation
from wsssbed.datasets import get_dataset
from wsssbed.errors import InputError
voc, folder = get_dataset("voc2012"), Path(sys.argv[1])
shape = (375, 500)
def peak():  # this program's high-water mark (ru_maxrss keeps the forked parent's on Linux)
    try:
        with open("/proc/self/status") as status:
            line = next(l for l in status if l.startswith("VmHWM:"))
        return int(line.split()[1]) * 1024
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
read_activation(folder / "legit", "a", "npz", voc, shape=shape)
baseline = peak()
outcome = {}
for name, fmt in json.loads(sys.argv[2]).items():
    try:
        keys = tuple(range(40)) if fmt == "png-per-class" else None
        read_activation(folder / name, "a", fmt, voc, keys, shape=shape)
        outcome[name] = "read"
    except InputError as error:
        outcome[name] = error.problem
print(json.dumps({"baseline": baseline, "peak": peak(), "outcome": outcome}))
"""


def measure_reads(folder: Path, formats: dict[str, str]) -> dict:
    """Peak memory of a fresh process that reads `folder/legit/a.npz` (the largest maps
    of a 375x500 VOC image), then `folder/<name>/` in format `formats[name]` for each
    name: {"baseline", "peak" (bytes), "outcome": name -> "read" or the error}."""
    result = subprocess.run(
        [sys.executable, "-c", MEASURE, str(folder), json.dumps(formats)],
        capture_output=True, text=True, timeout=300, check=True,
    )  # fmt: skip
    report = json.loads(result.stdout)
    print(report)  # shown with -rP: the measured growth
    return report


def test_crafted_inputs_stay_within_twice_the_largest_legitimate_maps(tmp_path):
    """Peak memory of a fresh process reading every crafted file, after one legitimate read
    of the largest maps an image can have (20 classes at 375x500)."""
    shape = (375, 500)
    (tmp_path / "legit").mkdir()
    cams = np.random.default_rng(0).random((20, *shape), dtype=np.float32)
    np.savez(tmp_path / "legit/a.npz", keys=np.arange(20), cams=cams)
    legit_bytes = cams.nbytes
    crafted = {}
    for name in ("pickle", "header", "bomb", "pngs"):
        (tmp_path / name).mkdir()
    write_pickled(
        tmp_path / "pickle/a.npy", irn(GOOD_KEYS, array((1, 40000, 40000), dtype("f4"), b""))
    )
    crafted["pickle"] = "irn-npy"
    with open(tmp_path / "header/a.npy", "wb") as stream:
        npy_format.write_array_header_1_0(
            stream, {"descr": "<f8", "fortran_order": False, "shape": (10**13,)}
        )
    crafted["header"] = "irn-npy"
    _npz_bomb(tmp_path / "bomb/a.npz", zeros_mb=256)
    crafted["bomb"] = "npz"
    for key in range(40):
        _png(tmp_path / "pngs" / f"a_{key}.png", shape)
    crafted["pngs"] = "png-per-class"
    report = measure_reads(tmp_path, crafted)
    assert all(outcome != "read" for outcome in report["outcome"].values()), report
    assert report["peak"] - report["baseline"] < 2 * legit_bytes, report


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes are POSIX")
@pytest.mark.parametrize("where", ["activation", "saliency", "ground truth"])
def test_a_named_pipe_in_an_input_folder_is_refused_not_waited_on(sample_root, tmp_path, where):
    root = tmp_path / "copy"
    shutil.copytree(sample_root, root, ignore=shutil.ignore_patterns("irn-npy", "png-per-class"))
    target = {
        "activation": root / "activation/sample-cam/npz/sample_0003.npz",
        "saliency": root / "saliency/sample-sal/sample_0003.png",
        "ground truth": root / "VOC2012/SegmentationClass/sample_0003.png",
    }[where]
    target.unlink()
    os.mkfifo(target)
    command = [
        sys.executable, "-m", "wsssbed.cli", "sweep", "--data-root", str(root), "--split",
        "train", "--activation", str(root / "activation/sample-cam/npz"), "--activation-format",
        "npz", "--allow-extra-maps", "--generator", "saliency-rule", "--saliency",
        str(root / "saliency/sample-sal"), "--sal-thresholds", "0.2", "--thresholds", "0.3",
        "--out", str(tmp_path / "results"), "--workers", "0",
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    assert "not a regular file" in result.stderr and "sample_0003" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "results").exists()


PIPES = """
import sys
from pathlib import Path
from wsssbed.io.archive import extract
from wsssbed.datasets import get_dataset, load_spec
from wsssbed.datasets.local import read_id_list, read_label_list
from wsssbed.errors import InputError
pipe = Path(sys.argv[1])
for call in (lambda: load_spec(pipe), lambda: read_id_list(pipe),
             lambda: read_label_list(pipe, get_dataset("voc2012")),
             lambda: extract(pipe, pipe.parent / "out")):
    try:
        call()
        print("read")
    except InputError as error:
        print(error.problem)
"""


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes are POSIX")
def test_a_named_pipe_as_a_spec_list_or_archive_is_refused(tmp_path):
    pipe = tmp_path / "spec.toml"
    os.mkfifo(pipe)
    result = subprocess.run(
        [sys.executable, "-c", PIPES, str(pipe)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["not a regular file (a pipe, device or folder); "
                                          "give a plain file"] * 4  # fmt: skip


@pytest.mark.parametrize("key", ["99999999999999999999", "²", "٣", "25"])
def test_a_per_class_key_that_is_no_class_is_refused_naming_the_file(sample_root, tmp_path, key):
    """Issue 25 section 5: not skipped, not an "unexpected OverflowError"."""
    from conftest import run_cli

    folder = tmp_path / "maps"
    shutil.copytree(sample_root / "activation/sample-cam/png-per-class", folder)
    odd = folder / f"sample_0003_{key}.png"
    shutil.copy(next(folder.glob("sample_0003_*.png")), odd)
    result = run_cli(
        "sweep", "--data-root", sample_root, "--split", "train", "--activation", folder,
        "--allow-extra-maps", "--thresholds", "0.3", "--out", tmp_path / "out",
    )  # fmt: skip
    error = " ".join(result.stderr.split())
    assert result.exit_code == 2 and "unexpected" not in error, error
    assert str(odd).replace(" ", "") in error.replace(" ", "")
    assert ("ASCII digits" if not key.isascii() else "class") in error
    assert not (tmp_path / "out").exists()


COLLIDE = 2**61 - 1  # every k * (2**61 - 1) hashes to 0: dict building turns quadratic


def _colliding_dict(count: int, how: str) -> bytes:
    """A protocol-2 pickle of a dict of `count` integer keys sharing one hash."""
    pairs = [pickle.dumps(k * COLLIDE, 2)[2:-1] + b"N" for k in range(1, count + 1)]
    if how == "setitems":
        return b"\x80\x02}(" + b"".join(pairs) + b"u."
    if how == "setitem":
        return b"\x80\x02}" + b"".join(pair + b"s" for pair in pairs) + b"."
    if how == "dict":
        return b"\x80\x02(" + b"".join(pairs) + b"d."
    # a MARK popped again (POP right after it) must not hide the entries from the count
    return b"\x80\x02}(" + b"".join(pairs) + b"(0u."


@pytest.mark.parametrize("how", ["setitems", "setitem", "dict", "popped-mark"])
def test_dict_keys_sharing_one_hash_are_refused_before_unpickling(tmp_path, how):
    """The red team's 33,000 colliding keys cost 12-30 s per file inside the unpickler,
    before the value limit applied; the scan now counts dict entries first."""
    path = tmp_path / "x.npy"
    for count, seconds in ((1_001, 1.0), (45_000, 5.0)):
        with open(path, "wb") as stream:
            npy_format.write_array_header_1_0(
                stream, {"descr": "|O", "fortran_order": False, "shape": ()}
            )
            stream.write(_colliding_dict(count, how))
        started = time.monotonic()
        with pytest.raises(InputError, match="more than 1,000 dict entries") as info:
            load_npy(path, MapBudget(20, (400, 400)))  # a budget the file fits
        assert time.monotonic() - started < seconds and str(path) in str(info.value)


def test_a_dict_of_many_classes_is_still_read(tmp_path):
    """A SEAM-style dict of 171 class maps (COCO-stuff's count) stays well within."""
    content = {k: np.full(SHAPE, k / 200, np.float32) for k in range(171)}
    path = tmp_path / "a.npy"
    np.save(path, content, allow_pickle=True)
    loaded = load_npy(path, MapBudget(171, SHAPE))
    assert sorted(loaded) == list(range(171)) and float(loaded[170][0, 0]) == np.float32(0.85)


def _damaged(tmp_path: Path) -> dict[str, Path]:
    """Map files that ended in "unexpected ... bug" (red-team finding 11), for an image
    labelled 14 of 4x5 pixels."""
    keys, cams = np.array([14]), np.random.default_rng(0).random((1, *SHAPE), np.float32)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, keys=keys, cams=cams)
    data = bytearray(buffer.getvalue())
    info = zipfile.ZipFile(io.BytesIO(bytes(data))).getinfo("cams.npy")
    name_length, extra = struct.unpack_from("<HH", data, info.header_offset + 26)
    data[info.header_offset + 30 + name_length + extra] = 0xFF  # deflate's reserved block type
    files = {"zlib.npz": bytes(data)}
    buffer = io.BytesIO()
    np.save(buffer, cams)
    data = bytearray(buffer.getvalue())
    data[data.find(b"}")] = ord(" ")  # a header tokenize cannot finish
    files["token.npy"] = bytes(data)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        with archive.open("keys.npy", "w") as member:
            np.save(member, keys)
        archive.writestr("cams.npy", files["token.npy"])
    files["token.npz"] = buffer.getvalue()
    buffer = io.BytesIO()
    npy_format.write_array_header_1_0(
        buffer, {"descr": "<f4", "fortran_order": False, "shape": (-3,)}
    )
    files["negative.npy"] = buffer.getvalue()
    paths = {}
    for name, payload in files.items():
        folder = tmp_path / name.replace(".", "-")
        folder.mkdir()
        paths[name] = folder / f"a{Path(name).suffix}"
        paths[name].write_bytes(payload)
    return paths


@pytest.mark.parametrize(
    "name,message",
    [
        ("zlib.npz", "not a valid .npz file: Error -3 while decompressing"),
        ("token.npz", "the header does not parse"),
        ("token.npy", "the header does not parse"),
        ("negative.npy", r"shape \(-3,\), not non-negative sizes"),
    ],
)
def test_damaged_npz_and_npy_files_are_refused_naming_the_file(tmp_path, name, message):
    path = _damaged(tmp_path)[name]
    layout = "npz" if name.endswith(".npz") else "irn-npy"
    with pytest.raises(InputError, match=message) as info:
        read_activation(path.parent, "a", layout, VOC, shape=SHAPE)
    assert str(path) in str(info.value)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes are POSIX")
def test_a_named_pipe_as_split_is_named_as_such_not_missing(sample_root, tmp_path):
    """`--split FIFO` said "split id file not found" although the file exists."""
    from wsssbed.datasets.local import LocalDataset

    pipe = tmp_path / "ids.txt"
    os.mkfifo(pipe)
    with pytest.raises(InputError, match="not a regular file") as info:
        LocalDataset(VOC, sample_root, str(pipe))
    assert info.value.path == pipe
    with pytest.raises(InputError, match="split id file not found"):
        LocalDataset(VOC, sample_root, str(tmp_path / "missing.txt"))
