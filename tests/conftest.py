"""Shared fixtures: the rendered sample, a private wsssbed home for every test, random
inputs, the real data folder (optional).

No test reads or writes the user's own wsssbed folder: every test gets an empty
`WSSSBED_HOME` of its own (holding only a link to the sample, rendered once per session)
and `HOME` points into the session's temporary folder, so `~` is not the user's either.
At the end of the session the user's folders are checked to be exactly as they were.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
# the user's wsssbed folders, read before any test redirects them
USER_HOMES = sorted(
    {Path.home() / ".wsssbed", *([Path(os.environ["WSSSBED_HOME"])] if os.environ.get(
        "WSSSBED_HOME") else [])}
)  # fmt: skip


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """`folder` and every entry below it (links not followed): relative path -> (size,
    mtime ns); empty when `folder` does not exist."""
    if not os.path.lexists(folder):
        return {}
    info = folder.lstat()
    entries = {".": (info.st_size, info.st_mtime_ns)}
    for root, folders, files in os.walk(folder):
        for name in folders + files:
            path = Path(root) / name
            info = path.lstat()
            entries[str(path.relative_to(folder))] = (info.st_size, info.st_mtime_ns)
    return entries


@pytest.fixture(scope="session", autouse=True)
def user_homes_untouched(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """`HOME` in a temporary folder for the session; afterwards, the user's wsssbed
    folders must be as they were (a test that wrote there would fail the session)."""
    before = {folder: snapshot(folder) for folder in USER_HOMES}
    fake = tmp_path_factory.mktemp("user-home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HOME", str(fake))
        yield fake
    for folder, entries in before.items():
        assert snapshot(folder) == entries, f"the test suite changed the user's {folder}"


@pytest.fixture(autouse=True)
def wsssbed_home(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch, sample_root: Path
) -> Path:
    """This test's own `WSSSBED_HOME` (beside its `tmp_path`, which it leaves as it is):
    no manifests, no maps, and the session's sample linked in, so a default-sample
    command does not render it again."""
    from wsssbed.embedded.sample import SAMPLE_VERSION

    home = tmp_path_factory.mktemp("home")
    (home / f"sample-{SAMPLE_VERSION}").symlink_to(sample_root, target_is_directory=True)
    monkeypatch.setenv("WSSSBED_HOME", str(home))
    return home


def run_cli(*args):
    """Invoke the `wsssbed` CLI in-process (arguments are str()-ed); returns the result."""
    from typer.testing import CliRunner

    from wsssbed.cli import app

    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)


def sweep_sample(sample_root: Path, out: Path, runs) -> Path:
    """`wsssbed sweep` of the sample's npz maps into the results folder `out`, once per
    tuple of extra arguments in `runs`; returns `out`."""
    maps = sample_root / "activation/sample-cam/npz"
    common = ("--data-root", sample_root, "--activation", maps, "--activation-format", "npz",
              "--allow-extra-maps", "--out", out, "--json")  # fmt: skip
    for extra in runs:
        result = run_cli("sweep", *extra, *common)
        assert result.exit_code == 0, result.stderr
    return out


@pytest.fixture(scope="session")
def sample_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The embedded sample, rendered once per test session into a temporary folder."""
    from wsssbed.embedded.sample import SAMPLE_VERSION, ensure_sample

    return ensure_sample(tmp_path_factory.mktemp("sample") / f"sample-{SAMPLE_VERSION}")


@pytest.fixture(scope="session")
def sample_train_aug(sample_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data root with the sample's masks and pictures whose `train_aug` lists all 72
    images (train, then val): the split the catalogue's VOC entries cover, so the sample's
    maps cover it exactly, as WSSS-BED's cover the real train_aug."""
    root = tmp_path_factory.mktemp("train-aug") / "VOC2012"
    lists = root / "ImageSets/Segmentation"
    lists.mkdir(parents=True)
    for folder in ("JPEGImages", "SegmentationClass"):
        (root / folder).symlink_to(sample_root / "VOC2012" / folder, target_is_directory=True)
    given = sample_root / "VOC2012/ImageSets/Segmentation"
    ids = [(given / f"{split}.txt").read_text() for split in ("train", "val")]
    (lists / "train_aug.txt").write_text("".join(ids))
    from wsssbed.datasets.sanity import SYNTHETIC

    (root.parent / SYNTHETIC).write_text("the embedded sample's masks: its lists are its own\n")
    return root.parent


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
