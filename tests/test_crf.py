"""Dense CRF refinement against pydensecrf2 called directly, on the sample and on real VOC
pictures, through the library and the CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydensecrf.densecrf as densecrf
import pydensecrf.utils as utils
import pytest
from foundation_fixtures import voc_class_ids, voc_figures_layout
from PIL import Image
from typer.testing import CliRunner

import wsssbed
from wsssbed.cli import app
from wsssbed.generators.crf import CrfSettings, crf_refine


def _irn_crf(image: np.ndarray, labels: np.ndarray, n_labels: int) -> np.ndarray:
    """IRN's `crf_inference_label`, written out against pydensecrf2 (labels 0..n-1)."""
    height, width = labels.shape
    crf = densecrf.DenseCRF2D(width, height, n_labels)
    crf.setUnaryEnergy(utils.unary_from_labels(labels, n_labels, gt_prob=0.7, zero_unsure=False))
    crf.addPairwiseGaussian(sxy=3, compat=3)
    crf.addPairwiseBilateral(sxy=50, srgb=5, rgbim=np.ascontiguousarray(image), compat=10)
    q = np.asarray(crf.inference(10)).reshape(n_labels, height, width)
    return np.argmax(q, axis=0)


def _sample_inputs(sample_root: Path, image_id: str) -> tuple[np.ndarray, np.ndarray]:
    image = np.array(Image.open(sample_root / "VOC2012/JPEGImages" / f"{image_id}.jpg"))
    labels = np.array(Image.open(sample_root / "VOC2012/SegmentationClass" / f"{image_id}.png"))
    return image, labels


def test_crf_equals_pydensecrf2_called_directly(sample_root):
    image, gt = _sample_inputs(sample_root, "sample_0003")
    noisy = gt.copy()
    noisy[noisy == 255] = 0
    rng = np.random.default_rng(0)
    flip = rng.random(noisy.shape) < 0.15  # a label map with salt to clean up
    present = np.unique(noisy)
    noisy[flip] = rng.choice(present, size=int(flip.sum()))
    refined = crf_refine(image, noisy, CrfSettings())
    compact = np.searchsorted(present, noisy)
    assert np.array_equal(refined, present[_irn_crf(image, compact, present.size)])
    assert (refined != noisy).mean() < (flip.mean())  # it cleans up more than it moves


def test_ignored_pixels_stay_ignored_and_one_class_is_left_alone(sample_root):
    image, gt = _sample_inputs(sample_root, "sample_0005")
    refined = crf_refine(image, gt, CrfSettings())
    assert np.array_equal(refined == 255, gt == 255)
    assert set(np.unique(refined)) <= set(np.unique(gt))
    single = np.where(gt == 255, 255, 0).astype(np.uint8)
    assert np.array_equal(crf_refine(image, single, CrfSettings()), single)


def test_pseudo_labels_refine_and_refine_command(sample_root, tmp_path):
    maps = sample_root / "activation/sample-cam/npz"
    runner = CliRunner()
    common = ["--data-root", str(sample_root), "--activation", str(maps), "--activation-format",
              "npz", "--generator", "bg-threshold", "--threshold", "0.3"]  # fmt: skip
    plain = runner.invoke(app, ["pseudo-labels", *common, "--out", str(tmp_path / "plain")])
    refined = runner.invoke(app, ["pseudo-labels", *common, "--refine", "crf", "--out",
                                  str(tmp_path / "crf")])  # fmt: skip
    assert plain.exit_code == 0 and refined.exit_code == 0, refined.output
    again = runner.invoke(app, ["refine", "--pred", str(tmp_path / "plain"), "--data-root",
                                str(sample_root), "--out", str(tmp_path / "again")])  # fmt: skip
    assert again.exit_code == 0, again.output
    for path in sorted((tmp_path / "plain").glob("*.png"))[:6]:
        image, _ = _sample_inputs(sample_root, path.stem)
        expected = crf_refine(image, np.array(Image.open(path)), CrfSettings())
        assert np.array_equal(np.array(Image.open(tmp_path / "crf" / path.name)), expected)
        assert np.array_equal(np.array(Image.open(tmp_path / "again" / path.name)), expected)
    record = (tmp_path / "crf/wsssbed.toml").read_text()
    assert 'refine = "crf"' in record and "crf_bilateral_sxy = 50.0" in record
    assert 'generator = "bg-threshold+crf"' in record
    bad = runner.invoke(app, ["pseudo-labels", *common, "--refine", "dilate", "--out",
                              str(tmp_path / "bad")])  # fmt: skip
    assert bad.exit_code == 2 and "use none or crf" in bad.output


