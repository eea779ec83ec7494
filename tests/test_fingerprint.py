"""Ground-truth fingerprints and id-list subsets, against hashlib and numpy recomputations."""

from __future__ import annotations

import hashlib
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from reference import confusion, irn_labels, metrics
from typer.testing import CliRunner

import wsssbed
from wsssbed.cli import app
from wsssbed.errors import InputError

SAMPLE_MAPS = "activation/sample-cam/npz"


def _documented_gt_digest(folder: Path, ids: list[str]) -> str:
    """docs/results.md's definition, written out with hashlib (VOC masks map by identity)."""
    outer = hashlib.sha256()
    for image_id in sorted(ids):
        gt = np.array(Image.open(folder / f"{image_id}.png"))
        inner = hashlib.sha256(struct.pack("<II", *gt.shape) + gt.astype(np.uint8).tobytes())
        outer.update(image_id.encode() + b"\0" + inner.digest())
    return "sha256:" + outer.hexdigest()


def _sweep(root: Path, split: str = "train", maps: Path | None = None):
    """bg-threshold 0.3 on `root`'s masks with `maps` (default: the root's own)."""
    return wsssbed.sweep(
        dataset="voc2012",
        data_root=root,
        split=split,
        activation=maps or root / SAMPLE_MAPS,
        activation_format="npz",
        thresholds="0.3",
        boundary=False,
        allow_extra_maps=True,  # the sample's maps cover train and val
    )


def test_a_run_records_the_fingerprint_of_what_it_scored(sample_root):
    run = _sweep(sample_root).run
    masks = sample_root / "VOC2012/SegmentationClass"
    ids = (sample_root / "VOC2012/ImageSets/Segmentation/train.txt").read_text().split()
    assert run.gt_digest == _documented_gt_digest(masks, ids)
    assert (
        run.split_digest
        == "sha256:" + hashlib.sha256("".join(f"{i}\n" for i in sorted(ids)).encode()).hexdigest()
    )
    assert run.gt_source == "VOC2012/SegmentationClass"
    assert run.split_file is None and run.split_file_sha256 is None


