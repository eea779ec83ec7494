"""The CPU bucketizer gives exactly torch.searchsorted's counts."""

import pytest
import torch

from wsssbed.eval.bucketize import Bucketizer

GRIDS = {
    "uniform-100": [round(i / 100, 2) for i in range(100)],
    "clustered": [0.0, 0.001, 0.0011, 0.00111, 0.5, 0.9],
    "negative": [-0.5, 0.3],
    "single": [0.2],
    "one-ulp-apart": [0.1, 0.1000001, 0.7],
    "above-one": [0.25, 0.5, 1.0, 1.5],
}


@pytest.mark.parametrize("grid", list(GRIDS.values()), ids=list(GRIDS))
@pytest.mark.parametrize("inclusive", [False, True])
def test_counts_equal_searchsorted(grid, inclusive):
    thresholds = torch.tensor(grid, dtype=torch.float32)
    values = torch.cat(
        [
            torch.rand(20000),
            thresholds,
            thresholds.nextafter(torch.tensor(9.0)),
            thresholds.nextafter(torch.tensor(-9.0)),
            torch.tensor([-0.0, 0.0, 1.0, 2.0, -3.0, float("-inf"), float("inf")]),
            (torch.arange(256) / 255.0).float(),
        ]
    )
    expected = torch.searchsorted(thresholds, values, right=inclusive)
    got = Bucketizer(thresholds).count_below(values, inclusive=inclusive)
    assert got.dtype == torch.int32
    assert torch.equal(got.long(), expected)
