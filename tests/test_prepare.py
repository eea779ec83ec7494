"""`datasets prepare` on tiny archives in each official format, against hand-made masks."""

from __future__ import annotations

import shutil
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy.io import savemat
from typer.testing import CliRunner

from wsssbed.cli import app
from wsssbed.datasets import get_dataset
from wsssbed.datasets.local import LocalDataset
from wsssbed.datasets.prepare import coco_mask_layout, prepare
from wsssbed.errors import InputError
from wsssbed.io.configio import read_toml

RNG = np.random.default_rng(0)


def _png(path: Path, mask: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(mask.astype(np.uint8)).save(path)


def _jpg(path: Path, shape: tuple[int, int]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(RNG.integers(0, 255, (*shape, 3), dtype=np.uint8)).save(path)


def _mask(shape, classes, void=False) -> np.ndarray:
    mask = RNG.choice(np.array(classes, dtype=np.uint8), size=shape)
    if void:
        mask[0, :] = 255  # VOC's void border
    return mask


def _tar(folder: Path, archive: Path) -> Path:
    with tarfile.open(archive, "w") as handle:
        for path in sorted(folder.rglob("*")):
            handle.add(path, path.relative_to(folder).as_posix(), recursive=False)
    return archive


def _voc_archives(tmp_path: Path) -> tuple[Path, Path, dict[str, np.ndarray]]:
    """VOCtrainval (a, b train; c val) and SBD (b, d train; c, e val) as tar archives."""
    voc_dir = tmp_path / "voc/VOCdevkit/VOC2012"
    voc = {i: _mask((6, 8), [0, 15], void=True) for i in ("a", "b", "c")}
    for image_id, mask in voc.items():
        _png(voc_dir / "SegmentationClass" / f"{image_id}.png", mask)
        _jpg(voc_dir / "JPEGImages" / f"{image_id}.jpg", mask.shape)
    (voc_dir / "ImageSets/Segmentation").mkdir(parents=True)
    (voc_dir / "ImageSets/Segmentation/train.txt").write_text("a\nb\n")
    (voc_dir / "ImageSets/Segmentation/val.txt").write_text("c\n")
    sbd_dir = tmp_path / "sbd/benchmark_RELEASE/dataset"
    sbd = {i: _mask((6, 8), [0, 7, 12]) for i in ("b", "c", "d", "e")}
    (sbd_dir / "cls").mkdir(parents=True)
    for image_id, mask in sbd.items():
        gtcls = {
            "Segmentation": mask,
            "Boundaries": np.zeros(1),
            "CategoriesPresent": np.array([7]),
        }
        savemat(sbd_dir / "cls" / f"{image_id}.mat", {"GTcls": gtcls})
    (sbd_dir / "train.txt").write_text("d\nb\n")
    (sbd_dir / "val.txt").write_text("e\nc\n")
    expected = {"a": voc["a"], "b": voc["b"], "c": voc["c"], "d": sbd["d"], "e": sbd["e"]}
    return (
        _tar(tmp_path / "voc", tmp_path / "VOCtrainval.tar"),
        _tar(tmp_path / "sbd", tmp_path / "benchmark.tgz"),
        expected,
    )


def test_voc_with_sbd_builds_segmentation_class_aug(tmp_path):
    voc, sbd, expected = _voc_archives(tmp_path)
    out = tmp_path / "data"
    seen = []
    counts = prepare("voc2012", [voc, sbd], out, lambda d, t: seen.append((d, t)))
    assert counts == {"train": 2, "val": 1, "train_aug": 4} and seen
    spec = get_dataset("voc2012")
    aug = LocalDataset(spec, out, "train_aug")
    assert aug.ids == ["a", "b", "d", "e"]  # (SBD train + SBD val + VOC train) - VOC val
    assert aug.gt_folder == out / "VOC2012/SegmentationClassAug"
    for image_id in ("a", "b", "c", "d", "e"):  # VOC's mask wins where VOC has one
        got = np.array(Image.open(out / "VOC2012/SegmentationClassAug" / f"{image_id}.png"))
        assert np.array_equal(got, expected[image_id]), image_id
    original = np.array(Image.open(out / "VOC2012/SegmentationClass/b.png"))
    assert np.array_equal(original, expected["b"])
    labels = (out / "VOC2012/cls_labels/train_aug_cls.txt").read_text().splitlines()
    assert labels[2] == "d " + " ".join(
        str(c - 1) for c in sorted(set(np.unique(expected["d"]).tolist()) - {0, 255})
    )
    record = read_toml(out / "PREPARED.toml", "record")
    assert record["dataset"] == "voc2012" and record["splits"]["train_aug"] == 4
    assert [s["kind"] for s in record["sources"]] == ["archive", "archive"]
    assert len(record["sources"][0]["sha256"]) == 64
    assert not list(tmp_path.glob(".data.partial-*"))


def test_a_bad_source_leaves_nothing_that_looks_prepared(tmp_path):
    voc, _, _ = _voc_archives(tmp_path)
    sbd_dir = tmp_path / "sbd/benchmark_RELEASE/dataset"
    (sbd_dir / "cls/d.mat").write_bytes(b"MATLAB 5.0 but not really")
    out = tmp_path / "data"
    with pytest.raises(InputError) as info:
        prepare("voc2012", [voc, tmp_path / "sbd"], out)
    assert "d.mat" in str(info.value)
    assert not out.exists() and not list(tmp_path.glob(".data.partial-*"))
    (out / "x").mkdir(parents=True)
    result = CliRunner().invoke(
        app, ["datasets", "prepare", "voc2012", "--from", str(voc), "--out", str(out)]
    )
    assert result.exit_code == 2 and "not empty" in result.output


def test_coco_masks_in_raw_category_ids_are_mapped(tmp_path):
    spec = get_dataset("coco2014")
    raw = tmp_path / "masks_val2014"
    hand = {}
    for n, values in enumerate(([0, 1, 90], [0, 13, 255], [0, 82, 1])):
        mask = _mask((5, 7), values)
        _png(raw / f"COCO_val2014_{n:012d}.png", mask)
        hand[f"COCO_val2014_{n:012d}"] = mask
    out = tmp_path / "coco"
    assert prepare("coco2014", [raw], out) == {"val": 3}
    local = LocalDataset(spec, out, "val")
    lookup = {0: 0, 255: 255, 1: 1, 13: 12, 82: 73, 90: 80}  # category id -> class id by hand
    for image_id, mask in hand.items():
        assert np.array_equal(local.read_gt(image_id), np.vectorize(lookup.get)(mask))
    assert spec.classes[12] == "stop sign" and spec.classes[80] == "toothbrush"


def test_coco_layouts_are_told_apart_or_refused():
    spec = get_dataset("coco2014")
    assert coco_mask_layout({0, 12, 26, 255}, spec) == "contiguous"  # 12, 26 are no category
    assert coco_mask_layout({0, 1, 85, 90}, spec) == "raw"  # beyond 80
    with pytest.raises(InputError, match="cannot tell"):
        coco_mask_layout({0, 1, 2, 3}, spec)
    with pytest.raises(InputError, match="fit neither"):
        coco_mask_layout({0, 12, 85}, spec)


def test_coco_instances_json_through_prepare(tmp_path):
    import json

    annotations = tmp_path / "instances_train2014.json"
    image = {"id": 7, "file_name": "COCO_train2014_000000000007.jpg", "height": 4, "width": 6}
    annotations.write_text(json.dumps({
        "images": [image],
        "annotations": [{"id": 1, "image_id": 7, "category_id": 90, "iscrowd": 0, "area": 4,
                         "segmentation": [[0, 0, 2, 0, 2, 2, 0, 2]]}],
        "categories": [],
    }))  # fmt: skip
    out = tmp_path / "coco"
    assert prepare("coco2014", [annotations], out) == {"train": 1}
    gt = LocalDataset(get_dataset("coco2014"), out, "train").read_gt("COCO_train2014_000000000007")
    assert gt.shape == (4, 6) and set(np.unique(gt).tolist()) == {0, 80}


def test_cocostuff_stuffthingmaps_follow_the_official_ids(tmp_path):
    spec = get_dataset("cocostuff")
    coco = get_dataset("coco2014")
    raw = next(s for s in spec.ground_truth if s.mapping == "lookup").raw_ids
    # things: stuffthingmaps store COCO category id - 1 (the official label list is 1-based)
    assert [r + 1 for r in raw[:80]] == list(coco.category_ids)
    assert spec.classes[:80] == coco.classes[1:]
    # stuff: official ids 92..182, stored as 91..181, in the label list's order
    assert raw[80:] == tuple(range(91, 182))
    archive = tmp_path / "stuffthingmaps_trainval2017.zip"
    masks = {"000000000139": _mask((4, 5), [0, 91, 181, 255]), "000000000285": _mask((4, 5), [89])}
    with zipfile.ZipFile(archive, "w") as handle:
        for image_id, mask in masks.items():
            _png(tmp_path / "m.png", mask)
            handle.write(tmp_path / "m.png", f"val2017/{image_id}.png")
    out = tmp_path / "stuff"
    assert prepare("cocostuff", [archive], out) == {"val2017": 2}
    local = LocalDataset(spec, out, "val2017")
    lookup = {0: 0, 91: 80, 181: 170, 89: 79, 255: 255}  # person, banner, wood, toothbrush
    for image_id, mask in masks.items():
        assert np.array_equal(local.read_gt(image_id), np.vectorize(lookup.get)(mask))
    assert spec.classes[80] == "banner" and spec.classes[170] == "wood"


def test_ade20k_official_zip_and_context_mmseg_layout(tmp_path):
    ade = tmp_path / "ade/ADEChallengeData2016"
    mask = _mask((5, 6), [0, 1, 150])
    _png(ade / "annotations/validation/ADE_val_00000001.png", mask)
    _jpg(ade / "images/validation/ADE_val_00000001.jpg", (5, 6))
    archive = tmp_path / "ADEChallengeData2016.zip"
    shutil.make_archive(str(archive.with_suffix("")), "zip", tmp_path / "ade")
    assert prepare("ade20k", [archive], tmp_path / "ade-ready") == {"validation": 1}
    gt = LocalDataset(get_dataset("ade20k"), tmp_path / "ade-ready", "validation").read_gt(
        "ADE_val_00000001"
    )
    assert np.array_equal(gt, np.vectorize({0: 255, 1: 0, 150: 149}.get)(mask))

    voc2010 = tmp_path / "pc/VOCdevkit/VOC2010"  # what mmsegmentation's pascal_context.py writes
    context = _mask((5, 6), [0, 3, 59])
    _png(voc2010 / "SegmentationClassContext/2008_000002.png", context)
    (voc2010 / "ImageSets/SegmentationContext").mkdir(parents=True)
    (voc2010 / "ImageSets/SegmentationContext/val.txt").write_text("2008_000002\n")
    assert prepare("context59", [tmp_path / "pc"], tmp_path / "pc-ready") == {"val": 1}
    gt = LocalDataset(get_dataset("context59"), tmp_path / "pc-ready", "val").read_gt("2008_000002")
    assert np.array_equal(gt, np.vectorize({0: 255, 3: 2, 59: 58}.get)(context))


def test_the_real_ade20k_sample_prepares(shared_data, tmp_path):
    sample = shared_data / "ADEChallengeData2016-sample"
    if not sample.is_dir():
        pytest.skip("no ADE20K sample in ../shared/data")
    counts = prepare("ade20k", [sample], tmp_path / "ade")
    assert counts == {"training": 1, "validation": 1}


def test_raw_coco_masks_read_directly_point_to_prepare(tmp_path):
    root = tmp_path / "coco"
    _png(root / "SegmentationClass/val2014/x.png", _mask((3, 3), [0, 88]))
    (root / "ImageSets").mkdir(parents=True)
    (root / "ImageSets/val.txt").write_text("x\n")
    with pytest.raises(InputError, match="datasets prepare coco2014"):
        LocalDataset(get_dataset("coco2014"), root, "val").read_gt("x")
