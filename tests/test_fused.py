"""The fused CPU path (eval/fused.py) against the general path and a naive per-threshold
loop: the same integers, fingerprints and errors, with the compiled kernels (numba) and
with numpy, in this process and in a pool of workers."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from reference import confusion, irn_labels

from wsssbed.activation import write_activation
from wsssbed.activation.base import ActivationMaps
from wsssbed.datasets import get_dataset
from wsssbed.datasets.local import LocalDataset
from wsssbed.errors import InputError
from wsssbed.eval import fused, loop
from wsssbed.eval.boundary import (
    BoundaryInput,
    Tolerance,
    batch_boundary_counts,
    within_diagonal,
)
from wsssbed.eval.bucketize import Bucketizer
from wsssbed.eval.confusion import class_counts
from wsssbed.eval.job import SweepJob
from wsssbed.eval.loop import run_sweep
from wsssbed.eval.rules import make_rule
from wsssbed.io.imageio import write_png_atomic

try:
    from wsssbed.eval import fused_jit
except ImportError:  # numba is optional
    fused_jit = None

VOC = get_dataset("voc2012")
ADE = get_dataset("ade20k")
GRIDS = {
    "uniform-100": [i / 100 for i in range(100)],
    "default-61": [i / 100 for i in range(61)],
    "any-order": [0.55, 0.1, 0.95, 0.25, 0.0, 0.7],
    "edges": [-0.5, 0.0, 1e-38, 0.5, 1.0, 1.5],
    "one": [0.3],
    "dense": [float(v) for v in np.linspace(0.2, 0.2001, 50, dtype=np.float32)],
}
KERNELS = ["jit", "numpy"]


def _kernels(monkeypatch, kernels: str) -> None:
    if kernels == "jit" and fused_jit is None:
        pytest.skip("numba is not installed: the numpy kernels are tested")
    monkeypatch.setenv("WSSSBED_JIT", "1" if kernels == "jit" else "0")


def _nasty_values(thresholds: np.ndarray) -> np.ndarray:
    """Scores on, just above and just below each threshold, 0, -0.0, denormals, 1,
    8-bit values and random floats, all in [0, 1]."""
    rng = np.random.default_rng(0)
    t = np.clip(thresholds.astype(np.float32), 0, 1)
    values = [
        t,
        np.nextafter(t, np.float32(2)),
        np.nextafter(t, np.float32(-1)),
        rng.random(200_000, dtype=np.float32),
        (rng.integers(0, 256, 1000) / np.float32(255)).astype(np.float32),
        np.array([0.0, -0.0, 1.0, 1e-45, 1e-40, 1e-38, 0.5], np.float32),
    ]
    v = np.concatenate(values).astype(np.float32)
    return v[(v >= 0) & (v <= 1)]


GRIDS_AND_CELLS = {**GRIDS, "repeated": [0.2, 0.2, 0.5], "denormal": [0.0, 1e-45, 0.5]}


@pytest.mark.parametrize("grid", GRIDS_AND_CELLS, ids=list(GRIDS_AND_CELLS))
def test_bit_table_buckets_are_count_below(grid):
    thresholds = np.sort(np.asarray(GRIDS_AND_CELLS[grid], dtype=np.float32))
    lut = fused.BitLut(thresholds)
    values = _nasty_values(thresholds)
    expected = np.searchsorted(thresholds, values, side="left")
    assert np.array_equal(lut.count_below(values), expected)
    reference = Bucketizer(torch.from_numpy(thresholds))
    assert np.array_equal(reference.count_below(torch.from_numpy(values)).numpy(), expected)
    u8 = np.arange(256, dtype=np.float32) / np.float32(255)
    assert np.array_equal(lut.byte_table(), np.searchsorted(thresholds, u8, side="left"))


def test_out_of_range_reads_the_bits():
    assert not fused.out_of_range(np.array([[0.0, -0.0, 1.0, 1e-45]], np.float32))
    for bad in (np.nan, np.inf, -np.inf, -1e-45, np.nextafter(np.float32(1), np.float32(2))):
        assert fused.out_of_range(np.array([[0.5, bad]], np.float32)), bad


# ---------------------------------------------------------------------------------------
# whole sweeps from files


FORMATS = ("irn-npy", "npz", "png-per-class", "seam-npy", "puzzlecam-npy", "clip-es-npy")


def _write_voc(root, rng, count=14, height=23, width=31):
    """A VOC-layout split (ties, void, -0.0, scores on thresholds, images without maps),
    with the maps in every format, and irn-npy written by hand with unsorted keys,
    float64 maps and IRN's `cam` key. Returns {id: (class ids, float32 maps)}."""
    masks = root / "SegmentationClassAug"
    ids = [f"img{i:03d}" for i in range(count)]
    (root / "ImageSets" / "Segmentation").mkdir(parents=True)
    (root / "ImageSets" / "Segmentation" / "val.txt").write_text("\n".join(ids) + "\n")
    maps = {}
    for index, image_id in enumerate(ids):
        k = index % 5  # 0..4 maps
        classes = np.sort(rng.choice(np.arange(1, 21), size=k, replace=False))
        blocks = rng.choice(np.concatenate([[0], classes]).astype(np.uint8), (6, 8))
        gt = np.kron(blocks, np.ones((4, 4), np.uint8))[:height, :width]
        for c, row in zip(classes, range(height)):  # every map's class is in the mask
            gt[row, 0] = c
        gt = np.where(rng.random(gt.shape) < 0.07, 255, gt).astype(np.uint8)
        write_png_atomic(masks / f"{image_id}.png", gt, VOC.palette())
        cams = (rng.integers(0, 21, size=(k, height, width)) / 20).astype(np.float32)
        if k:
            cams[0, 0, :3] = -0.0
            cams[:, 1, :] = cams[0, 1, :]  # exact ties between classes
        maps[image_id] = ActivationMaps(classes.astype(np.int64), cams)
    for fmt in FORMATS:
        for image_id, m in maps.items():
            if len(m.class_ids) or fmt != "png-per-class":  # no files for no maps
                write_activation(root / fmt, image_id, fmt, VOC, m)
    with_maps = [i for i in ids if len(maps[i].class_ids)]
    (root / "ImageSets" / "Segmentation" / "withmaps.txt").write_text("\n".join(with_maps))
    special = root / "irn-special"
    special.mkdir()
    for image_id, m in maps.items():
        order = np.arange(len(m.class_ids))[::-1]
        content = {"keys": m.class_ids[order] - 1, "cam": m.cams[order].astype(np.float64)}
        np.save(special / f"{image_id}.npy", content)
    return maps


