"""`datasets prepare` under hostile sources: SBD `.mat` masks and COCO instance files
checked before anything is allocated or cast, errors naming the archive's member, and
the staging folder of a killed run removed by the next one (payloads made here)."""

from __future__ import annotations

import json
import os
import re
import signal
import struct
import subprocess
import sys
import tarfile
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from conftest import run_cli
from peak_memory import measure
from PIL import Image
from scipy.io import loadmat, savemat

from wsssbed.datasets import get_dataset
from wsssbed.datasets.coco import MAX_LAYERS, _paint, read_instances, rle_counts
from wsssbed.datasets.local import LocalDataset
from wsssbed.datasets.prepare import prepare
from wsssbed.errors import InputError
from wsssbed.io.matfile import read_struct_field
from wsssbed.io.staging import MARKER, Staging, beside, remove_stale

VOC = get_dataset("voc2012")
COCO = get_dataset("coco2014")

# --- a MATLAB level-5 writer for crafted files (MathWorks' "MAT-File Format") ------------

MI = {"i1": 1, "u1": 2, "i2": 3, "u2": 4, "i4": 5, "u4": 6, "f4": 7, "f8": 9, "i8": 12, "u8": 13}
MX = {"double": 6, "single": 7, "int8": 8, "uint8": 9, "int16": 10, "uint16": 11,
      "int32": 12, "uint32": 13}  # fmt: skip


def _element(kind: int, data: bytes) -> bytes:
    return struct.pack("<II", kind, len(data)) + data + b"\0" * (-len(data) % 8)


def _matrix(mx: str, dims: tuple[int, ...], data: bytes, stored: str, flags: int = 0) -> bytes:
    """A numeric miMATRIX (no name: a struct field) whose data is `data` stored as `stored`."""
    return _element(14, _element(6, struct.pack("<II", MX[mx] | flags << 8, 0))
                    + _element(5, struct.pack(f"<{len(dims)}i", *dims)) + _element(1, b"")
                    + _element(MI[stored], data))  # fmt: skip


def _gtcls(fields: dict[str, bytes]) -> bytes:
    """A 1x1 struct `GTcls` with these fields (each a `_matrix`)."""
    names = b"".join(n.encode().ljust(32, b"\0") for n in fields)
    body = (_element(6, struct.pack("<II", 2, 0)) + _element(5, struct.pack("<2i", 1, 1))
            + _element(1, b"GTcls") + _element(5, struct.pack("<i", 32)) + _element(1, names)
            + b"".join(fields.values()))  # fmt: skip
    return _element(14, body)


def _mat(path: Path, variable: bytes, compressed: bool = True) -> Path:
    header = b"MATLAB 5.0 MAT-file, crafted by a test".ljust(116) + bytes(8) + b"\x00\x01IM"
    if compressed:
        packed = zlib.compress(variable, 1)
        variable = struct.pack("<II", 15, len(packed)) + packed
    path.write_bytes(header + variable)
    return path


def _segmentation(values: np.ndarray, mx: str, stored: str, dims=None) -> bytes:
    data = np.asarray(values).astype(stored).T.tobytes()  # MATLAB stores columns first
    return _matrix(mx, dims or values.shape, data, stored)


def test_the_mat_reader_agrees_with_scipy_on_what_scipy_and_matlab_write(tmp_path):
    rng = np.random.default_rng(0)
    for compressed in (False, True):
        for dtype in (np.uint8, np.int16, np.uint16, np.int32):
            mask = rng.integers(0, 21, (7, 9)).astype(dtype)
            path = tmp_path / f"{compressed}-{np.dtype(dtype).name}.mat"
            savemat(path, {"before": np.ones((3, 3)), "GTcls": {
                "Boundaries": np.array([[1, 2]]), "Segmentation": mask,
                "CategoriesPresent": np.array([7])}}, do_compression=compressed)  # fmt: skip
            expected = loadmat(path, squeeze_me=True, struct_as_record=False)["GTcls"]
            got = read_struct_field(path, "GTcls", "Segmentation", 20)
            assert got.dtype == np.uint8 and np.array_equal(got, expected.Segmentation)
    crafted = _mat(tmp_path / "crafted.mat", _gtcls({
        "Boundaries": _matrix("double", (1, 2), np.zeros(2).tobytes(), "f8"),
        "Segmentation": _segmentation(mask, "uint16", "u1")}))  # fmt: skip
    assert np.array_equal(read_struct_field(crafted, "GTcls", "Segmentation", 20), mask)
    assert np.array_equal(loadmat(crafted)["GTcls"]["Segmentation"][0, 0], mask)


