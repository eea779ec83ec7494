"""Convention mistakes researchers make, caught where they happen (issue 23, section 2).

Each was a real report: the right outcome is a message naming the file, the likely
cause and the fix (exit 2, nothing written), or a loud warning with the run stored.
Small fixtures are built here; cross-checks on the real VOC / ADE20K data in
../shared/data skip cleanly when it is absent.
"""

from __future__ import annotations

import io
import json
import shutil

import numpy as np
import pandas as pd
import pytest
from conftest import run_cli
from PIL import Image

import wsssbed
from wsssbed.datasets import get_dataset
from wsssbed.datasets.colours import decode_colours
from wsssbed.datasets.fingerprint import split_digest
from wsssbed.datasets.local import LocalDataset, read_id_list
from wsssbed.datasets.sanity import SYNTHETIC, check_split
from wsssbed.datasets.spec import load_spec
from wsssbed.errors import InputError, UnofficialSplitWarning
from wsssbed.results.store import read_table

VOC = get_dataset("voc2012")
ADE = get_dataset("ade20k")
PALETTE = np.asarray(VOC.palette(), np.uint8).reshape(256, 3)


def _save(path, array, mode="L", fmt="PNG", palette=False):
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(array, mode=mode)
    if palette:
        image = image.convert("P")
        image.putpalette(VOC.palette())
    image.save(path, format=fmt)


