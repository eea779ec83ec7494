"""CAMs as the major WSSS codebases save them (issue 23, section 1).

Each writer below reproduces one codebase's save call with our own code (torch and numpy
used as they use them, on the CPU), from the embedded sample's maps. The folder then
sweeps with `--activation-format auto` (the default) to the same integers as the same
maps saved with `np.savez` (plain numpy, no pickle): float16 maps as the same values
rounded, SEAM's below-zero artefact as 0 (and, independently, as SEAM's own evaluation
scores the raw maps).
"""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from conftest import run_cli
from numpy.lib import format as npy_format
from reference import confusion

from wsssbed.activation import digest_maps, read_activation
from wsssbed.datasets import get_dataset
from wsssbed.datasets.local import LocalDataset
from wsssbed.errors import InputError
from wsssbed.io import safe_pickle

VOC = get_dataset("voc2012")
THRESHOLDS = "0:0.6:0.05"


def _strided(size: tuple[int, int], stride: int) -> tuple[int, int]:
    """IRN misc/imutils.py get_strided_size."""
    return ((size[0] - 1) // stride + 1, (size[1] - 1) // stride + 1)


def _planes(keys: np.ndarray, cams: np.ndarray) -> torch.Tensor:
    """The sample's maps as a 20-class score tensor (what a classifier's CAM gives)."""
    full = torch.zeros(20, *cams.shape[1:])
    full[torch.from_numpy(keys)] = torch.from_numpy(cams)
    return full


def _label(keys: np.ndarray) -> torch.Tensor:
    label = torch.zeros(20)
    label[torch.from_numpy(keys)] = 1
    return label


def irn_make_cam(path: Path, keys: np.ndarray, cams: np.ndarray):
    """jiwoon-ahn/irn step/make_cam.py:32-56."""
    label = _label(keys)
    size = cams.shape[1:]
    outputs = _planes(keys, cams)
    strided_cam = F.interpolate(outputs[None], _strided(size, 4), mode="bilinear")[0]
    highres_cam = outputs.clone()
    valid_cat = torch.nonzero(label)[:, 0]
    strided_cam = strided_cam[valid_cat]
    strided_cam /= F.adaptive_max_pool2d(strided_cam, (1, 1)) + 1e-5
    highres_cam = highres_cam[valid_cat]
    highres_cam /= F.adaptive_max_pool2d(highres_cam, (1, 1)) + 1e-5
    np.save(
        path,
        {"keys": valid_cat, "cam": strided_cam.cpu(), "high_res": highres_cam.cpu().numpy()},
    )
    return valid_cat.numpy(), highres_cam.numpy()


def irn_fork_numpy(path: Path, keys: np.ndarray, cams: np.ndarray):
    """IRN forks: the same keys, numpy everywhere."""
    strided = F.interpolate(torch.from_numpy(cams)[None], _strided(cams.shape[1:], 4))[0]
    np.save(path, {"keys": keys, "cam": strided.numpy(), "high_res": cams})
    return keys, cams


def seam_infer(path: Path, keys: np.ndarray, cams: np.ndarray):
    """YudeWang/SEAM infer_SEAM.py:72-85 (jiwoon-ahn/psa infer_cls.py alike). The first
    class gets an offset so its minimum is above 0: SEAM then leaves large negatives."""
    label = _label(keys).numpy()
    cam = _planes(keys, cams).numpy() * label.reshape(20, 1, 1)
    cam[keys[0]] += 0.5
    cam_list = [cam, np.flip(cam, axis=-1)]
    sum_cam = np.sum(cam_list, axis=0)
    sum_cam[sum_cam < 0] = 0
    cam_max = np.max(sum_cam, (1, 2), keepdims=True)
    cam_min = np.min(sum_cam, (1, 2), keepdims=True)
    sum_cam[sum_cam < cam_min + 1e-5] = 0
    norm_cam = (sum_cam - cam_min - 1e-5) / (cam_max - cam_min + 1e-5)
    cam_dict = {}
    for i in range(20):
        if label[i] > 1e-5:
            cam_dict[i] = norm_cam[i]
    np.save(path, cam_dict)
    return keys, np.maximum(norm_cam[keys], 0)


def mctformer_engine(path: Path, keys: np.ndarray, cams: np.ndarray):
    """xulianuwa/MCTformer engine.py:213-232."""
    sum_cam = _planes(keys, cams)[None]
    cam_dict = {}
    for cls_ind in keys.tolist():
        cls_attention = sum_cam[0, cls_ind, :]
        cls_attention = (cls_attention - cls_attention.min()) / (
            cls_attention.max() - cls_attention.min() + 1e-8
        )
        cam_dict[cls_ind] = cls_attention.cpu().numpy()
    np.save(path, cam_dict)
    return keys, np.stack([cam_dict[k] for k in keys.tolist()])


def puzzlecam_inference(path: Path, keys: np.ndarray, cams: np.ndarray):
    """OFRIN/PuzzleCAM inference_classification.py:161-182."""
    label = _label(keys).numpy()
    size = cams.shape[1:]
    cams_list = [_planes(keys, cams)]
    strided_cams = torch.sum(
        torch.stack([F.interpolate(c[None], _strided(size, 4))[0] for c in cams_list]), dim=0
    )
    hr_cams = torch.sum(torch.stack(cams_list), dim=0)
    keys = torch.nonzero(torch.from_numpy(label))[:, 0]
    strided_cams = strided_cams[keys]
    strided_cams /= F.adaptive_max_pool2d(strided_cams, (1, 1)) + 1e-5
    hr_cams = hr_cams[keys]
    hr_cams /= F.adaptive_max_pool2d(hr_cams, (1, 1)) + 1e-5
    saved = keys.numpy()
    keys = np.pad(keys + 1, (1, 0), mode="constant")
    np.save(path, {"keys": keys, "cam": strided_cams.cpu(), "hr_cam": hr_cams.cpu().numpy()})
    return saved, hr_cams.numpy()


def clip_es_generate(path: Path, keys: np.ndarray, cams: np.ndarray):
    """linyq2117/CLIP-ES generate_cams_voc12.py:146-214: keys in the order the classes
    appear in the annotation (here: reversed, not sorted), maps saved as float16."""
    keys_list, refined_cam_to_save = [], []
    for index in reversed(range(len(keys))):
        keys_list.append(int(keys[index]))
        refined_cam_to_save.append(torch.tensor(cams[index]))
    keys_t = torch.tensor(keys_list)
    refined_cam_all_scales = torch.stack(refined_cam_to_save, dim=0)
    attn = refined_cam_all_scales.cpu().numpy().astype(np.float16)
    np.save(path, {"keys": keys_t.numpy(), "attn_highres": attn})
    return keys_t.numpy(), attn.astype(np.float32)


SAVE_CALLS = {
    "irn": (irn_make_cam, "irn-npy"),
    "irn-fork": (irn_fork_numpy, "irn-npy"),
    "seam": (seam_infer, "seam-npy"),
    "mctformer": (mctformer_engine, "seam-npy"),
    "puzzlecam": (puzzlecam_inference, "puzzlecam-npy"),
    "clip-es": (clip_es_generate, "clip-es-npy"),
}


def _write(sample_root: Path, folder: Path, writer) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The train split's maps saved by `writer` into `folder`, and, beside it, the same
    maps as plain numpy (`<folder>-npz`). Returns id -> (keys, maps) as saved."""
    local = LocalDataset(VOC, sample_root, "train")
    source = sample_root / "activation/sample-cam/npz"
    plain = folder.parent / f"{folder.name}-npz"
    folder.mkdir()
    plain.mkdir()
    saved = {}
    for image_id in local.ids:
        with np.load(source / f"{image_id}.npz") as archive:
            keys, cams = archive["keys"], archive["cams"]
        saved[image_id] = writer(folder / f"{image_id}.npy", keys, cams)
        np.savez(plain / f"{image_id}.npz", keys=saved[image_id][0], cams=saved[image_id][1])
    return saved


def _sweep(sample_root: Path, folder: Path, out: Path, *extra):
    return run_cli(
        "sweep", "--data-root", sample_root, "--split", "train", "--activation", folder,
        "--thresholds", THRESHOLDS, "--no-boundary", "--out", out, "--json", *extra,
    )  # fmt: skip


def _counts(out: Path) -> pd.DataFrame:
    return pd.read_parquet(out / "per_class.parquet").drop(columns="run_id")


@pytest.mark.parametrize("codebase", SAVE_CALLS)
def test_each_codebases_save_call_sweeps_like_plain_numpy(sample_root, tmp_path, codebase):
    writer, name = SAVE_CALLS[codebase]
    folder = tmp_path / codebase
    _write(sample_root, folder, writer)
    native = _sweep(sample_root, folder, tmp_path / "native")  # --activation-format auto
    assert native.exit_code == 0, native.stderr
    assert f"activation format: {name} (auto: " in native.stderr
    plain = _sweep(sample_root, tmp_path / f"{codebase}-npz", tmp_path / "plain")
    assert plain.exit_code == 0, plain.stderr
    pd.testing.assert_frame_equal(_counts(tmp_path / "native"), _counts(tmp_path / "plain"))
    runs = pd.read_parquet(tmp_path / "native/runs.parquet")
    assert runs.activation_format.tolist() == [name]  # recorded with the run
    assert json.loads(native.stdout)["n_images"] == 48


def seam_evaluation_labels(cam_dict: dict, threshold: float) -> np.ndarray:
    """YudeWang/SEAM evaluation.py:25-33 on a saved dict (negative values and all)."""
    h, w = next(iter(cam_dict.values())).shape
    tensor = np.zeros((21, h, w), np.float32)
    for key in cam_dict:
        tensor[key + 1] = cam_dict[key]
    tensor[0, :, :] = threshold
    return np.argmax(tensor, axis=0).astype(np.uint8)


def test_seam_negatives_score_as_seams_own_evaluation(sample_root, tmp_path):
    """Setting SEAM's below-zero pixels to 0 changes no label: the sweep's counts equal
    those of SEAM's own argmax over the raw saved maps, at every threshold."""
    folder = tmp_path / "seam"
    _write(sample_root, folder, seam_infer)
    raw = {p.stem: np.load(p, allow_pickle=True).item() for p in folder.glob("*.npy")}
    assert min(m.min() for d in raw.values() for m in d.values()) < -0.1  # large negatives
    result = _sweep(sample_root, folder, tmp_path / "out")
    assert result.exit_code == 0, result.stderr
    counts = _counts(tmp_path / "out")
    local = LocalDataset(VOC, sample_root, "train")
    for point, t in enumerate(np.arange(0, 0.61, 0.05).round(2)):
        total = sum(
            confusion(local.read_gt(i), seam_evaluation_labels(raw[i], np.float32(t)), 21)
            for i in local.ids
        )
        at = counts[counts.point == point].sort_values("class_id")
        assert at.tp.tolist() == np.diag(total[:, :21]).tolist()
        assert at.pred_pixels.tolist() == total[:, :21].sum(0).tolist()


def test_signed_maps_are_not_taken_for_seams_artefact(tmp_path):
    cams = np.linspace(-1, 1, 20, dtype=np.float32).reshape(4, 5)
    np.save(tmp_path / "a.npy", {3: cams})
    with pytest.raises(InputError, match="`3`: values down to -1 below 0 that are not SEAM"):
        read_activation(tmp_path, "a", "seam-npy", VOC, shape=(4, 5))
    np.save(tmp_path / "b.npy", {3: np.where(cams < 0, np.float32(-0.3), cams)})
    back = read_activation(tmp_path, "b", "seam-npy", VOC, shape=(4, 5))  # SEAM's minimum
    assert np.array_equal(back.cams[0], np.maximum(cams, 0))


def test_the_low_resolution_cam_is_never_copied(tmp_path, monkeypatch):
    """IRN and PuzzleCAM files are read through their full-size maps; the stride-4 torch
    `cam` is checked loosely (no larger than the image) and never materialised."""
    rng = np.random.default_rng(0)
    keys, cams = np.array([3, 14]), rng.random((2, 37, 50), dtype=np.float32)
    copied = []
    original = safe_pickle.TensorRef.numpy
    monkeypatch.setattr(
        safe_pickle.TensorRef, "numpy", lambda ref: copied.append(ref.shape) or original(ref)
    )
    irn_make_cam(tmp_path / "a.npy", keys, cams)
    maps = read_activation(tmp_path, "a", "irn-npy", VOC, shape=(37, 50))
    assert maps.class_ids.tolist() == [4, 15] and copied == [(2,)]  # the keys tensor only
    (tmp_path / "p").mkdir()
    puzzlecam_inference(tmp_path / "p/a.npy", keys, cams)
    copied.clear()
    read_activation(tmp_path / "p", "a", "puzzlecam-npy", VOC, shape=(37, 50))
    assert copied == []


@pytest.mark.parametrize(
    "content,message",
    [
        ({"keys": np.array([3]), "high_res": np.zeros((1, 36, 50), np.float32)},
         r"`high_res`: map size 36x50 differs from the ground truth's 37x50"),
        ({"keys": np.array([3]), "cam": np.zeros((1, 38, 50), np.float32)},
         r"`cam`: map size 38x50 differs .* larger than any map"),
        ({"keys": torch.tensor([3]), "cam": torch.zeros(1, 10, 13)},
         r"`cam`: map size 10x13 differs from the ground truth's 37x50"),
        ({"keys": np.array([3, 4]), "hr_cam": np.zeros((2, 37, 50), np.float32)},
         r"`keys` \[3, 4\] do not start with PuzzleCAM's background 0"),
        ({3: np.zeros((2, 37, 50), np.float32)}, r"`3` has shape \(2, 37, 50\), not one H x W"),
        ({25: np.zeros((37, 50), np.float32)}, r"class indices \[25\] are not among"),
        ({10**20: np.zeros((37, 50), np.float32)}, r"class indices \[100000000000000000000\]"),
        ({"keys": np.array([3]), "high_res": "maps"}, r"`high_res` is a str, not an array"),
        ({"keys": np.array([3]), "maps": np.zeros(3)}, r"a dict of `keys`, `maps`, which is no"),
        ({"keys": np.array([3]), "high_res": np.zeros(3), "hr_cam": np.zeros(3)},
         r"the layouts irn-npy and puzzlecam-npy at once"),
        (np.zeros((1, 37, 50), np.float32), r"one array of shape \(1, 37, 50\), not a dict"),
    ],
    ids=["high-res-size", "cam-larger", "cam-only-strided", "puzzlecam-keys", "seam-3d",
         "seam-key", "seam-huge-key", "not-array", "unknown-layout", "two-layouts", "plain"],
)  # fmt: skip
def test_errors_name_the_file_and_the_key(tmp_path, content, message):
    np.save(tmp_path / "a.npy", content)
    fmt = {"hr_cam": "puzzlecam-npy", "maps": "irn-npy"}
    keys = content if isinstance(content, dict) else {"keys": 0}
    name = next((fmt[k] for k in keys if k in fmt), "irn-npy" if "keys" in keys else None)
    with pytest.raises(InputError, match=message) as info:
        read_activation(tmp_path, "a", name or "seam-npy", VOC, shape=(37, 50))
    assert str(tmp_path / "a.npy") in str(info.value)


def _folder_of(tmp_path: Path, name: str, writers: dict[str, object]) -> Path:
    folder = tmp_path / name
    folder.mkdir()
    rng = np.random.default_rng(1)
    for image_id, writer in writers.items():
        writer(folder / f"{image_id}.npy", np.array([3, 14]), rng.random((2, 12, 16), np.float32))
    return folder


def test_a_folder_mixing_layouts_is_refused_naming_both_files(sample_root, tmp_path):
    ends = _folder_of(tmp_path, "ends", {"a": irn_make_cam, "z": seam_infer})
    result = _sweep(sample_root, ends, tmp_path / "out1")
    assert result.exit_code == 2
    error = " ".join(result.stderr.split())
    assert "a.npy holds the irn-npy layout and z.npy the seam-npy layout" in error
    # the first and last file agree: the odd one in between is refused when it is read
    local = LocalDataset(VOC, sample_root, "train")
    middle = tmp_path / "middle"
    middle.mkdir()
    ids = sorted(local.ids)
    for image_id in ids:
        writer = seam_infer if image_id == ids[5] else irn_make_cam
        with np.load(sample_root / f"activation/sample-cam/npz/{image_id}.npz") as archive:
            writer(middle / f"{image_id}.npy", archive["keys"], archive["cams"])
    result = _sweep(sample_root, middle, tmp_path / "out2")
    assert result.exit_code == 2 and "Traceback" not in result.stderr
    error = " ".join(result.stderr.split()).replace(" ", "")
    assert f"{ids[5]}.npy:holdstheseam-npylayout" in error
    assert f"but{ids[0]}.npyholdsirn-npy:afoldermustholdonelayout" in error
    assert not (tmp_path / "out2").exists() or not any((tmp_path / "out2").glob("*.parquet"))


def test_an_explicit_format_is_kept_and_checked(tmp_path):
    folder = _folder_of(tmp_path, "irn", {"a": irn_make_cam})
    with pytest.raises(InputError, match=r"holds the irn-npy layout .* not seam-npy as asked"):
        read_activation(folder, "a", "seam-npy", VOC, shape=(12, 16))
    assert read_activation(folder, "a", "irn-npy", VOC).class_ids.tolist() == [4, 15]


def test_auto_detection_reads_the_structure_not_the_data(tmp_path):
    """A file whose pickle holds 4 GiB of bytes (a sparse file) is recognised from a few
    hundred bytes: `read_structure` skips the data; reading the maps refuses the file
    from its size before opening it."""
    folder = tmp_path / "big"
    folder.mkdir()
    path = folder / "a.npy"
    header = io.BytesIO()
    npy_format.write_array_header_1_0(header, {"descr": "|O", "fortran_order": False, "shape": ()})
    head = header.getvalue() + b"\x80\x04}(\x8c\x04keys\x8e" + (4 << 30).to_bytes(8, "little")
    with open(path, "wb") as stream:
        stream.write(head)
        stream.seek(len(head) + (4 << 30))
        stream.write(b"\x8c\x08high_res]u.")
    assert safe_pickle.read_structure(path) == {"keys": b"", "high_res": []}
    with pytest.raises(InputError, match="above this image's budget"):
        read_activation(folder, "a", "irn-npy", VOC, shape=(12, 16))


def test_digest_and_submit_take_the_recognised_format(sample_root, tmp_path, monkeypatch):
    monkeypatch.setenv("WSSSBED_HOME", str(tmp_path / "home"))
    folder = tmp_path / "maps"
    _write(sample_root, folder, puzzlecam_inference)
    assert digest_maps(folder, "auto") == digest_maps(folder, "puzzlecam-npy")
    result = run_cli(
        "submit", folder, "--dataset", "voc2012", "--data-root", sample_root,
        "--split", "train", "--name", "my-puzzlecam", "--out", tmp_path / "out",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert "48 puzzlecam-npy files" in " ".join(result.stdout.split())
    from wsssbed.catalogue.lookup import resolve

    assert resolve("my-puzzlecam").content.format == "puzzlecam-npy"


def test_pseudo_labels_read_a_native_layout(sample_root, tmp_path):
    folder = tmp_path / "clip"
    _write(sample_root, folder, clip_es_generate)
    shutil.rmtree(tmp_path / "clip-npz")
    result = run_cli(
        "pseudo-labels", "--data-root", sample_root, "--split", "train", "--activation", folder,
        "--generator", "bg-threshold", "--threshold", "0.3", "--out", tmp_path / "labels",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert "activation format: clip-es-npy" in result.stderr
    assert len(list((tmp_path / "labels").glob("*.png"))) == 48


def test_the_api_recognises_the_format_by_default(sample_root, tmp_path):
    import wsssbed

    folder = tmp_path / "seam"
    _write(sample_root, folder, mctformer_engine)
    result = wsssbed.sweep(
        data_root=sample_root, split="train", activation=folder, thresholds="0.1,0.3",
        boundary=False,
    )  # fmt: skip
    assert result.run.activation_format == "seam-npy"
    with pytest.raises(InputError, match="not irn-npy as asked"):
        wsssbed.sweep(
            data_root=sample_root, split="train", activation=folder, thresholds="0.1",
            activation_format="irn-npy", boundary=False,
        )  # fmt: skip