@pytest.mark.parametrize(
    ("name", "field", "message"),
    [
        ("negative", _segmentation(np.full((4, 5), -236), "int16", "i2"), "holds -236"),
        ("above", _segmentation(np.full((4, 5), 21), "uint8", "u1"), "holds 21, outside 0..20"),
        ("nan", _segmentation(np.full((4, 5), np.nan), "double", "f8"), "double array"),
        ("fraction", _segmentation(np.full((4, 5), 3.7), "double", "f8"), "double array"),
        ("compact double", _segmentation(np.ones((4, 5)), "double", "u1"), "double array"),
        ("logical", _matrix("uint8", (4, 5), bytes(20), "u1", flags=0x02), "logical array"),
        ("floats stored", _matrix("int16", (4, 5), np.zeros(20).tobytes(), "f8"), "not as integ"),
        ("3-D", _matrix("uint8", (2, 2, 5), bytes(20), "u1"), "expected a 2-D label map"),
        ("short", _matrix("uint8", (40, 50), bytes(20), "u1"), "declares 40x50 values but"),
        ("huge", _matrix("uint8", (30000, 30000), bytes(8), "u1"), "above the 64,000,000-pixel"),
    ],
)
def test_sbd_masks_are_checked_before_they_are_read_or_cast(tmp_path, name, field, message):
    for compressed in (False, True):
        path = _mat(tmp_path / f"{compressed}.mat", _gtcls({"Segmentation": field}), compressed)
        with pytest.raises(InputError, match=message) as info:
            read_struct_field(path, "GTcls", "Segmentation", 20)
        assert info.value.path == path


def test_malformed_mat_files_are_refused_naming_the_file(tmp_path):
    good = _gtcls({"Segmentation": _segmentation(np.zeros((4, 5)), "uint8", "u1")})
    cases = {
        "v73": b"MATLAB 7.3 MAT-file, HDF5".ljust(128),
        "truncated": _mat(tmp_path / "t", good, compressed=False).read_bytes()[:-10],
        "bad zlib": _mat(tmp_path / "z", good).read_bytes()[:140] + b"\xff" * 40,
        "no field": _mat(
            tmp_path / "f", _gtcls({"Other": _matrix("uint8", (1, 1), b"\0", "u1")})
        ).read_bytes(),
        "lying count": _mat(
            tmp_path / "c", good[:4] + struct.pack("<I", 10**9) + good[8:], compressed=False
        ).read_bytes(),
    }
    for name, payload in cases.items():
        path = tmp_path / f"{name}.mat"
        path.write_bytes(payload)
        with pytest.raises(InputError) as info:
            read_struct_field(path, "GTcls", "Segmentation", 20)
        assert info.value.path == path, name


def _small(kind: int, data: bytes, count: int) -> bytes:
    """A small element (type and count in one word, up to 4 bytes of data in the next)
    that may claim more than the 4 bytes it can hold."""
    return struct.pack("<I", count << 16 | kind) + data.ljust(4, b"\0")