def _blobs(seed: int, classes: list[int], shape=(24, 32), void=True) -> np.ndarray:
    rng = np.random.default_rng(seed)
    mask = np.full(shape, classes[0], np.uint8)
    for c in classes[1:]:
        top, left = rng.integers(0, shape[0] // 2), rng.integers(0, shape[1] // 2)
        mask[top : top + shape[0] // 2, left : left + shape[1] // 2] = c
    if void:
        mask[0, :] = 255
    return mask


def _voc(root, masks: dict[str, np.ndarray], split="val", folder="SegmentationClassAug"):
    voc = root / "VOC2012"
    for image_id, mask in masks.items():
        _save(voc / folder / f"{image_id}.png", mask, palette=True)
    lists = voc / "ImageSets" / "Segmentation"
    lists.mkdir(parents=True, exist_ok=True)
    (lists / f"{split}.txt").write_text("".join(f"{i}\n" for i in masks))
    return root


def _preds(folder, masks: dict[str, np.ndarray]):
    for image_id, mask in masks.items():
        _save(folder / f"{image_id}.png", np.where(mask == 255, 0, mask).astype(np.uint8))
    return folder


def _text(result) -> str:
    return " ".join(result.output.split())


# ---- masks already reduced, raw ids under the wrong storage --------------------------


def _ade(root, raws: dict[str, np.ndarray]):
    for image_id, raw in raws.items():
        _save(root / "annotations" / "validation" / f"{image_id}.png", raw)
    return root


def _reduced(raw: np.ndarray) -> np.ndarray:
    """mmsegmentation's reduce_zero_label: 0 -> 255, c -> c - 1."""
    return np.where(raw == 0, 255, raw.astype(np.int16) - 1).astype(np.uint8)


def test_ade20k_masks_reduced_twice_are_refused_with_the_cause(tmp_path):
    """Reduced masks hold 255 where raw ADE20K masks never do: refused (it scored 0%
    with exit 0); the raw masks score."""
    raws = {f"ADE_val_{i:08d}": _blobs(i, [0, 5, 12, 150], void=False) for i in (1, 2)}
    raw_root = _ade(tmp_path / "raw", raws)
    reduced_root = _ade(tmp_path / "reduced", {i: _reduced(r) for i, r in raws.items()})
    preds = _preds(tmp_path / "pred", {i: _reduced(r) for i, r in raws.items()})
    out = tmp_path / "results"
    common = ["evaluate", "--pred", preds, "--dataset", "ade20k", "--split", "validation",
              "--no-boundary", "--out", out]  # fmt: skip
    refused = run_cli(*common, "--data-root", reduced_root)
    assert refused.exit_code == 2
    text = _text(refused)
    assert "ADE_val_00000001.png" in text and "look already reduced (0 -> 255, c -> c - 1)" in text
    assert "mapping is identity" in text and not out.exists()
    scored = run_cli(*common, "--data-root", raw_root, "--json")
    assert scored.exit_code == 0, scored.output
    assert read_table(out, "sweeps").miou.iloc[0] == 1.0  # the reduced ids are the classes


def test_every_reducing_spec_refuses_255_and_a_wrongly_named_storage_is_named(tmp_path):
    """context59 reduces the 60-class masks the same way; COCO-Stuff's two storages
    (raw stuffthingmaps `.png`, converted `_labelTrainIds.png`) point at each other."""
    c59 = get_dataset("context59")
    root = tmp_path / "ctx"
    folder = root / "SegmentationClassContext"
    _save(folder / "a.png", np.array([[255, 0, 3]], np.uint8))
    (root / "ImageSets" / "SegmentationContext").mkdir(parents=True)
    (root / "ImageSets/SegmentationContext/val.txt").write_text("a\n")
    with pytest.raises(InputError, match="look already reduced") as caught:
        LocalDataset(c59, root, "val").read_gt("a")
    assert caught.value.path == folder / "a.png"
    stuff = get_dataset("cocostuff")
    root = tmp_path / "stuff"
    _save(root / "annotations" / "val2017" / "b.png", np.array([[0, 11, 170]], np.uint8))
    (root / "splits").mkdir()
    (root / "splits" / "val2017.txt").write_text("b\n")
    (root / "splits" / "train2017.txt").write_text("c\n")
    with pytest.raises(InputError, match=r"rename them to end in _labelTrainIds\.png"):
        LocalDataset(stuff, root, "val2017").read_gt("b")  # 11 is an unused raw COCO id
    _save(root / "annotations" / "train2017" / "c_labelTrainIds.png", np.array([[181]], np.uint8))
    with pytest.raises(InputError, match=r"rename them to end in \.png"):
        LocalDataset(stuff, root, "train2017").read_gt("c")  # 181 is a raw stuff id


def test_raw_ade20k_never_holds_255_and_its_reduced_copy_is_refused(shared_data, tmp_path):
    source = shared_data / "ADEChallengeData2016-sample"
    for path in sorted(source.glob("annotations/*/*.png")):
        raw = np.array(Image.open(path))
        assert raw.max() <= 150 and not (raw == 255).any()
        split = path.parent.name
        copy = tmp_path / split / "annotations" / split / path.name
        _save(copy, _reduced(raw))
        with pytest.raises(InputError, match="look already reduced"):
            LocalDataset(ADE, tmp_path / split, split).read_gt(path.stem)
        gt = LocalDataset(ADE, source, split).read_gt(path.stem)
        assert np.array_equal(gt, _reduced(raw))


# ---- 255 used as a class label; the void ratio of every run ---------------------------

BINARY = """
name = "cells"
classes = ["background", "cell"]
has_background = true
[splits]
val = 2
[layout]
split_files = ["lists/{split}.txt"]
[[ground_truth]]
folder = "masks"
"""


def _binary(root, object_value: int, rows: int = 18):
    """Two 30x30 masks whose object (rows 0..`rows`-1, 60% by default) is stored as
    `object_value`, and a prediction labelling rows 0..11 as the object."""
    (root / "lists").mkdir(parents=True)
    (root / "lists" / "val.txt").write_text("a\nb\n")
    spec = root / "cells.toml"
    spec.write_text(BINARY)
    pred = np.zeros((30, 30), np.uint8)
    pred[:12] = 1
    for image_id in ("a", "b"):
        mask = np.zeros((30, 30), np.uint8)
        mask[:rows] = object_value
        _save(root / "masks" / f"{image_id}.png", mask)
        _save(root / "pred" / f"{image_id}.png", pred)
    return spec


def test_255_as_the_object_label_warns_loudly_after_the_results(tmp_path):
    """The object stored as 255 is void everywhere, so the two-thirds prediction scores
    100%: the run is stored with its void ratio, and a bold warning is the last thing
    printed. Stored as 1, the same prediction scores what it is worth."""
    spec = _binary(tmp_path, 255)
    out = tmp_path / "results"
    result = run_cli("evaluate", "--pred", tmp_path / "pred", "--dataset", spec, "--data-root",
                     tmp_path, "--split", "val", "--no-boundary", "--out", out)  # fmt: skip
    assert result.exit_code == 0, result.output
    text = _text(result)
    warning = text.index("warning: 60% of the ground-truth pixels are void (255)")
    assert warning > text.index("appended to")  # after the tables, where it is seen
    assert "class cell never occurs in it: is 255 used as a class label" in text
    assert "mask[mask == 255] = 1" in text and "(60.0% of mask pixels void)" in text
    run = read_table(out, "runs").iloc[0]
    assert run.gt_void_ratio == pytest.approx(0.6)
    assert read_table(out, "sweeps").miou.iloc[0] == 1.0  # the silent 100% it warns about

    fixed = tmp_path / "fixed"
    spec = _binary(fixed, 1)
    result = run_cli("evaluate", "--pred", fixed / "pred", "--dataset", spec, "--data-root",
                     fixed, "--split", "val", "--no-boundary", "--out", out, "--json")  # fmt: skip
    assert result.exit_code == 0 and "warning" not in result.output
    summary = json.loads(result.stdout)
    assert summary["gt_void_ratio"] == 0.0
    # background: 360 true of 360 + 180 predicted; cell: 360 of 540
    assert summary["best"]["miou"] == pytest.approx((360 / 540 + 360 / 540) / 2)


def test_a_small_object_stored_as_255_in_a_binary_dataset_warns_too(tmp_path):
    """Red-team finding 7: binary masks keep objects well under half the picture (here
    20%), so a majority-void rule never fired while the object class went unscored."""
    spec = _binary(tmp_path, 255, rows=6)
    out = tmp_path / "results"
    result = run_cli("evaluate", "--pred", tmp_path / "pred", "--dataset", spec, "--data-root",
                     tmp_path, "--split", "val", "--no-boundary", "--out", out)  # fmt: skip
    assert result.exit_code == 0, result.output
    text = _text(result)
    assert "warning: 20% of the ground-truth pixels are void (255)" in text
    assert "class cell never occurs in it: is 255 used as a class label" in text
    assert "the dataset has one foreground class" in text
    assert read_table(out, "runs").gt_void_ratio.iloc[0] == pytest.approx(0.2)


def test_void_borders_of_a_multi_class_dataset_do_not_warn(tmp_path):
    """VOC-like masks: a void border and classes absent from the run, no label list: no
    warning below the majority rule (VOC's own masks never warn)."""
    masks = {f"m{i}": _blobs(i, [0, 3, 7]) for i in range(2)}
    root = _voc(tmp_path / "voc", masks)
    result = run_cli("evaluate", "--pred", _preds(tmp_path / "pred", masks), "--dataset",
                     "voc2012", "--data-root", root, "--split", "val", "--no-boundary",
                     "--out", tmp_path / "results")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "void (255)" not in result.output and "used as a class label" not in result.output


def test_the_void_ratio_of_every_run_is_counted_from_the_masks(sample_root, tmp_path):
    run_cli("sweep", "--data-root", sample_root, "--split", "val", "--activation",
            sample_root / "activation/sample-cam/npz", "--activation-format", "npz",
            "--allow-extra-maps", "--no-boundary", "--out", tmp_path)  # fmt: skip
    local = LocalDataset(VOC, sample_root, "val")
    masks = [np.array(Image.open(local.gt_path(i))) for i in local.ids]
    void = sum(int((m == 255).sum()) for m in masks) / sum(m.size for m in masks)
    assert 0 < void < 0.1
    assert read_table(tmp_path, "runs").gt_void_ratio.iloc[0] == pytest.approx(void, abs=1e-12)


# ---- JPEG bytes under a .png name ----------------------------------------------------


def _jpeg_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array, mode="L").save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def test_jpeg_data_under_a_png_name_is_refused_for_ground_truth_and_label_maps(tmp_path):
    masks = {f"2007_00000{i}": _blobs(i, [0, 1, 15]) for i in (1, 2)}
    root = _voc(tmp_path / "data", masks)
    preds = _preds(tmp_path / "pred", masks)
    # why: JPEG turns perfect labels into other, valid class ids
    perfect = np.where(masks["2007_000001"] == 255, 0, masks["2007_000001"]).astype(np.uint8)
    damaged = np.array(Image.open(io.BytesIO(_jpeg_bytes(perfect))))
    assert (damaged != perfect).any()
    assert set(np.unique(damaged)) - {0, 1, 15}  # values no class map should hold

    jpeg_pred = preds / "2007_000002.png"
    jpeg_pred.write_bytes(_jpeg_bytes(np.array(Image.open(jpeg_pred))))
    out = tmp_path / "results"
    common = ["evaluate", "--pred", preds, "--dataset", "voc2012", "--data-root", root,
              "--split", "val", "--no-boundary", "--out", out]  # fmt: skip
    refused = run_cli(*common)
    assert refused.exit_code == 2 and not out.exists()
    assert f"{jpeg_pred}: the bytes are JPEG data under a .png name" in _text(refused)
    assert "save the label arrays again as PNG" in _text(refused)

    _preds(preds, masks)  # the label maps are PNG again; now the ground truth is JPEG
    gt = root / "VOC2012/SegmentationClassAug/2007_000001.png"
    gt.write_bytes(_jpeg_bytes(masks["2007_000001"]))
    refused = run_cli(*common)
    assert refused.exit_code == 2 and f"{gt}: the bytes are JPEG data" in _text(refused)


# ---- colour-coded masks --------------------------------------------------------------


def _colour(mask: np.ndarray) -> np.ndarray:
    return PALETTE[mask]


def test_colour_coded_masks_are_explained_and_decoded_exactly(tmp_path):
    masks = {f"2007_00000{i}": _blobs(i, [0, 1, 15]) for i in (1, 2)}
    root = _voc(tmp_path / "data", masks)
    preds = _preds(tmp_path / "pred", masks)
    coloured = tmp_path / "coloured"
    for image_id, mask in masks.items():
        _save(coloured / f"{image_id}.png", _colour(mask), mode="RGB")
    gt_folder = root / "VOC2012/SegmentationClassAug"
    rgb_gt = tmp_path / "rgb_gt"
    for image_id in masks:  # the ground truth folder colour-coded, as many repositories ship
        (gt_folder / f"{image_id}.png").write_bytes((coloured / f"{image_id}.png").read_bytes())
    common = ["evaluate", "--dataset", "voc2012", "--data-root", root, "--split", "val",
              "--no-boundary", "--out", tmp_path / "results"]  # fmt: skip
    refused = run_cli(*common, "--pred", preds)
    assert refused.exit_code == 2
    text = _text(refused)
    assert text.startswith(f"error: {gt_folder / '2007_000001.png'}: the ground truth is colour")
    assert "4 colours are all voc2012 palette colours (e.g. (192, 128, 128) = person)" in text
    assert f"wsssbed datasets decode-colours {gt_folder} --dataset voc2012 --out" in text
    assert "Converting it to grey gives wrong ids" in text

    decoded = run_cli("datasets", "decode-colours", gt_folder, "--dataset", "voc2012",
                      "--out", rgb_gt)  # fmt: skip
    assert decoded.exit_code == 0, decoded.output
    for image_id, mask in masks.items():
        back = Image.open(rgb_gt / f"{image_id}.png")
        assert back.mode == "P" and np.array_equal(np.array(back), mask)  # exact, void too
    for image_id in masks:
        (gt_folder / f"{image_id}.png").write_bytes((rgb_gt / f"{image_id}.png").read_bytes())
    refused = run_cli(*common, "--pred", coloured)  # label maps colour-coded
    assert refused.exit_code == 2 and "a label map is colour-coded" in _text(refused)
    assert run_cli(*common, "--pred", preds).exit_code == 0


def test_decoding_refuses_colours_outside_the_palette_and_leaves_nothing(tmp_path):
    source = tmp_path / "rgb"
    good = _colour(_blobs(1, [0, 1, 15]))
    _save(source / "a.png", good, mode="RGB")
    smudged = good.copy()
    smudged[3, 4] = (127, 1, 0)  # an anti-aliased edge
    _save(source / "b.png", smudged, mode="RGB")
    out = tmp_path / "ids"
    result = run_cli("datasets", "decode-colours", source, "--dataset", "voc2012", "--out", out)
    assert result.exit_code == 2
    text = _text(result)
    assert f"{source / 'b.png'}: 1 colours (0.1% of the pixels) are not colours of the " in text
    assert "(127, 1, 0)" in text
    assert not out.exists() and not list(tmp_path.glob(".ids.*"))  # all or nothing
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    again = run_cli("datasets", "decode-colours", source, "--dataset", "voc2012", "--out", out)
    assert again.exit_code == 2 and "exists and is not empty" in _text(again)
    assert (out / "keep.txt").read_text() == "mine"
    empty, link = tmp_path / "empty", tmp_path / "link"
    empty.mkdir()
    link.symlink_to(empty)  # failed after all the work with "declink: Not a directory"
    linked = run_cli("datasets", "decode-colours", source, "--dataset", "voc2012", "--out", link)
    assert linked.exit_code == 2 and "the output folder is a link" in _text(linked)
    assert link.is_symlink() and not any(empty.iterdir())
    jpeg = tmp_path / "jpeg"
    jpeg.mkdir()
    Image.fromarray(good).save(jpeg / "a.png", format="JPEG")
    result = run_cli("datasets", "decode-colours", jpeg, "--dataset", "voc2012", "--out",
                     tmp_path / "j")  # fmt: skip
    assert result.exit_code == 2 and "JPEG data under a .png name" in _text(result)


def test_rgb_masks_outside_the_palette_are_not_called_colour_coded(tmp_path):
    masks = {"2007_000001": _blobs(1, [0, 1])}
    root = _voc(tmp_path / "data", masks)
    gt = root / "VOC2012/SegmentationClassAug/2007_000001.png"
    _save(gt, np.dstack([masks["2007_000001"]] * 3), mode="RGB")  # grey as RGB
    with pytest.raises(InputError, match="outside the voc2012 palette") as caught:
        LocalDataset(VOC, root, "val").read_gt("2007_000001")
    assert "colour-coded" not in caught.value.problem


def test_published_colour_coded_voc_masks_decode_or_are_refused_by_colour(shared_data):
    """PuzzleCAM's 22 published ground-truth figures: the 6 kept as VOC palette PNGs,
    drawn in RGB, decode to the very masks of SegmentationClassAug (void included); the
    16 re-rendered ones draw void as black under a white strip, so they are refused,
    naming white, instead of decoding void into background."""
    decoded = refused = 0
    for path in sorted((shared_data / "voc2012-figures").glob("*_gt.png")):
        image_id = path.name.removesuffix("_gt.png")
        official = np.array(
            Image.open(shared_data / f"VOC2012/SegmentationClassAug/{image_id}.png")
        )
        picture = Image.open(path)
        rgb = np.array(picture.convert("RGB"))
        if picture.mode == "P":
            assert np.array_equal(decode_colours(rgb, VOC, path), official), image_id
            decoded += 1
        else:
            with pytest.raises(InputError, match=r"\(255, 255, 255\)"):
                decode_colours(rgb, VOC, path)
            black = (rgb == 0).all(-1)
            assert (official[black] != 0).any()  # void drawn as background's black
            refused += 1
    assert (decoded, refused) == (6, 16)


# ---- VOC's SegmentationClass alone for train_aug ---------------------------------------


def test_segmentation_class_alone_for_train_aug_points_to_the_aug_masks(tmp_path):
    """train_aug lists SBD images VOC's SegmentationClass does not have: refused before
    any work, pointing to SegmentationClassAug and `datasets prepare ... benchmark.tgz`."""
    voc_ids = ["2007_000032", "2007_000039"]
    masks = {i: _blobs(n, [0, 1]) for n, i in enumerate(voc_ids)}
    root = _voc(tmp_path / "data", masks, split="train_aug", folder="SegmentationClass")
    lists = root / "VOC2012/ImageSets/Segmentation/train_aug.txt"
    lists.write_text("2007_000032\n2008_000002\n2007_000039\n2008_000003\n")
    preds = _preds(tmp_path / "pred", {**masks, "2008_000002": masks["2007_000032"],
                                       "2008_000003": masks["2007_000032"]})  # fmt: skip
    out = tmp_path / "results"
    result = run_cli("evaluate", "--pred", preds, "--dataset", "voc2012", "--data-root", root,
                     "--split", "train_aug", "--no-boundary", "--out", out)  # fmt: skip
    assert result.exit_code == 2 and not out.exists()
    text = _text(result)
    assert "SegmentationClass: 2 of the 4 images of train_aug have no mask here" in text
    assert "(first: 2008_000002, 2008_000003)" in text
    assert "SegmentationClassAug (VOC's masks plus SBD's, needed for train_aug) is not here" in text
    assert "wsssbed datasets prepare voc2012 --from VOCtrainval_11-May-2012.tar --from " \
           "benchmark.tgz" in text  # fmt: skip
    lists.write_text("2008_000002\n2007_000032\n")  # an SBD id first: no folder holds it
    with pytest.raises(InputError, match=r"SegmentationClassAug .* is not here"):
        LocalDataset(VOC, root, "train_aug").gt_source  # noqa: B018
    local = LocalDataset(VOC, root, "train_aug")
    local.__dict__["gt_source"] = VOC.ground_truth[1]  # as if the first id were VOC's
    with pytest.raises(InputError, match="mask not found; SegmentationClassAug"):
        local.read_gt("2008_000002")


# ---- split lists under official names ----------------------------------------------------

LISTED = """
name = "listed"
classes = ["background", "thing"]
has_background = true
[splits]
train = 3
val = 2
[split_digests]
train = "{train}"
val = "{val}"
[layout]
split_files = ["lists/{{split}}.txt"]
[[ground_truth]]
folder = "masks"
"""


def _listed(root, train: list[str]):
    """A dataset with official lists a, b, c (train) and d, e (val); `train` is what the
    local copy's train.txt actually lists."""
    spec = root / "listed.toml"
    spec.write_text(LISTED.format(train=split_digest("abc"), val=split_digest("de")))
    (root / "lists").mkdir(parents=True)
    (root / "lists" / "train.txt").write_text("".join(f"{i}\n" for i in train))
    (root / "lists" / "val.txt").write_text("d\ne\n")
    for image_id in "abcde":
        mask = _blobs(ord(image_id), [0, 1], void=False)
        _save(root / "masks" / f"{image_id}.png", mask)
        _save(root / "pred" / f"{image_id}.png", mask)
    return spec


def test_a_split_list_that_is_not_the_official_one_is_warned_and_marked(tmp_path):
    out = tmp_path / "results"
    spec = _listed(tmp_path, ["a", "b"])
    common = ["evaluate", "--pred", tmp_path / "pred", "--dataset", spec, "--data-root",
              tmp_path, "--no-boundary", "--out", out, "--allow-extra-maps"]  # fmt: skip
    result = run_cli(*common, "--split", "train")
    assert result.exit_code == 0
    text = _text(result)
    assert (
        f"warning: {tmp_path / 'lists/train.txt'} lists 2 images, not the official listed "
        "train (3 images): a subset or another list saved under the name 'train'"
    ) in text
    assert text.index("warning:") > text.index("appended to")
    assert run_cli(*common, "--split", "val").exit_code == 0  # the official list
    runs = read_table(out, "runs").set_index("split")
    assert runs.split_official.to_dict() == {"train": False, "val": True}
    shown = run_cli("results", "show", "--results", out)
    assert "listed/train (not the official list)" in _text(shown)
    assert "listed/val " in _text(shown)
    site = tmp_path / "site"
    assert run_cli("leaderboard", "--results", out, "--out", site).exit_code == 0
    index = (site / "index.html").read_text()
    assert index.count('title="its ids are not the official train list') == 1
    assert "their numbers are not comparable with the official split" in index
    assert "best on train (not the official list)" not in index  # never a transfer source

    checked = run_cli("datasets", "check", "--dataset", spec, "--data-root", tmp_path,
                      "--split", "train")  # fmt: skip
    assert checked.exit_code == 0 and "note: " in _text(checked)
    assert "lists 2 images, not the official listed train" in _text(checked)
    (tmp_path / "lists" / "train.txt").write_text("d\ne\n")  # val saved as train.txt
    result = run_cli(*common, "--split", "train")
    assert "these are the official val ids: use --split val" in _text(result)


def test_the_shipped_fingerprints_are_the_official_lists(shared_data):
    """The digests in voc2012.toml are those of VOC's own lists; the 10,582 train_aug ids
    saved as train.txt are recognised as such."""
    lists = shared_data / "VOC2012/ImageSets/Segmentation"
    for split, count in VOC.splits.items():
        ids = read_id_list(lists / f"{split}.txt")
        assert len(ids) == count and split_digest(ids) == VOC.split_digests[split]
        assert check_split(VOC, split, ids, None).official is True
    aug = read_id_list(lists / "train_aug.txt")
    check = check_split(VOC, "train", aug, lists / "train.txt")
    assert check.official is False
    assert "lists 10,582 images, not the official voc2012 train (1,464 images)" in check.message
    assert "these are the official train_aug ids" in check.message
    five = check_split(VOC, "train", read_id_list(lists / "train.txt")[:5], None)
    assert five.official is False and "5 images" in five.message


def test_ade20k_fingerprints_are_the_scene_parsing_file_names():
    """ADE20K has no list files: its splits are ADE_train_00000001..00020210 and
    ADE_val_00000001..00002000."""
    for split, stem in (("training", "ADE_train"), ("validation", "ADE_val")):
        ids = [f"{stem}_{i:08d}" for i in range(1, ADE.splits[split] + 1)]
        assert check_split(ADE, split, ids, None).official is True
        assert check_split(ADE, split, ids[:-1], None).official is False


def test_the_synthetic_sample_records_no_verdict_and_a_copy_of_it_does(sample_root, tmp_path,
                                                                       recwarn):  # fmt: skip
    """The embedded sample is synthetic (its root holds `SYNTHETIC`): its lists are its
    own, so its runs record no verdict on VOC's official lists and warn nothing. The same
    files without the marker are judged like any data root: not the official lists."""
    result = wsssbed.sweep(boundary=False, thresholds="0.1,0.2")
    assert result.run.split_official is None
    assert not [w for w in recwarn if "official" in str(w.message)]
    copy = tmp_path / "copy"
    shutil.copytree(sample_root, copy)
    (copy / SYNTHETIC).unlink()
    with pytest.warns(UnofficialSplitWarning, match="not the official voc2012 train"):
        judged = wsssbed.sweep(data_root=copy, activation=copy / "activation/sample-cam/npz",
                               activation_format="npz", allow_extra_maps=True, boundary=False,
                               thresholds="0.1,0.2")  # fmt: skip
    assert judged.run.split_official == False  # noqa: E712


@pytest.mark.parametrize(
    "digests,problem",
    [('train = "sha256:abc"', "expected `sha256:` and 64 hex digits"),
     (f'test = "{split_digest("a")}"', "'test' is not one of the splits")],
)  # fmt: skip
def test_bad_split_digests_in_a_spec_are_refused(tmp_path, digests, problem):
    path = tmp_path / "s.toml"
    text = BINARY.replace(
        "[splits]\nval = 2", f"[splits]\nval = 2\ntrain = 1\n[split_digests]\n{digests}"
    )
    path.write_text(text)
    with pytest.raises(InputError, match=problem.replace("(", r"\(").replace(")", r"\)")):
        load_spec(path)


# ---- score thresholds on the wrong scale -----------------------------------------------


@pytest.mark.parametrize(
    "options,problem",
    [(["--generator", "bg-threshold", "--threshold", "25"],
      "--threshold 25 is outside [0, 1], the range of scores, so no score can reach it"
      " (every pixel would get the same label); a percentage? write `0.25`"),
     (["--generator", "saliency-rule", "--sal-threshold", "20"],
      "--sal-threshold 20 is outside [0, 1]"),
     (["--generator", "saliency-rule", "--atm-threshold", "128"],
      "--atm-threshold 128 is outside [0, 1], the range of scores, so no score can reach it "
      "(every pixel would get the same label); an 8-bit value? write `0.502`"),
     (["--generator", "bg-threshold", "--threshold", "-0.5"],
      "--threshold -0.5 is outside [0, 1]"),
     (["--generator", "power-bg", "--alpha", "nan"],  # wrote all-background labels
      "--alpha nan: the power-bg exponent must be a finite number"),
     (["--generator", "power-bg", "--alpha", "inf"],  # wrote all-foreground labels
      "--alpha inf: the power-bg exponent must be a finite number")],
)  # fmt: skip
def test_pseudo_label_thresholds_no_score_reaches_are_refused(sample_root, tmp_path, options,
                                                              problem):  # fmt: skip
    out = tmp_path / "labels"
    result = run_cli("pseudo-labels", "--data-root", sample_root, "--split", "train",
                     "--activation", sample_root / "activation/sample-cam/npz",
                     "--activation-format", "npz", "--saliency",
                     sample_root / "saliency/sample-sal", *options, "--out", out)  # fmt: skip
    assert result.exit_code == 2
    assert problem in _text(result)
    assert not out.exists()


def test_the_api_and_the_metric_refuse_grids_on_the_wrong_scale(sample_root):
    from wsssbed.metrics import ThresholdSweep
    from wsssbed.models.sam_masks import MaskSettings
    from wsssbed.report.study import parse_point

    with pytest.raises(InputError, match="`thresholds` 25 is outside"):
        wsssbed.sweep(thresholds=[25], boundary=False)
    with pytest.raises(InputError, match="`thresholds` has 59 of its 61 values outside"):
        wsssbed.sweep(thresholds="0:60:1", boundary=False)
    with pytest.raises(InputError, match="`sal_thresholds` has 3 of its 3 values"):
        ThresholdSweep(generator="saliency-rule", sal_thresholds="20,30,40")
    with pytest.raises(InputError, match="--pred-iou-thresh 88 is above 1"):
        MaskSettings(pred_iou_thresh=88)
    with pytest.warns(UserWarning, match="`thresholds` has 1 of its 3 values outside"):
        ThresholdSweep(thresholds="0.1,0.2,1.5")  # one stray point: a warning
    with pytest.raises(InputError, match="`recommended` 25 is outside"):
        parse_point("threshold=25")  # wsssbed sensitivity --recommended
    assert parse_point("threshold=0.25,alpha=8") == {"threshold": 0.25, "alpha": 8.0}


def test_the_results_json_and_tables_carry_the_new_columns(sample_root, tmp_path):
    result = run_cli("sweep", "--data-root", sample_root, "--split", "val", "--activation",
                     sample_root / "activation/sample-cam/npz", "--activation-format", "npz",
                     "--allow-extra-maps", "--no-boundary", "--out", tmp_path,
                     "--json")  # fmt: skip
    summary = json.loads(result.stdout)
    assert summary["split_official"] is None  # the synthetic sample's lists are its own
    assert 0 < summary["gt_void_ratio"] < 0.1
    assert "miou_unlabelled_bg" in summary["best"]
    sweeps = read_table(tmp_path, "sweeps")
    assert (sweeps.miou_unlabelled_bg == sweeps.miou).all()  # bg-threshold never leaves 255
    assert isinstance(read_table(tmp_path, "runs"), pd.DataFrame)