@pytest.fixture(scope="module")
def voc(tmp_path_factory):
    root = tmp_path_factory.mktemp("voc")
    return root, _write_voc(root, np.random.default_rng(7))


def _state(root, folder, fmt, grid, monkeypatch, fused_path, kernels="numpy", workers=0,
           boundary=False, spec=VOC, split="val"):  # fmt: skip
    monkeypatch.setenv("WSSSBED_FUSED", "1" if fused_path else "0")
    if fused_path:
        _kernels(monkeypatch, kernels)
    job = SweepJob(
        LocalDataset(spec, root, split),
        make_rule("bg-threshold", {"threshold": grid}),
        activation=root / folder,
        activation_format=fmt,
        boundary=Tolerance(2, in_pixels=True) if boundary else None,
        device="cpu",
        workers=workers,
        per_image=True,
    )
    state, _, _ = run_sweep(job)
    return state


def _assert_same(a, b):
    pa, pb = a.pairs.result(), b.pairs.result()
    assert np.array_equal(pa.codes, pb.codes) and np.array_equal(pa.hist, pb.hist)
    assert a.images == b.images and a.pixels == b.pixels
    assert a.gt_digest == b.gt_digest and a.gt_digest
    assert [i for i, _ in a.per_image] == [i for i, _ in b.per_image]
    for (_, x), (_, y) in zip(a.per_image, b.per_image):
        assert np.array_equal(x, y)
    assert (a.boundary is None) == (b.boundary is None)
    if a.boundary is not None:
        assert a.boundary.same_as(b.boundary)
        assert np.array_equal(a.bf_sums, b.bf_sums) and np.array_equal(a.bf_images, b.bf_images)


FOLDERS = [(f, f) for f in FORMATS] + [("irn-special", "irn-npy")]


@pytest.mark.parametrize("folder,fmt", FOLDERS, ids=[f for f, _ in FOLDERS])
@pytest.mark.parametrize("kernels", KERNELS)
@pytest.mark.parametrize("grid", ["uniform-100", "any-order", "edges", "dense"])
def test_fused_sweep_equals_the_general_path(voc, monkeypatch, folder, fmt, kernels, grid):
    root, _ = voc
    split = "withmaps" if fmt == "png-per-class" else "val"
    general = _state(root, folder, fmt, GRIDS[grid], monkeypatch, False, split=split)
    calls = []
    original = fused.reduce_fused
    monkeypatch.setattr("wsssbed.eval.inputs.reduce_fused",
                        lambda *a: calls.append(1) or original(*a))  # fmt: skip
    state = _state(root, folder, fmt, GRIDS[grid], monkeypatch, True, kernels, split=split)
    assert len(calls) == state.images  # every image took the fused path
    _assert_same(general, state)


