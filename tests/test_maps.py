"""Map formats: round trips, validation, and untrusted files."""

from __future__ import annotations

import numpy as np
import pytest

from wsssbed.activation import (
    FORMATS,
    ActivationMaps,
    list_activation_ids,
    read_activation,
    validate_activation,
    write_activation,
)
from wsssbed.datasets import get_dataset
from wsssbed.errors import InputError
from wsssbed.io.budget import MapBudget
from wsssbed.io.imageio import read_label_map, write_label_map
from wsssbed.io.safe_pickle import load_npy
from wsssbed.saliency.maps import read_saliency, write_saliency

VOC = get_dataset("voc2012")


def _maps(rng, classes=(4, 15)):
    cams = rng.random((len(classes), 9, 11), dtype=np.float32)
    return ActivationMaps(np.array(classes, dtype=np.int64), cams)


@pytest.mark.parametrize("fmt", FORMATS.names())
def test_activation_round_trip(tmp_path, fmt):
    maps = _maps(np.random.default_rng(0))
    write_activation(tmp_path, "2007_000032", fmt, VOC, maps)
    listed = list_activation_ids(tmp_path, fmt)
    assert list(listed) == ["2007_000032"]
    back = read_activation(tmp_path, "2007_000032", fmt, VOC, listed["2007_000032"])
    assert back.class_ids.tolist() == [4, 15] and back.cams.dtype == np.float32
    stored = maps.cams.astype(np.float16) if fmt == "clip-es-npy" else maps.cams  # CLIP-ES: f16
    tolerance = 0.5 / 255 + 1e-7 if fmt == "png-per-class" else 0
    assert np.abs(back.cams - stored.astype(np.float32)).max() <= tolerance
    if fmt == "png-per-class":
        assert listed["2007_000032"] == (3, 14)  # 0-based foreground keys in file names


def test_irn_npy_is_the_irn_layout(tmp_path):
    cams = np.random.default_rng(1).random((2, 5, 6), dtype=np.float32)
    np.save(tmp_path / "a.npy", {"keys": np.array([14, 3]), "cam": cams})  # unsorted keys
    back = read_activation(tmp_path, "a", "irn-npy", VOC)
    assert back.class_ids.tolist() == [4, 15]
    assert np.array_equal(back.cams[0], cams[1])


def test_saliency_and_label_map_round_trip(tmp_path):
    sal = np.arange(256, dtype=np.uint8).reshape(16, 16)
    write_saliency(tmp_path, "x", sal)
    assert np.array_equal(read_saliency(tmp_path, "x"), sal.astype(np.float32) / 255)
    labels = np.array([[0, 1, 255], [20, 3, 0]], dtype=np.uint8)
    write_label_map(tmp_path, "y", labels, VOC.palette())
    assert np.array_equal(read_label_map(tmp_path, "y"), labels)


class _Exploit:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (open, (self.target, "w"))


def test_crafted_pickle_cannot_run_code(tmp_path):
    target = tmp_path / "pwned.txt"
    payload = {
        "keys": np.array([0]),
        "high_res": np.zeros((1, 2, 2), np.float32),
        "x": _Exploit(str(target)),
    }
    path = tmp_path / "evil.npy"
    np.save(path, np.array(payload, dtype=object), allow_pickle=True)
    # the file really is dangerous for a plain np.load:
    np.load(path, allow_pickle=True)
    assert target.exists()
    target.unlink()
    with pytest.raises(InputError, match=r"builtins\.open|io\.open") as info:
        load_npy(path, MapBudget(VOC.num_classes - 1))
    assert str(path) in str(info.value)
    assert not target.exists()


@pytest.mark.parametrize(
    "content,message",
    [
        (b"garbage", "not a valid .npy"),
        (
            b"\x93NUMPY\x01\x00"
            + b"{'descr': '|O', 'fortran_order': False, 'shape': (), }".ljust(118)
            + b"\n"
            + b"\x80\x04garbage",
            "corrupt|unsafe",
        ),
    ],
)
def test_corrupt_npy_is_refused(tmp_path, content, message):
    path = tmp_path / "bad.npy"
    path.write_bytes(content)
    with pytest.raises(InputError, match=message):
        read_activation(tmp_path, "bad", "irn-npy", VOC)


def test_corrupt_npz_and_png_are_refused(tmp_path):
    (tmp_path / "z.npz").write_bytes(b"PK\x03\x04 broken")
    with pytest.raises(InputError, match=r"not a valid \.npz"):
        read_activation(tmp_path, "z", "npz", VOC)
    (tmp_path / "p_3.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    with pytest.raises(InputError, match="cannot decode"):
        read_activation(tmp_path, "p", "png-per-class", VOC, (3,))
    np.savez(tmp_path / "w.npz", keys=np.array([0]))
    with pytest.raises(InputError, match="needs arrays"):
        read_activation(tmp_path, "w", "npz", VOC)


def test_pickle_inside_npz_is_not_loaded(tmp_path):
    np.savez(
        tmp_path / "o.npz",
        keys=np.array([0]),
        cams=np.array([_Exploit(str(tmp_path / "x"))], dtype=object),
    )
    with pytest.raises(InputError):
        read_activation(tmp_path, "o", "npz", VOC)
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize(
    "change,message",
    [
        (lambda m: ActivationMaps(m.class_ids, m.cams[:, :-1]), "differs from the ground truth"),
        (lambda m: ActivationMaps(m.class_ids, np.where(m.cams > 0.5, np.nan, m.cams)), "NaN"),
        (lambda m: ActivationMaps(m.class_ids, m.cams * 3), "outside \\[0, 1\\]"),
        (lambda m: ActivationMaps(np.array([4, 9]), m.cams), "not labelled with"),
        (lambda m: ActivationMaps(np.array([4, 21]), m.cams), "outside the dataset"),
    ],
)
def test_validation_names_the_problem(tmp_path, change, message):
    maps = change(_maps(np.random.default_rng(2)))
    with pytest.raises(InputError, match=message) as info:
        validate_activation(maps, (9, 11), (4, 15), VOC, tmp_path / "m.npy")
    assert "m.npy" in str(info.value)


def test_oversized_image_is_refused_before_decoding(tmp_path, monkeypatch):
    import wsssbed.io.imageio as imageio

    write_saliency(tmp_path, "big", np.zeros((50, 50), np.uint8))
    monkeypatch.setattr(imageio, "MAX_PIXELS", 100)
    with pytest.raises(InputError, match="pixel budget"):
        read_saliency(tmp_path, "big")