def test_crf_on_real_voc_pictures_is_scored(shared_data, tmp_path):
    """The published method's predictions on real VOC pictures, refined and swept."""
    figures = shared_data / "voc2012-figures"
    if not figures.is_dir():
        pytest.skip("no voc2012-figures in ../shared/data")
    ids = voc_figures_layout(figures, tmp_path, 6)
    predictions = tmp_path / "pred"
    predictions.mkdir()
    for image_id in ids:
        pred = voc_class_ids(figures / f"{image_id}_pred.png")
        Image.fromarray(pred).save(predictions / f"{image_id}.png")
    result = CliRunner().invoke(app, ["refine", "--pred", str(predictions), "--data-root",
                                      str(tmp_path), "--split", "train", "--out",
                                      str(tmp_path / "crf")])  # fmt: skip
    assert result.exit_code == 0, result.output
    before = wsssbed.evaluate(predictions, data_root=tmp_path, split="train", boundary=False)
    after = wsssbed.evaluate(tmp_path / "crf", data_root=tmp_path, split="train", boundary=False)
    assert before.run.n_images == after.run.n_images == 6
    for image_id in ids:
        image = np.array(Image.open(tmp_path / "VOC2012/JPEGImages" / f"{image_id}.jpg"))
        expected = crf_refine(image, np.array(Image.open(predictions / f"{image_id}.png")),
                              CrfSettings())  # fmt: skip
        assert np.array_equal(np.array(Image.open(tmp_path / "crf" / f"{image_id}.png")), expected)
    assert 0 < after.points.miou[0] <= 1


def test_worker_processes_write_the_in_process_files(sample_root, tmp_path):
    """`--workers 2` (spawned processes, shards of 8) writes the in-process run's files and
    digest; a damaged picture met in a worker stops the run naming the file."""
    import shutil

    runner = CliRunner()
    common = [
        "--data-root",
        str(sample_root),
        "--activation",
        "",
        "--activation-format",
        "npz",
        "--generator",
        "bg-threshold",
        "--threshold",
        "0.3",
        "--refine",
        "crf",
    ]
    common[3] = str(sample_root / "activation/sample-cam/npz")
    runs = {}
    for workers in ("0", "2"):
        result = runner.invoke(app, ["pseudo-labels", *common, "--workers", workers,
                                     "--out", str(tmp_path / workers)])  # fmt: skip
        assert result.exit_code == 0, result.output
        runs[workers] = (tmp_path / workers / "wsssbed.toml").read_text()
    assert runs["0"].split("digest")[1] == runs["2"].split("digest")[1]
    copy = tmp_path / "copy"
    shutil.copytree(sample_root, copy)
    victim = sorted((copy / "VOC2012/JPEGImages").glob("*.jpg"))[30]
    victim.write_bytes(b"\xff\xd8 not a picture")
    common[1], common[3] = str(copy), str(copy / "activation/sample-cam/npz")
    broken = runner.invoke(app, ["pseudo-labels", *common, "--workers", "2", "--out",
                                 str(tmp_path / "broken")])  # fmt: skip
    assert broken.exit_code == 2 and victim.name in broken.stderr, broken.output
    assert "Traceback" not in broken.stderr