def test_elements_of_the_wrong_size_are_refused_not_unpacked(tmp_path):
    """Red-team finding 11: these four layouts escaped as `struct.error` / `ValueError`
    ("unexpected ... bug", no file named)."""
    flags, dims = _element(6, struct.pack("<II", MX["uint8"], 0)), struct.pack("<2i", 2, 2)
    name, data = _element(1, b""), _element(MI["u1"], bytes(4))
    names = b"Segmentation".ljust(32, b"\0")

    def gtcls(field: bytes, name_length: bytes = _element(5, struct.pack("<i", 32))) -> bytes:
        return _element(14, _element(6, struct.pack("<II", 2, 0))
                        + _element(5, struct.pack("<2i", 1, 1)) + _element(1, b"GTcls")
                        + name_length + _element(1, names) + field)  # fmt: skip

    long_length = _element(5, struct.pack("<ii", 32, 0))
    short_dims = _element(5, struct.pack("<ih", 2, 2))
    lying_data = _small(MI["u1"], b"\1\1\1\1", 16)
    cases = {
        "flags claim 8 in a small element": (
            gtcls(_element(14, _small(6, b"\x09", 8) + _element(5, dims) + name + data)),
            "a small element claims 8 bytes",
        ),
        "field name length of 8 bytes": (
            gtcls(_element(14, flags + _element(5, dims) + name + data), long_length),
            "field name length declares 8 bytes, not 4",
        ),
        "dimensions of 6 bytes": (
            gtcls(_element(14, flags + short_dims + name + data)),
            "dimensions declares 6 bytes, not a multiple of 4",
        ),
        "data claim 16 in a small element": (
            gtcls(_element(14, flags + _element(5, struct.pack("<2i", 4, 4)) + name + lying_data)),
            "a small element claims 16 bytes",
        ),
    }
    for case, (variable, message) in cases.items():
        path = _mat(tmp_path / "crafted.mat", variable)
        with pytest.raises(InputError, match=message) as info:
            read_struct_field(path, "GTcls", "Segmentation", 20)
        assert info.value.path == path, case
    legit = gtcls(_element(14, flags + _element(5, dims) + name + data))
    values = read_struct_field(_mat(tmp_path / "legit.mat", legit), "GTcls", "Segmentation", 20)
    assert values.shape == (2, 2) and not values.any()


MEASURE_MAT = """
from pathlib import Path
from wsssbed.errors import InputError
from wsssbed.io.matfile import read_struct_field
folder = Path(sys.argv[1])
read_struct_field(folder / "legit.mat", "GTcls", "Segmentation", 20)
baseline = peak()
outcome = {}
for name in ("declared", "compact"):
    try:
        read_struct_field(folder / f"{name}.mat", "GTcls", "Segmentation", 20)
        outcome[name] = "read"
    except InputError as error:
        outcome[name] = error.problem
report(baseline=baseline, peak=peak(), outcome=outcome)
"""


def test_an_inflating_mat_file_costs_no_more_than_a_legitimate_mask(tmp_path):
    """The review's 1.78 MB file that scipy inflated to 8.65 GB: a compressed double
    array stored compactly as bytes, and one declaring more pixels than the budget."""
    legit = np.zeros((1500, 2000), dtype=np.uint8)
    _mat(tmp_path / "legit.mat", _gtcls({"Segmentation": _segmentation(legit, "uint8", "u1")}))
    _mat(tmp_path / "declared.mat", _gtcls({"Segmentation": _matrix(
        "uint8", (9000, 9000), bytes(9000 * 9000), "u1")}))  # fmt: skip
    _mat(tmp_path / "compact.mat", _gtcls({"Segmentation": _matrix(
        "double", (6000, 6000), bytes(6000 * 6000), "u1")}))  # fmt: skip
    assert (tmp_path / "compact.mat").stat().st_size < 200_000  # 288 MB as scipy reads it
    result = measure(MEASURE_MAT, tmp_path)
    print(result)
    assert "above the 64,000,000-pixel budget" in result["outcome"]["declared"]
    assert "double array" in result["outcome"]["compact"]
    assert result["peak"] - result["baseline"] < legit.nbytes, result


# --- COCO instance files ------------------------------------------------------------------


def _coco(path: Path, annotations: list[dict], size=(40, 60), images=None) -> Path:
    image = {"id": 7, "file_name": "COCO_val2014_000000000007.jpg", "height": size[0],
             "width": size[1], "license": 3, "coco_url": "http://x"}  # fmt: skip
    base = {"id": 1, "image_id": 7, "category_id": 1, "iscrowd": 0, "area": 10.0,
            "bbox": [0, 0, 1, 1]}  # fmt: skip
    data = {"info": {}, "images": images or [image], "categories": [],
            "annotations": [{**base, **a} for a in annotations]}  # fmt: skip
    path.write_text(json.dumps(data))
    return path


