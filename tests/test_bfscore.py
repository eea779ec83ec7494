"""`wsssbed.eval.bfscore` against MATLAB's published numbers and the scipy reference."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from reference import image_bf

from wsssbed.errors import InputError
from wsssbed.eval import bfscore

MATLAB = {
    ("gt_1.png", "crf_1.png"): (
        [
            np.nan,
            0.6861,
            np.nan,
            0.7343,
            np.nan,
            np.nan,
            np.nan,
            np.nan,
            0.7076,
            0.8700,
            0.6437,
            0.9324,
            1.0,
            0.3448,
            0.9863,
        ],
        0.7672,
    ),
    ("gt_0.png", "pred_0.png"): (
        [
            np.nan,
            0.7114,
            0.6259,
            np.nan,
            np.nan,
            np.nan,
            0.1463,
            0.7828,
            0.8175,
            np.nan,
            np.nan,
            np.nan,
            np.nan,
            np.nan,
            0.6070,
            np.nan,
            0.7602,
            np.nan,
        ],
        0.6359,
    ),
}


@pytest.mark.parametrize("files", list(MATLAB), ids=["crf_1", "pred_0"])
def test_reproduces_matlab_bfscore(shared_data, files):
    gt = np.array(Image.open(shared_data / "bfscore" / files[0]))
    pred = np.array(Image.open(shared_data / "bfscore" / files[1]))
    expected, expected_mean = MATLAB[files]
    scores, mean = bfscore(pred, gt, list(range(1, len(expected) + 1)), 2, mode="matlab")
    assert np.array_equal(np.isnan(scores), np.isnan(expected))
    assert np.allclose(
        scores[~np.isnan(scores)], np.array(expected)[~np.isnan(expected)], atol=5e-5
    )
    assert mean == pytest.approx(expected_mean, abs=5e-5)


def test_default_mode_scores_one_sided_classes_as_zero():
    gt = np.zeros((10, 10), dtype=np.uint8)
    gt[2:6, 2:6] = 1
    pred = gt.copy()
    pred[7:9, 7:9] = 2  # class 2 only predicted
    matlab, _ = bfscore(pred, gt, [1, 2], 1.5, mode="matlab")
    default, mean = bfscore(pred, gt, [1, 2], 1.5)
    assert np.isnan(matlab[1]) and matlab[0] == 1.0
    assert default.tolist() == [1.0, 0.0] and mean == 0.5


def test_default_mode_matches_scipy_reference_with_void():
    rng = np.random.default_rng(0)
    gt = np.kron(rng.integers(0, 4, (6, 6)), np.ones((5, 5), dtype=np.int64)).astype(np.uint8)
    gt[rng.random(gt.shape) < 0.1] = 255
    pred = np.kron(rng.integers(0, 4, (6, 6)), np.ones((5, 5), dtype=np.int64)).astype(np.uint8)
    _, mean = bfscore(pred, gt, list(range(4)), 3.0)
    reference, _, _ = image_bf(pred, gt, 4, 3.0, range(4))
    assert mean == pytest.approx(reference)


def test_identical_maps_score_one_and_shifted_maps_less():
    gt = np.zeros((40, 40), dtype=np.uint8)
    gt[10:30, 10:30] = 1
    assert bfscore(gt, gt, [0, 1], 2)[1] == 1.0
    shifted = np.roll(gt, 5, axis=1)
    assert bfscore(shifted, gt, [0, 1], 2)[1] < 0.7


@pytest.mark.parametrize("label", [2**16, 2**31, 2**40])
def test_labels_beyond_sixteen_bits_are_refused_before_any_allocation(label):
    """Counts are kept per label value: one label of 2**40 in an 8x8 map asked for 8 TB
    (a raw torch error), 10**8 for 15 GB. Refused, naming the argument."""
    gt = np.zeros((8, 8), np.int64)
    gt[2:5, 2:5] = 1
    pred = gt.copy()
    pred[0, 0] = label
    with pytest.raises(InputError, match=f"`pred` holds label {label}, above 65535"):
        bfscore(pred, gt)
    with pytest.raises(InputError, match=f"`gt` holds label {label}"):
        bfscore(gt, np.where(gt == 1, label, 0))
    with pytest.raises(
        InputError, match="`classes` must be non-negative integer class ids up to 65535"
    ):
        bfscore(gt, gt, classes=[1, label])
    top = np.where(gt == 1, 65535, 0).astype(np.uint16)  # the largest label: scored
    scores, mean = bfscore(top, top, classes=[65535])
    assert scores.tolist() == [1.0] and mean == 1.0


def test_empty_maps_are_refused_naming_the_argument():
    with pytest.raises(InputError, match=r"`pred` is empty \(shape \(0, 0\)\)"):
        bfscore(np.zeros((0, 0), int), np.zeros((0, 0), int))
