"""`wsssbed.metrics.ThresholdSweep`: batch by batch it gives the file sweep's numbers bit
for bit, and two metric states merged (as DDP's sum does) give the whole split's counts."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

pytest.importorskip("torchmetrics")

import wsssbed
from wsssbed.datasets import get_dataset
from wsssbed.datasets.local import LocalDataset
from wsssbed.errors import InputError
from wsssbed.metrics import ThresholdSweep
from wsssbed.saliency.maps import read_saliency

VOC = get_dataset("voc2012")
FG = VOC.num_classes - 1
INTEGER_COLUMNS = ["miou", "miou_zero", "miou_gt_present", "pixel_accuracy", "ignore_ratio"]


def _batches(root, split: str, size: int = 5):
    """The sample's npz maps as training-loop tensors: [B, 20, H, W] cams (zeros for
    classes an image lacks), [B, H, W] gt, [B, 20] labels, [B, H, W] saliency."""
    local = LocalDataset(VOC, root, split)
    folder = root / "activation/sample-cam/npz"
    ids = local.ids
    for start in range(0, len(ids), size):
        cams, gts, labels, sal = [], [], [], []
        for image_id in ids[start : start + size]:
            gt = local.read_gt(image_id)
            with np.load(folder / f"{image_id}.npz") as archive:
                keys, planes = archive["keys"], archive["cams"]
            full = np.zeros((FG, *gt.shape), dtype=np.float32)
            full[keys] = planes
            present = np.zeros(FG, dtype=bool)
            present[keys] = True
            cams.append(full)
            gts.append(gt)
            labels.append(present)
            sal.append(read_saliency(root / "saliency/sample-sal", image_id))
        yield tuple(torch.from_numpy(np.stack(x)) for x in (cams, gts, labels, sal))


def _file_sweep(root, tmp_path, **options):
    return wsssbed.sweep(
        data_root=str(root),
        split="val",
        activation=root / "activation/sample-cam/npz",
        activation_format="npz",
        saliency=root / "saliency/sample-sal" if "sal_thresholds" in options else None,
        allow_extra_maps=True,
        device="cpu",
        **options,
    )


@pytest.mark.parametrize(
    "options",
    [
        {"thresholds": "0:0.6:0.05"},
        {"generator": "power-bg", "alphas": [1, 2, 4, 8, 16]},
        {"generator": "saliency-rule", "thresholds": "0:0.5:0.1", "sal_thresholds": "0.1,0.3"},
    ],
    ids=["bg-threshold+bf", "power-bg+bf", "saliency-2d"],
)
def test_metric_equals_the_file_sweep_bit_for_bit(sample_root, tmp_path, options):
    boundary = options.get("generator") != "saliency-rule"
    metric = ThresholdSweep(dataset="voc2012", boundary=boundary, **options)
    for cams, gt, labels, sal in _batches(sample_root, "val"):
        metric.update(cams, gt, labels, saliency=sal)
    got = metric.compute().drop(columns="run_id")
    expected = _file_sweep(sample_root, tmp_path, boundary=boundary, **options)
    pd.testing.assert_frame_equal(got, expected.points.drop(columns="run_id"), check_exact=True)
    if boundary:
        assert got.bf_f.notna().all()
    per_class = metric.tables()[1].drop(columns="run_id")
    pd.testing.assert_frame_equal(
        per_class, expected.per_class.drop(columns="run_id"), check_exact=True
    )


def test_two_merged_states_give_the_whole_splits_counts(sample_root, tmp_path):
    """Two ranks each see half the batches; summing their states (torchmetrics'
    `merge_state`, what DDP's `dist_reduce_fx="sum"` does) gives the file sweep's integers."""
    ranks = [ThresholdSweep(thresholds="0:0.6:0.05", boundary=True) for _ in range(2)]
    for i, (cams, gt, labels, _) in enumerate(_batches(sample_root, "val", size=3)):
        ranks[i % 2].update(cams, gt, labels)
    ranks[0].merge_state(ranks[1])
    got = ranks[0].compute()
    expected = _file_sweep(sample_root, tmp_path, thresholds="0:0.6:0.05").points
    pd.testing.assert_frame_equal(got[INTEGER_COLUMNS], expected[INTEGER_COLUMNS], check_exact=True)
    # boundary F is a mean of per-image floats: the same up to the order of additions
    np.testing.assert_allclose(got.bf_f, expected.bf_f, rtol=1e-12)
    assert int(ranks[0].images) == len(LocalDataset(VOC, sample_root, "val").ids)


def test_metric_resets_and_lives_on_the_device_of_its_inputs(sample_root):
    metric = ThresholdSweep(thresholds=[0.2, 0.4])
    cams, gt, labels, _ = next(_batches(sample_root, "val"))
    metric.update(cams, gt, labels)
    first = metric.compute()
    metric.reset()
    assert int(metric.images) == 0 and int(metric.pairs.sum()) == 0
    metric.update(cams.double(), gt.long(), labels.int())  # other dtypes, same numbers
    pd.testing.assert_frame_equal(metric.compute(), first, check_exact=True)


def test_metric_refuses_bad_batches():
    metric = ThresholdSweep(thresholds="0.1,0.2")
    gt = torch.zeros(1, 4, 4, dtype=torch.uint8)
    labels = torch.ones(1, FG, dtype=torch.bool)
    with pytest.raises(InputError, match=r"\[B, 20, H, W\]"):
        metric.update(torch.zeros(1, 3, 4, 4), gt, labels)
    with pytest.raises(InputError, match="within"):
        metric.update(torch.full((1, FG, 4, 4), 2.0), gt, labels)
    with pytest.raises(InputError, match="class ids"):
        metric.update(torch.zeros(1, FG, 4, 4), gt + 30, labels)
    with pytest.raises(InputError, match="1-D"):
        ThresholdSweep(
            generator="saliency-rule", sal_thresholds="0.1,0.2", thresholds="0.1", boundary=True
        )
    with pytest.raises(InputError, match="did you mean 'power-bg'"):
        ThresholdSweep(generator="power_bg")
