"""Shared fixtures: the rendered sample, random inputs, the real data folder (optional)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def run_cli(*args):
    """Invoke the `wsssbed` CLI in-process (arguments are str()-ed); returns the result."""
    from typer.testing import CliRunner

    from wsssbed.cli import app

    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="session")
def sample_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The embedded sample, rendered once per test session into a temporary folder."""
    from wsssbed.embedded.sample import ensure_sample

    return ensure_sample(tmp_path_factory.mktemp("sample") / "sample")


@pytest.fixture
def shared_data() -> Path:
    """../shared/data when present (real VOC masks, bfscore fixtures); else skip."""
    if not SHARED.is_dir():
        pytest.skip("../shared/data is not present on this machine")
    return SHARED


def random_image(
    rng: np.random.Generator,
    num_classes: int,
    has_background: bool,
    height: int = 17,
    width: int = 23,
    max_labels: int = 3,
    quantised: bool = True,
):
    """A random image: gt with void, image labels, cams (with exact ties), saliency."""
    first = 1 if has_background else 0
    n = int(rng.integers(0, max_labels + 1))
    keys = np.sort(rng.choice(np.arange(first, num_classes), size=n, replace=False))
    gt_classes = np.concatenate(
        [[0] if has_background else [], keys, rng.integers(first, num_classes, 1)]
    ).astype(np.int64)
    blocks = rng.choice(gt_classes, size=(height // 4 + 1, width // 4 + 1))
    gt = np.kron(blocks, np.ones((4, 4), dtype=np.int64))[:height, :width]
    gt = np.where(rng.random((height, width)) < 0.08, 255, gt).astype(np.uint8)
    if quantised:  # multiples of 1/20 make exact ties with thresholds and between classes
        cams = (rng.integers(0, 21, size=(n, height, width)) / 20).astype(np.float32)
    else:
        cams = rng.random((n, height, width), dtype=np.float32)
    sal = rng.integers(0, 256, size=(height, width)).astype(np.uint8)
    return gt, keys, cams, sal