@pytest.mark.parametrize("kernels", KERNELS)
def test_fused_counts_equal_a_naive_loop(voc, monkeypatch, kernels):
    """Per threshold, IRN's argmax with a constant background channel and a confusion
    matrix (tests/reference.py), summed over images, against the fused counts."""
    root, maps = voc
    grid = [0.0, 0.1, 0.35, 0.5, 1.0]
    state = _state(root, "irn-npy", "irn-npy", grid, monkeypatch, True, kernels)
    k = VOC.num_classes
    counts = class_counts(state.pairs.result(), make_rule("bg-threshold", {"threshold": grid}),
                          k, True)  # fmt: skip
    local = LocalDataset(VOC, root, "val")
    for point, threshold in enumerate(grid):
        conf = np.zeros((k, k + 1), np.int64)
        for image_id, m in maps.items():
            gt = local.read_gt(image_id)
            labels = irn_labels(m.class_ids, m.cams, threshold, True, gt.shape)
            conf += confusion(gt, labels, k)
        assert np.array_equal(counts.tp[point], np.diag(conf))
        assert np.array_equal(counts.pred[point], conf[:, :k].sum(0))
        assert np.array_equal(counts.gt, conf.sum(1))


@pytest.mark.parametrize("kernels", KERNELS)
@pytest.mark.parametrize("workers", [0, 2])
def test_fused_boundary_and_workers_equal_the_general_path(voc, monkeypatch, kernels, workers):
    root, _ = voc
    grid = GRIDS["default-61"]
    general = _state(root, "irn-npy", "irn-npy", grid, monkeypatch, False, boundary=True)
    state = _state(root, "irn-npy", "irn-npy", grid, monkeypatch, True, kernels, workers,
                   boundary=True)  # fmt: skip
    _assert_same(general, state)
    assert state.workers == workers


def test_workers_follow_the_measured_cost(voc, monkeypatch):
    """`workers=None`: a cheap split stays in this process; when the work left is worth
    it (here: any), the rest goes to a pool, with the same integers."""
    root, _ = voc
    grid = GRIDS["uniform-100"]
    alone = _state(root, "npz", "npz", grid, monkeypatch, True, workers=None, boundary=True)
    assert alone.workers == 0
    monkeypatch.setattr(loop, "POOL_WORTH_S", 0.0)
    monkeypatch.setattr(loop, "PROBE_IMAGES", 3)
    monkeypatch.setattr(loop, "default_workers", lambda: 2)
    pooled = _state(root, "npz", "npz", grid, monkeypatch, True, workers=None, boundary=True)
    assert pooled.workers == 2
    _assert_same(alone, pooled)