def test_checked_annotations_paint_what_pycocotools_paints(tmp_path):
    from pycocotools import mask as mask_utils

    rng = np.random.default_rng(3)
    crowd = (rng.random((40, 60)) < 0.3).astype(np.uint8)
    encoded = mask_utils.encode(np.asfortranarray(crowd))
    polygon = [5.5, 3, 50, 4, 45.2, 30, 8, 35]
    tiny = [1, 1, 2, 2]  # two points: dropped, as detectron2 does
    path = _coco(tmp_path / "instances_val2014.json", [
        {"id": 1, "segmentation": [polygon, tiny], "category_id": 18, "area": 900},
        {"id": 2, "segmentation": {"size": [40, 60], "counts": encoded["counts"].decode()},
         "iscrowd": 1},
        {"id": 3, "segmentation": [[20, 10, 30, 10, 30, 20, 20, 20]], "category_id": 3,
         "area": 100}])  # fmt: skip
    out = tmp_path / "coco"
    assert prepare("coco2014", [path], out) == {"val": 1}
    got = LocalDataset(COCO, out, "val").read_gt("COCO_val2014_000000000007")
    expected = np.zeros((40, 60), dtype=np.uint8)
    expected[crowd.astype(bool)] = 255
    for poly, class_id in ((polygon, 17), ([20, 10, 30, 10, 30, 20, 20, 20], 3)):
        rle = mask_utils.merge(mask_utils.frPyObjects([poly], 40, 60))
        expected[mask_utils.decode(rle).astype(bool)] = class_id  # dog (18) is class 17
    assert np.array_equal(got, expected)


def test_rle_strings_decode_as_pycocotools_encodes_them():
    from pycocotools import mask as mask_utils

    rng = np.random.default_rng(0)
    for trial in range(100):
        height, width = (int(v) for v in rng.integers(1, 50, 2))
        mask = (rng.random((height, width)) < rng.random()).astype(np.uint8)
        encoded = mask_utils.encode(np.asfortranarray(mask))
        counts = rle_counts(encoded["counts"].decode())
        assert sum(counts) == height * width
        again = mask_utils.frPyObjects({"size": [height, width], "counts": counts},
                                       height, width)  # fmt: skip
        assert again["counts"] == encoded["counts"], trial


def test_painting_within_the_columns_equals_pycocotools_decode():
    """`_paint` decodes only the strip of columns an annotation's runs cover: the pixels
    are exactly pycocotools' full-picture `decode`, for random polygons (some reaching
    past the borders) and RLEs (list and compressed counts)."""
    from pycocotools import mask as mask_utils

    rng = np.random.default_rng(11)
    for trial in range(300):
        height, width = (int(v) for v in rng.integers(1, 60, 2))
        if trial % 3 == 2:
            bits = (rng.random((height, width)) < rng.random() * 0.3).astype(np.uint8)
            encoded = mask_utils.encode(np.asfortranarray(bits))
            counts = encoded["counts"].decode()
            segmentation = {"size": [height, width],
                            "counts": counts if trial % 2 else rle_counts(counts)}  # fmt: skip
            rle = mask_utils.frPyObjects(segmentation, height, width) if trial % 2 == 0 else encoded
        else:
            centre = rng.uniform(-0.2, 1.2, 2) * (width, height)
            spread = rng.uniform(0.5, max(height, width) / 2)
            sizes = [int(rng.integers(3, 9)) for _ in range(int(rng.integers(1, 3)))]
            points = [centre + rng.normal(0, spread, (n, 2)) for n in sizes]
            segmentation = [p.round(2).ravel().tolist() for p in points]
            rle = mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width))
        expected = rng.integers(0, 4, (height, width)).astype(np.uint8)
        got = expected.copy()
        expected[mask_utils.decode(rle).astype(bool)] = 9
        _paint(got, mask_utils, segmentation, 9)
        assert np.array_equal(got, expected), trial