def test_the_fingerprint_ignores_the_encoder_and_sees_one_pixel(sample_root, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(sample_root / "VOC2012", copy / "VOC2012")
    masks = copy / "VOC2012/SegmentationClass"
    for path in masks.glob("*.png"):  # palette PNGs become greyscale, stored uncompressed
        Image.fromarray(np.array(Image.open(path))).save(path, compress_level=0)
    assert Image.open(next(masks.glob("*.png"))).mode == "L"
    reference = _sweep(sample_root, maps=sample_root / SAMPLE_MAPS).run.gt_digest
    reencoded = _sweep(copy, maps=sample_root / SAMPLE_MAPS).run
    assert reencoded.gt_digest == reference

    first = sorted(masks.glob("*.png"))[0]
    gt = np.array(Image.open(first))
    gt[0, 0] = 255 if gt[0, 0] != 255 else 0
    Image.fromarray(gt).save(first)
    changed = _sweep(copy, maps=sample_root / SAMPLE_MAPS).run
    assert changed.gt_digest != reference
    assert changed.split_digest == reencoded.split_digest  # same ids, other pixels


def test_an_id_file_scores_exactly_its_images(sample_root, tmp_path):
    from wsssbed.activation import read_activation
    from wsssbed.datasets import get_dataset

    ids = (sample_root / "VOC2012/ImageSets/Segmentation/train.txt").read_text().split()[::-5]
    id_file = tmp_path / "my subset.txt"
    id_file.write_text("\n".join(ids) + "\n")
    result = _sweep(sample_root, split=str(id_file))
    run = result.run
    assert (run.split, run.n_images) == ("my subset.txt", len(ids))
    assert run.split_file == str(id_file.resolve())
    assert run.split_file_sha256 == hashlib.sha256(id_file.read_bytes()).hexdigest()
    masks = sample_root / "VOC2012/SegmentationClass"
    assert run.gt_digest == _documented_gt_digest(masks, ids)

    spec = get_dataset("voc2012")
    total = 0
    for image_id in ids:
        gt = np.array(Image.open(masks / f"{image_id}.png"))
        maps = read_activation(sample_root / SAMPLE_MAPS, image_id, "npz", spec)
        pred = irn_labels(maps.class_ids, maps.cams, np.float32(0.3), True, gt.shape)
        total = total + confusion(gt, pred, 21)
    assert result.points.miou[0] == pytest.approx(metrics(total)["miou"], abs=1e-12)


def test_id_file_errors_name_the_file(sample_root, tmp_path):
    missing = tmp_path / "nowhere.txt"
    with pytest.raises(InputError, match="split id file not found") as info:
        _sweep(sample_root, split=str(missing))
    assert str(missing) in str(info.value)
    unknown = tmp_path / "ids.txt"
    unknown.write_text("not_an_image\n")
    with pytest.raises(InputError, match="not_an_image"):
        _sweep(sample_root, split=str(unknown))


def test_a_named_dataset_without_data_root_is_refused_and_a_bare_sweep_says_sample(
    sample_root, tmp_path, monkeypatch
):
    monkeypatch.setattr("wsssbed.embedded.sample.ensure_sample", lambda path=None: sample_root)
    runner = CliRunner()
    refused = runner.invoke(app, ["sweep", "--dataset", "ade20k", "--out", str(tmp_path / "r")])
    assert refused.exit_code == 2 and "--data-root" in refused.output
    assert not (tmp_path / "r").exists()
    bare = runner.invoke(app, ["sweep", "--out", str(tmp_path / "r"), "--no-boundary"])
    assert bare.exit_code == 0, bare.output
    text = " ".join(bare.output.split())
    assert "synthetic sample" in text and str(sample_root) in text


def test_datasets_check_explains_a_copy_without_pictures(sample_root, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(sample_root / "VOC2012", copy / "VOC2012")
    shutil.rmtree(copy / "VOC2012/JPEGImages")
    result = CliRunner().invoke(
        app, ["datasets", "check", "--dataset", "voc2012", "--data-root", str(copy)]
    )
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "no JPEGImages" in text and "masks only" in text


VOC = Path(__file__).resolve().parents[1].parent / "shared/data"


def test_an_id_file_of_the_22_real_pictures_matches_numpy(shared_data, tmp_path):
    """Real VOC masks and a published method's predictions, scored through an id file."""
    from foundation_fixtures import voc_class_ids

    figures, voc = shared_data / "voc2012-figures", shared_data / "VOC2012"
    if not figures.is_dir() or not voc.is_dir():
        pytest.skip("voc2012-figures or VOC2012 is not in ../shared/data")
    ids = sorted(p.stem for p in figures.glob("*.png") if not p.stem.endswith(("_gt", "_pred")))
    assert len(ids) == 22
    predictions = tmp_path / "pred"
    predictions.mkdir()
    total = 0
    for image_id in ids:
        pred = voc_class_ids(figures / f"{image_id}_pred.png")
        Image.fromarray(pred).save(predictions / f"{image_id}.png")
        gt = np.array(Image.open(voc / "SegmentationClassAug" / f"{image_id}.png"))
        total = total + confusion(gt, pred, 21)
    id_file = tmp_path / "figures.txt"
    id_file.write_text("\n".join(reversed(ids)) + "\n")
    result = wsssbed.evaluate(
        predictions, dataset="voc2012", data_root=voc, split=str(id_file), boundary=False
    )
    assert result.run.n_images == 22 and result.run.gt_source == "SegmentationClassAug"
    expected = metrics(total)
    for column in ("miou", "pixel_accuracy", "miou_gt_present"):
        assert result.points[column][0] == pytest.approx(expected[column], abs=1e-12)
    assert result.run.gt_digest == _documented_gt_digest(voc / "SegmentationClassAug", ids)


def test_pseudo_labels_and_evaluate_take_an_id_file(sample_root, tmp_path):
    ids = (sample_root / "VOC2012/ImageSets/Segmentation/val.txt").read_text().split()[:7]
    id_file = tmp_path / "seven.txt"
    id_file.write_text("\n".join(ids) + "\n")
    runner = CliRunner()
    common = ["--data-root", str(sample_root), "--split", str(id_file)]
    labels = tmp_path / "labels"
    written = runner.invoke(
        app,
        ["pseudo-labels", *common, "--activation", str(sample_root / SAMPLE_MAPS),
         "--activation-format", "npz", "--generator", "bg-threshold", "--threshold", "0.3",
         "--out", str(labels)],
    )  # fmt: skip
    assert written.exit_code == 0, written.output
    assert sorted(p.stem for p in labels.glob("*.png")) == sorted(ids)
    scored = runner.invoke(
        app, ["evaluate", "--pred", str(labels), *common, "--out", str(tmp_path / "r"), "--json"]
    )
    assert scored.exit_code == 0, scored.output
    run = wsssbed.read_results(tmp_path / "r").runs.iloc[0]
    assert (run.split, run.n_images) == ("seven.txt", 7)
    # the val masks live in the same folder: the sweep over the same ids agrees
    assert run.gt_digest == _sweep(sample_root, split=str(id_file)).run.gt_digest
