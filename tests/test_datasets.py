"""Dataset specs, label mappings, layouts and `datasets check`."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from PIL import Image
from reference import CLASS_COUNTS

from wsssbed.datasets import BUILTIN, get_dataset, load_spec
from wsssbed.datasets.check import check_dataset
from wsssbed.datasets.local import LocalDataset, label_lookup, labels_from_mask, map_labels
from wsssbed.errors import InputError


def test_builtin_class_counts_and_background():
    counts = {name: get_dataset(name).num_classes for name in BUILTIN}
    assert counts == CLASS_COUNTS
    assert [get_dataset(n).has_background for n in BUILTIN] == [
        True,
        True,
        True,
        False,
        False,
        False,
    ]


def test_published_split_sizes():
    assert get_dataset("voc2012").splits == {"train": 1464, "train_aug": 10582, "val": 1449}
    assert get_dataset("coco2014").splits == {"train": 82081, "val": 40137}


def test_voc_class_order():
    classes = get_dataset("voc2012").classes
    assert classes[0] == "background" and classes[15] == "person" and classes[20] == "tvmonitor"


def test_coco_category_ids_map_to_contiguous_classes():
    spec = get_dataset("coco2014")
    from wsssbed.datasets.coco import category_lookup

    lookup = category_lookup(spec)
    unused = {12, 26, 29, 30, 45, 66, 68, 69, 71, 83}
    assert set(range(1, 91)) - set(lookup) == unused
    assert lookup[1] == 1 and spec.classes[1] == "person"
    assert lookup[90] == 80 and spec.classes[80] == "toothbrush"
    assert spec.classes[lookup[13]] == "stop sign" and lookup[13] == 12
    assert list(lookup.values()) == list(range(1, 81))


def test_cocostuff_182_to_171_mapping():
    stuff = get_dataset("cocostuff")
    coco = get_dataset("coco2014")
    source = stuff.ground_truth[1]
    assert source.mapping == "lookup" and len(source.raw_ids) == 171
    # things: raw id = COCO category id - 1; stuff: raw ids 91..181 (COCO ids 92..182)
    assert list(source.raw_ids[:80]) == [c - 1 for c in coco.category_ids]
    assert list(source.raw_ids[80:]) == list(range(91, 182))
    assert stuff.classes[:80] == coco.classes[1:]
    table = label_lookup(stuff, source)
    raw = np.array([[0, 12, 91, 181, 255]], dtype=np.uint8)
    assert map_labels(raw, table, "x").tolist() == [[0, 11, 80, 170, 255]]
    with pytest.raises(InputError, match=r"\[11\]"):  # raw 11 = unused COCO id 12
        map_labels(np.array([[11]], dtype=np.uint8), table, "x")


def test_context59_is_context60_without_background():
    c60, c59 = get_dataset("context"), get_dataset("context59")
    assert c59.classes == c60.classes[1:]
    assert c60.classes[:4] == ("background", "aeroplane", "bag", "bed")
    assert list(c60.classes[1:]) == sorted(c60.classes[1:])  # alphabetical
    raw = np.array([[0, 1, 59]], dtype=np.uint8)
    assert map_labels(raw, label_lookup(c59, c59.ground_truth[0]), "x").tolist() == [[255, 0, 58]]


def test_ade20k_reduce_zero_label_on_the_real_sample(shared_data):
    root = shared_data / "ADEChallengeData2016-sample"
    spec = get_dataset("ade20k")
    local = LocalDataset(spec, root, "validation")
    assert local.ids == ["ADE_val_00000001"]
    raw = np.array(Image.open(root / "annotations/validation/ADE_val_00000001.png"))
    gt = local.read_gt("ADE_val_00000001")
    assert np.array_equal(gt == 255, raw == 0)
    assert np.array_equal(gt[raw > 0], raw[raw > 0] - 1)
    assert local.image_path("ADE_val_00000001").is_file()


def test_voc_labels_from_masks_agree_with_label_lists(shared_data):
    from wsssbed.datasets.local import read_label_list

    spec = get_dataset("voc2012")
    local = LocalDataset(spec, shared_data / "VOC2012", "train")
    lists = read_label_list(local.label_list_file, spec)
    for image_id in local.ids[:40]:
        assert labels_from_mask(local.read_gt(image_id), spec) == lists[image_id]


def test_layout_accepts_vocdevkit(tmp_path, sample_root):
    shutil.copytree(sample_root / "VOC2012", tmp_path / "VOCdevkit" / "VOC2012")
    local = LocalDataset(get_dataset("voc2012"), tmp_path, "val")
    assert len(local.ids) == 24 and local.read_gt(local.ids[0]).dtype == np.uint8


def test_check_reports_valid_sample(sample_root):
    report = check_dataset(LocalDataset(get_dataset("voc2012"), sample_root, "train"))
    assert report.ok and report.valid_masks == 48 and report.images_checked == 48
    assert report.class_pixels[0] > 0


def test_check_names_corrupt_and_unknown_masks(tmp_path, sample_root):
    root = tmp_path / "copy"
    shutil.copytree(sample_root / "VOC2012", root / "VOC2012")
    masks = root / "VOC2012" / "SegmentationClass"
    (masks / "sample_0003.png").write_bytes(b"not a png at all")
    Image.fromarray(np.full((120, 160), 42, np.uint8)).save(masks / "sample_0005.png")
    (root / "VOC2012" / "JPEGImages" / "sample_0007.jpg").unlink()
    report = check_dataset(LocalDataset(get_dataset("voc2012"), root, "train"))
    assert not report.ok and report.valid_masks == 46
    problems = dict(report.problems)
    assert "cannot decode" in problems[str(masks / "sample_0003.png")]
    assert "[42]" in problems[str(masks / "sample_0005.png")]
    assert any(path.endswith("sample_0007.jpg") for path in problems)


def test_check_real_voc_train_aug(shared_data):
    report = check_dataset(
        LocalDataset(get_dataset("voc2012"), shared_data / "VOC2012", "train_aug")
    )
    assert report.ok and report.valid_masks == 10582 == report.expected
    assert report.images_checked == 0  # the shared copy has no JPEGs


def test_user_spec_file_plugs_in(tmp_path):
    spec_file = tmp_path / "lesions.toml"
    spec_file.write_text(
        'name = "lesions"\nclasses = ["skin", "lesion"]\nhas_background = true'
        '\n[splits]\ntest = 3\n[layout]\nsplit_files = ["lists/{split}.txt"]\n'
        '[[ground_truth]]\nfolder = "masks"\n'
    )
    spec = get_dataset(str(spec_file))
    assert spec.num_classes == 2 and spec.ground_truth[0].mapping == "identity"


@pytest.mark.parametrize(
    "text,message",
    [
        ("name = 'x'", "`classes` is missing"),
        (
            "name='x'\nclasses=['a','a']\nhas_background=true\nsplits={}\nlayout={}\nground_truth=[]",
            "twice",
        ),
        ("not toml [", "not a valid TOML"),
    ],
)
def test_bad_spec_files_are_refused(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(InputError, match=message) as info:
        load_spec(path)
    assert str(path) in str(info.value)


def test_unknown_dataset_and_missing_split(sample_root):
    with pytest.raises(InputError, match="unknown dataset"):
        get_dataset("pascal")
    with pytest.raises(InputError, match="split 'nope' not found"):
        _ = LocalDataset(get_dataset("voc2012"), sample_root, "nope").ids


def test_coco_converter_writes_masks_and_labels(tmp_path):
    import json

    spec = get_dataset("coco2014")
    annotations = {
        "images": [
            {"id": 1, "file_name": "COCO_val2014_000000000001.jpg", "height": 20, "width": 30}
        ],
        "annotations": [
            {
                "id": 1,
                "image_id": 1,
                "category_id": 1,
                "iscrowd": 0,
                "area": 200,
                "segmentation": [[0, 0, 20, 0, 20, 10, 0, 10]],
            },
            {
                "id": 2,
                "image_id": 1,
                "category_id": 90,
                "iscrowd": 0,
                "area": 16,
                "segmentation": [[2, 2, 6, 2, 6, 6, 2, 6]],
            },
            {
                "id": 3,
                "image_id": 1,
                "category_id": 18,
                "iscrowd": 1,
                "area": 50,
                "segmentation": [[22, 12, 29, 12, 29, 19, 22, 19]],
            },
        ],
        "categories": [],
    }
    path = tmp_path / "instances_val2014.json"
    path.write_text(json.dumps(annotations))
    from wsssbed.datasets.coco import convert_coco

    assert convert_coco(path, tmp_path / "coco", "val", spec) == 1
    local = LocalDataset(spec, tmp_path / "coco", "val")
    gt = local.read_gt("COCO_val2014_000000000001")
    assert gt[8, 10] == 1  # person
    assert gt[4, 4] == 80  # toothbrush painted over the larger person
    assert gt[15, 25] == 255  # crowd region
    assert gt[15, 5] == 0
    labels = (tmp_path / "coco/cls_labels/val_cls.txt").read_text().split()
    assert labels == ["COCO_val2014_000000000001", "0", "79"]