def test_many_small_polygons_on_a_large_picture_cost_their_strips(tmp_path):
    """The red team's 11 KB file (one 8000x8000 picture, 100 triangles) took 65 s, a full
    picture pass per annotation: now each costs the columns it spans. Annotations
    decoding more than `MAX_LAYERS` pictures' worth (whole-picture RLEs) are refused."""
    rng = np.random.default_rng(5)
    triangles = []
    for index in range(400):
        x, y = (float(v) for v in rng.uniform(10, 3980, 2))
        triangles.append({"id": index + 1, "category_id": 1, "area": 20.0,
                          "segmentation": [[x, y, x + 6, y, x + 3, y + 6]]})  # fmt: skip
    path = _coco(tmp_path / "instances_val2014.json", triangles, size=(4000, 4000))
    started = time.monotonic()
    assert prepare("coco2014", [path], tmp_path / "coco") == {"val": 1}
    assert time.monotonic() - started < 20  # about 90 s at a picture pass per annotation
    mask = LocalDataset(COCO, tmp_path / "coco", "val").read_gt("COCO_val2014_000000000007")
    assert (mask == 1).sum() > 400 * 10  # every triangle painted (person is class 1)

    whole = {"iscrowd": 1, "segmentation": {"size": [40, 60], "counts": [2400]}}
    path = _coco(tmp_path / "rle.json", [{**whole, "id": i + 1} for i in range(MAX_LAYERS + 1)])
    with pytest.raises(InputError, match=f"cover more than {MAX_LAYERS} times its 60x40"):
        read_instances(path, COCO)
    assert len(read_instances(_coco(path, [{**whole, "id": i + 1} for i in range(MAX_LAYERS)]),
                              COCO)[1][7]) == MAX_LAYERS  # fmt: skip


def test_two_images_writing_one_mask_are_refused_naming_both(tmp_path):
    """`a/0001.jpg` and `b/0001.jpg` (or `a.jpg` and `a.png`) would both write 0001.png:
    the last one silently won, with "wrote 2 masks"."""
    for first, second in (("a/0001.jpg", "b/0001.jpg"), ("a.jpg", "a.png")):
        images = [{"id": 1, "file_name": first, "height": 10, "width": 10},
                  {"id": 2, "file_name": second, "height": 5, "width": 5}]  # fmt: skip
        path = _coco(tmp_path / "instances_val2014.json", [], images=images)
        with pytest.raises(InputError, match="would both write mask") as info:
            read_instances(path, COCO)
        assert repr(first) in str(info.value) and repr(second) in str(info.value)
        assert info.value.path == path
    stem = Path(second).stem
    result = run_cli("datasets", "convert-coco", "--annotations", path, "--out", tmp_path / "out")
    assert result.exit_code == 2 and f"would both write mask {stem}.png" in result.stderr
    assert "Traceback" not in result.output and not (tmp_path / "out").exists()


BAD_COCO = {
    "RLE larger than its image": (
        {"segmentation": {"size": [4000, 4000], "counts": [16_000_000]}, "iscrowd": 1},
        "RLE size [4000, 4000] differs",
    ),
    "RLE counts short": (
        {"segmentation": {"size": [40, 60], "counts": [10, 20]}, "iscrowd": 1},
        "cover 30 pixels, not the image's 2,400",
    ),
    "RLE negative": (
        {"segmentation": {"size": [40, 60], "counts": [2500, -100]}, "iscrowd": 1},
        "non-negative",
    ),
    "RLE string cut": (
        {"segmentation": {"size": [40, 60], "counts": "0Q"}, "iscrowd": 1},
        "ends inside a number",
    ),
    "RLE string bytes": (
        {"segmentation": {"size": [40, 60], "counts": "ab~"}, "iscrowd": 1},
        "outside '0'..'o'",
    ),
    "polygon 1e9": ({"segmentation": [[0, 0, 1e9, 0, 1e9, 1e9]]}, "not finite or lies"),
    "polygon NaN": ({"segmentation": [[0, 0, float("nan"), 5, 9, 9]]}, "not finite or lies"),
    "polygon odd": ({"segmentation": [[0, 0, 5, 5, 9]]}, "odd number"),
    "polygon zigzag": ({"segmentation": [[0, 0, 119, 79] * 2000]}, "outline is"),
    "polygon bools": ({"segmentation": [[True, 0, 5, 5, 9, 9]]}, "`segmentation` must be"),
    "unknown image": ({"image_id": 8, "segmentation": []}, "image id 8 is not among"),
    "category text": ({"category_id": "1", "segmentation": []}, "`category_id` must be an int"),
    "crowd 2": ({"iscrowd": 2, "segmentation": []}, "iscrowd must be 0 or 1"),
    "area NaN": ({"area": float("nan"), "segmentation": []}, "area must be a finite"),
    "segmentation null": ({"segmentation": None}, "`segmentation` must be"),
}