@pytest.mark.skipif(fused_jit is None, reason="numba is not installed")
@pytest.mark.parametrize("background", [0, 21], ids=["background", "none"])
@pytest.mark.parametrize("theta", [1.0, 2.5, 7.3, 60.0])
def test_boundary_kernel_equals_the_torch_counts(background, theta):
    """Random label maps with void, blobs, the image border and thetas past the image."""
    rng = np.random.default_rng(int(theta * 10) + background)
    k, t = 21, 12
    for height, width in ((1, 9), (17, 13), (40, 31)):
        blocks = rng.integers(0, 5, size=(height // 3 + 1, width // 3 + 1))
        gt = np.kron(blocks, np.ones((3, 3), np.int64))[:height, :width].astype(np.uint8)
        gt[rng.random(gt.shape) < 0.05] = 255
        ids = np.array([1, 2, 3, 0, k], np.int32)  # the maps' classes; last: none
        column = np.where(rng.random((height, width)) < 0.8, gt % 4, 4).astype(np.int32)
        best = ids.take(column)
        bucket = rng.integers(0, t + 1, size=(height, width)).astype(np.int32)
        theta = within_diagonal(theta, height, width)  # as `Tolerance.pixels` caps it
        options = dict(points=t, num_classes=k, background_label=background, theta=theta)
        compiled = fused.boundary_counts(fused_jit, column, ids, bucket, gt, **options)
        (expected,) = batch_boundary_counts(
            [BoundaryInput(torch.from_numpy(best), torch.from_numpy(bucket),
                           torch.from_numpy(gt), theta)],
            num_points=t, num_classes=k, background_label=background,
        )  # fmt: skip
        assert compiled.same_as(expected)
        assert expected.gt_total.sum() > 0 and expected.pred_total.sum() > 0


def test_a_cpu_sweep_imports_no_torch(voc, tmp_path):
    """The fused path, the tables and the results folder need numpy, pandas and pyarrow
    only: torch (seconds to import) stays out of a CPU sweep."""
    root, _ = voc
    script = (
        "import sys, wsssbed\n"
        f"wsssbed.sweep(dataset='voc2012', data_root={str(root)!r}, split='val', "
        f"activation={str(root / 'irn-npy')!r}, activation_format='irn-npy', "
        f"boundary=False, device='cpu', out={str(tmp_path / 'out')!r})\n"
        "print('torch' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[-1] == "False"


# ---------------------------------------------------------------------------------------
# errors: the same message, in the same order of precedence


def _error(root, monkeypatch, fused_path, kernels="numpy", folder="irn-npy", fmt="irn-npy"):
    with pytest.raises(InputError) as caught:
        _state(root, folder, fmt, GRIDS["default-61"], monkeypatch, fused_path, kernels)
    return str(caught.value)


def _one_image(tmp_path, gt, classes, cams, fmt="irn-npy"):
    masks = tmp_path / "SegmentationClassAug"
    (tmp_path / "ImageSets" / "Segmentation").mkdir(parents=True)
    (tmp_path / "ImageSets" / "Segmentation" / "val.txt").write_text("a\n")
    write_png_atomic(masks / "a.png", gt, VOC.palette())
    maps = ActivationMaps(np.array(classes, np.int64), cams.astype(np.float32))
    write_activation(tmp_path / fmt, "a", fmt, VOC, maps)
    return tmp_path


GT = np.kron(np.array([[0, 3], [5, 255]], np.uint8), np.ones((4, 5), np.uint8))
UNDEFINED = np.where(GT == 5, 40, GT).astype(np.uint8)
CASES = {
    "nan": (GT, [3, 5], np.full((2, 8, 10), np.nan)),
    "above-one": (GT, [3], np.full((1, 8, 10), 1.5)),
    "negative": (GT, [3, 5], np.full((2, 8, 10), -0.25)),
    "infinite-second-map": (GT, [3, 5], np.stack([np.zeros((8, 10)), np.full((8, 10), np.inf)])),
    "class-not-in-mask": (GT, [3, 7], np.zeros((2, 8, 10))),
    "undefined-mask-value": (UNDEFINED, [3], np.zeros((1, 8, 10))),
    "wrong-size": (GT, [3], np.zeros((1, 8, 9))),
}


@pytest.mark.parametrize("kernels", KERNELS)
@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_fused_errors_are_the_general_paths(tmp_path, monkeypatch, case, kernels):
    root = _one_image(tmp_path, *CASES[case])
    expected = _error(root, monkeypatch, False)
    assert _error(root, monkeypatch, True, kernels) == expected


def test_a_bad_mask_is_reported_before_a_corrupt_map(tmp_path, monkeypatch):
    root = _one_image(tmp_path, UNDEFINED, [3], np.zeros((1, 8, 10)))
    (root / "irn-npy" / "a.npy").write_bytes(b"not a numpy file")
    message = _error(root, monkeypatch, True)
    assert message == _error(root, monkeypatch, False)
    assert "does not define" in message


@pytest.mark.parametrize("kernels", KERNELS)
def test_a_mapped_dataset_takes_the_mapping_pass(tmp_path, monkeypatch, kernels):
    """ADE20K (reduce-zero-label): the mask is mapped before hashing and counting."""
    root = tmp_path / "ADEChallengeData2016"
    rng = np.random.default_rng(3)
    for index in range(4):
        gt = rng.integers(0, 6, size=(12, 9)).astype(np.uint8)  # 0 = other -> ignored
        write_png_atomic(root / "annotations" / "validation" / f"x{index}.png", gt)
        present = sorted({int(v) - 1 for v in np.unique(gt) if v})[:2]
        cams = rng.random((len(present), 12, 9), dtype=np.float32)
        write_activation(root / "maps", f"x{index}", "npz", ADE,
                         ActivationMaps(np.array(present, np.int64), cams))  # fmt: skip
    general = _state(root, "maps", "npz", GRIDS["any-order"], monkeypatch, False, spec=ADE,
                     split="validation")  # fmt: skip
    state = _state(root, "maps", "npz", GRIDS["any-order"], monkeypatch, True, kernels,
                   spec=ADE, split="validation")  # fmt: skip
    _assert_same(general, state)