@pytest.mark.parametrize("case", sorted(BAD_COCO))
def test_bad_coco_annotations_are_refused_before_pycocotools(tmp_path, case):
    annotation, message = BAD_COCO[case]
    path = _coco(tmp_path / "instances_val2014.json", [annotation])
    with pytest.raises(InputError, match=re.escape(message)) as info:
        read_instances(path, COCO)
    assert info.value.path == path and "annotation 1" in str(info.value)


def _prepare_cli(*args, timeout=120):
    command = [sys.executable, "-m", "wsssbed.cli", "datasets", "prepare", *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("case", ["polygon 1e9", "polygon NaN", "RLE string cut"])
def test_annotations_that_crashed_pycocotools_end_in_one_line(tmp_path, case):
    """In a separate process: without the checks these kill it with SIGSEGV."""
    path = _coco(tmp_path / "instances_val2014.json", [BAD_COCO[case][0]])
    result = _prepare_cli("coco2014", "--from", path, "--out", tmp_path / "coco")
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert str(path) in result.stderr and "annotation 1" in result.stderr
    assert "Traceback" not in result.stderr and "unexpected" not in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["instances_val2014.json"]


MALFORMED = {
    "not an object": "[1, 2]",
    "images not a list": '{"images": {}, "annotations": []}',
    "no annotations": '{"images": []}',
    "image without height": '{"images": [{"id": 1, "file_name": "a.jpg", "width": 4}], '
    '"annotations": []}',
    "height as text": '{"images": [{"id": 1, "file_name": "a.jpg", "width": 4, "height": "4"}],'
    ' "annotations": []}',
    "annotation a number": '{"images": [], "annotations": [5]}',
    "id a float": '{"images": [{"id": 1.5, "file_name": "a.jpg", "width": 4, "height": 4}], '
    '"annotations": []}',
    "deep": "[" * 100_000 + "]" * 100_000,
    "huge integer": '{"images": [{"id": ' + "9" * 5000 + "}]}",
    "twice": '{"images": [{"id": 1, "file_name": "a.jpg", "width": 4, "height": 4}, '
    '{"id": 1, "file_name": "b.jpg", "width": 4, "height": 4}], "annotations": []}',
    "empty picture": '{"images": [{"id": 1, "file_name": "a.jpg", "width": 0, "height": 4}], '
    '"annotations": []}',
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_coco_files_name_the_file(tmp_path, case):
    path = tmp_path / "instances_val2014.json"
    path.write_text(MALFORMED[case])
    with pytest.raises(InputError) as info:
        read_instances(path, COCO)
    assert info.value.path == path, str(info.value)


MEASURE_COCO = """
from pathlib import Path
from wsssbed.datasets import get_dataset
from wsssbed.datasets.prepare import prepare
from wsssbed.errors import InputError
folder = Path(sys.argv[1])
prepare("coco2014", [folder / "legit/instances_val2014.json"], folder / "out-legit")
baseline = peak()
outcome = {}
for name in ("claimed", "rle"):
    try:
        prepare("coco2014", [folder / name / "instances_val2014.json"], folder / f"out-{name}")
        outcome[name] = "prepared"
    except InputError as error:
        outcome[name] = str(error)
report(baseline=baseline, peak=peak(), outcome=outcome)
"""


def test_a_claimed_picture_size_costs_no_more_than_a_legitimate_one(tmp_path):
    """The review's 292-byte file claiming a 30000x30000 picture (1.77 GB and growing),
    and an RLE larger than its image (419 MB)."""
    for name in ("legit", "claimed", "rle"):
        (tmp_path / name).mkdir()
    _coco(tmp_path / "legit/instances_val2014.json",
          [{"segmentation": [[0, 0, 900, 0, 900, 900]]}], size=(1000, 1500))  # fmt: skip
    _coco(tmp_path / "claimed/instances_val2014.json", [], size=(30000, 30000))
    _coco(tmp_path / "rle/instances_val2014.json", [{"iscrowd": 1, "segmentation": {
        "size": [20000, 20000], "counts": [400_000_000]}}], size=(10, 10))  # fmt: skip
    result = measure(MEASURE_COCO, tmp_path)
    print(result)
    assert "30000x30000 is above the 64,000,000-pixel budget" in result["outcome"]["claimed"]
    assert "RLE size [20000, 20000] differs" in result["outcome"]["rle"]
    assert result["peak"] - result["baseline"] < 1000 * 1500, result


# --- errors name the archive's member; stale staging --------------------------------------


def _voc_tar(tmp_path: Path, broken: bytes | None = None) -> Path:
    voc = tmp_path / "voc/VOCdevkit/VOC2012"
    for folder in ("SegmentationClass", "JPEGImages", "ImageSets/Segmentation"):
        (voc / folder).mkdir(parents=True)
    for image_id in ("a", "b"):
        Image.fromarray(np.full((6, 8), 15, dtype=np.uint8)).save(
            voc / "SegmentationClass" / f"{image_id}.png"
        )
    if broken is not None:
        (voc / "SegmentationClass/b.png").write_bytes(broken)
    (voc / "ImageSets/Segmentation/train.txt").write_text("a\n")
    (voc / "ImageSets/Segmentation/val.txt").write_text("b\n")
    archive = tmp_path / "VOCtrainval.tar"
    with tarfile.open(archive, "w") as handle:
        handle.add(tmp_path / "voc", "", recursive=True)
    return archive


def test_errors_name_the_archive_and_its_member(tmp_path):
    archive = _voc_tar(tmp_path, broken=b"\x89PNG not really")
    with pytest.raises(InputError) as info:
        prepare("voc2012", [archive], tmp_path / "data")
    text = str(info.value)
    assert text.startswith(f"{archive}: VOCdevkit/VOC2012/SegmentationClass/b.png: "), text
    assert ".partial-" not in text and ".sources" not in text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["VOCtrainval.tar", "voc"]


KILLED = """
import os, signal, sys
from pathlib import Path
from wsssbed.datasets.prepare import prepare
def die(done, total):
    os.kill(os.getpid(), signal.SIGKILL)
prepare("voc2012", [Path(sys.argv[1])], Path(sys.argv[2]), die)
"""


def test_a_killed_prepare_leaves_staging_that_the_next_run_removes(tmp_path):
    archive = _voc_tar(tmp_path)
    out = tmp_path / "data"
    killed = subprocess.run([sys.executable, "-c", KILLED, str(archive), str(out)], timeout=120)
    assert killed.returncode == -signal.SIGKILL
    (stale,) = tmp_path.glob(".data.partial-*")
    assert (stale / MARKER).is_file() and not out.exists()
    foreign = tmp_path / ".data.partial-mine"  # the same name pattern, not made by wsssbed
    foreign.mkdir()
    running = Staging(*beside(out))  # a prepare still running holds its marker's lock
    try:
        assert prepare("voc2012", [archive], out) == {"train": 1, "val": 1}
        assert not stale.exists() and foreign.is_dir() and running.path.is_dir()
        assert not list(out.rglob(MARKER))
    finally:
        running.discard()
    killed = subprocess.run([sys.executable, "-c", KILLED, str(archive), str(tmp_path / "d2")],
                            timeout=120)  # fmt: skip
    (stale,) = tmp_path.glob(".d2.partial-*")
    result = _prepare_cli("voc2012", "--out", tmp_path / "d2", "--clean")
    assert result.returncode == 0 and "removed 1 stale staging folder" in result.stdout
    assert not stale.exists() and foreign.is_dir()
    assert remove_stale(*beside(tmp_path / "d2")) == []


def test_a_staging_folder_is_recognised_by_its_marker_text(tmp_path):
    out = tmp_path / "data"
    fake = tmp_path / ".data.partial-x"
    fake.mkdir()
    (fake / MARKER).write_text("something else\n")
    os.symlink(fake, tmp_path / ".data.partial-link")
    assert remove_stale(*beside(out)) == [] and fake.is_dir()
