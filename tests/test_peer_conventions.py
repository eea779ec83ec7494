"""Each stored mIoU column reproduces named peers' evaluation scripts (issue 23, section 3).

The peers' formulas are written out plainly below from their published files (read at
the commits named), and compared with the columns wsssbed stores, on small VOC fixtures
where the conventions disagree: a class predicted but absent from the ground truth
(`miou` vs `miou_gt_present`), classes nobody predicts or annotates (`miou` vs
`miou_zero`), and unlabelled (255) predictions (`miou` vs `miou_unlabelled_bg`).

Sources (repository @ commit, file, lines):
- IRN (jiwoon-ahn/irn @ a2ece00): step/eval_cam.py 13-29 (pad the threshold as channel
  0, argmax, chainercv confusion, `np.nanmean`); step/eval_sem_seg.py 14-31 (line 15:
  predicted 255 becomes 0; confusion cut to [:21, :21]).
- chainercv (chainer/chainercv @ 7159616): evaluations/eval_semantic_segmentation.py
  28-62 (`calc_semantic_segmentation_confusion`, pixels with gt < 0 dropped);
  datasets/voc/voc_semantic_segmentation_dataset.py 65 (void 255 read as -1).
- CLIP-ES (linyq2117/CLIP-ES @ HEAD of its default branch): eval_cam.py 15-43
  (`_fast_hist`, `scores`: line 31 `valid = hist.sum(axis=1) > 0`, line 32 nanmean over
  valid), 58-65 (threshold padded as channel 0, keys + 1).
- WSSS-BED (clovaai/WSSS-BED): seg_networks/DeepLab-V2-Pytorch/libs/utils/metric.py 7-25,
  the same `_fast_hist` / `valid` formula.
- SEAM (YudeWang/SEAM): evaluation.py 28-33 (npy: tensor[key + 1] = cam, tensor[0] =
  threshold, argmax), 37-49 (P, T, TP over gt < 255), 63 and 72 (TP / (T + P - TP +
  1e-10), mean over all 21 classes).
- PuzzleCAM (OFRIN/PuzzleCAM): evaluate.py 46-54 (`hr_cam` padded with the threshold,
  `keys` with background first), 61-73 and 97, 111 (as SEAM); tools/ai/evaluate_utils.py
  96-103, 113 and 123 (`Calculator_For_mIoU`, the same counts and mean).
- mmsegmentation 1.2.2 (the PyPI wheel): mmseg/evaluation/metrics/iou_metric.py 185-199
  (`intersect_and_union`: gt != ignore_index, `torch.histc` over 0..num_classes-1, so a
  predicted 255 is a miss), 136 (`np.nanmean`).
- torchmetrics: `MulticlassJaccardIndex(average="macro", ignore_index=255)` called
  directly (classes with zero union get weight 0).

Neither CLIP-ES / WSSS-BED's `_fast_hist` nor torchmetrics accept predicted 255 (an index
past num_classes ** 2 is miscounted or fails), so they are checked on activation maps,
whose argmax never gives 255; the 255 conventions are checked on label maps.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import wsssbed
from wsssbed.datasets import get_dataset

N = 21  # the peers' scripts are written for VOC's 21 classes
VOID = 255
SHAPE = (12, 16)
THRESHOLDS = [0.15, 0.3, 0.45]


def _voc_root(tmp_path, masks: dict[str, np.ndarray], labels: dict[str, list[int]] | None = None):
    """A VOC-layout root with these masks as split `val` (and an image-level label list)."""
    voc = tmp_path / "data" / "VOC2012"
    (voc / "SegmentationClassAug").mkdir(parents=True)
    (voc / "ImageSets" / "Segmentation").mkdir(parents=True)
    palette = get_dataset("voc2012").palette()
    for image_id, mask in masks.items():
        image = Image.fromarray(mask, mode="L").convert("P")
        image.putpalette(palette)
        image.save(voc / "SegmentationClassAug" / f"{image_id}.png")
    (voc / "ImageSets/Segmentation/val.txt").write_text("".join(f"{i}\n" for i in masks))
    label_file = None
    if labels is not None:
        label_file = tmp_path / "labels.txt"
        label_file.write_text(
            "".join(f"{i} {' '.join(str(c - 1) for c in cs)}\n" for i, cs in labels.items())
        )
    return tmp_path / "data", label_file


def _fixture(rng: np.random.Generator):
    """Three images of blobs of classes 1, 2 and 15 on background, with void borders."""
    masks = {}
    for image_id, cls in (("2007_000001", 1), ("2007_000002", 2), ("2007_000003", 15)):
        mask = np.zeros(SHAPE, np.uint8)
        top, left = rng.integers(1, 5, size=2)
        mask[top : top + 6, left : left + 8] = cls
        mask[0, :] = VOID
        mask[:, -1] = VOID
        masks[image_id] = mask
    return masks


# ---- the peers' formulas, written out ------------------------------------------------


def chainercv_confusion(preds, gts):
    """chainercv's calc_semantic_segmentation_confusion on VOC labels read with void = -1."""
    n_class = 0
    confusion = np.zeros((0, 0), np.int64)
    for pred, gt in zip(preds, gts):
        gt = gt.astype(np.int64)
        gt[gt == VOID] = -1
        pred, gt = pred.astype(np.int64).ravel(), gt.ravel()
        top = max(pred.max(), gt.max())
        if top >= n_class:
            grown = np.zeros((top + 1, top + 1), np.int64)
            grown[:n_class, :n_class] = confusion
            n_class, confusion = top + 1, grown
        keep = gt >= 0
        confusion += np.bincount(n_class * gt[keep] + pred[keep], minlength=n_class**2).reshape(
            n_class, n_class
        )
    return confusion


def irn_eval_cam(preds, gts):
    confusion = chainercv_confusion(preds, gts)
    gtj, resj, both = confusion.sum(1), confusion.sum(0), np.diag(confusion)
    with np.errstate(invalid="ignore"):
        return np.nanmean(both / (gtj + resj - both))


def irn_eval_sem_seg(preds, gts):
    filled = []
    for pred in preds:
        pred = pred.copy()
        pred[pred == VOID] = 0
        filled.append(pred)
    confusion = chainercv_confusion(filled, gts)[:N, :N]
    gtj, resj, both = confusion.sum(1), confusion.sum(0), np.diag(confusion)
    with np.errstate(invalid="ignore"):
        return np.nanmean(both / (gtj + resj - both))


def fast_hist_scores(preds, gts, n_class=N):
    """CLIP-ES eval_cam.py `scores` = WSSS-BED metric.py `scores`: the mean IoU."""
    hist = np.zeros((n_class, n_class))
    for gt, pred in zip(gts, preds):
        lt, lp = gt.ravel(), pred.ravel()
        mask = (lt >= 0) & (lt < n_class)
        hist += np.bincount(
            n_class * lt[mask].astype(int) + lp[mask], minlength=n_class**2
        ).reshape(n_class, n_class)
    with np.errstate(invalid="ignore", divide="ignore"):
        iu = np.diag(hist) / (hist.sum(axis=1) + hist.sum(axis=0) - np.diag(hist))
    valid = hist.sum(axis=1) > 0
    return np.nanmean(iu[valid])


def seam_counts(preds, gts):
    """SEAM evaluation.py / PuzzleCAM evaluate.py and Calculator_For_mIoU: P, T, TP."""
    p, t, tp = np.zeros(N), np.zeros(N), np.zeros(N)
    for pred, gt in zip(preds, gts):
        cal = gt < VOID
        mask = (pred == gt) * cal
        for i in range(N):
            p[i] += np.sum((pred == i) * cal)
            t[i] += np.sum((gt == i) * cal)
            tp[i] += np.sum((gt == i) * mask)
    return p, t, tp


def seam_miou(preds, gts):
    p, t, tp = seam_counts(preds, gts)
    return np.mean(tp / (t + p - tp + 1e-10))


def puzzlecam_calculator_miou(preds, gts):
    p, t, tp = seam_counts(preds, gts)
    return np.mean([tp[i] / (t[i] + p[i] - tp[i] + 1e-10) * 100 for i in range(N)]) / 100


def mmseg_miou(preds, gts):
    inter, union = torch.zeros(N), torch.zeros(N)
    for pred, gt in zip(preds, gts):
        pred, gt = torch.from_numpy(pred.astype(np.int64)), torch.from_numpy(gt.astype(np.int64))
        keep = gt != VOID
        pred, gt = pred[keep], gt[keep]
        hit = pred[pred == gt]
        area_i = torch.histc(hit.float(), bins=N, min=0, max=N - 1)
        area_p = torch.histc(pred.float(), bins=N, min=0, max=N - 1)
        area_g = torch.histc(gt.float(), bins=N, min=0, max=N - 1)
        inter += area_i
        union += area_p + area_g - area_i
    return float(np.nanmean((inter / union).numpy()))


def torchmetrics_miou(preds, gts):
    from torchmetrics.classification import MulticlassJaccardIndex

    metric = MulticlassJaccardIndex(num_classes=N, average="macro", ignore_index=VOID)
    metric.update(
        torch.from_numpy(np.stack(preds).astype(np.int64)),
        torch.from_numpy(np.stack(gts).astype(np.int64)),
    )
    return float(metric.compute())


# ---- label maps the peers build from activation maps ---------------------------------


def irn_labels(keys0, cams, threshold):
    """IRN / CLIP-ES: pad the threshold in front, argmax, through `keys + 1` (0 first)."""
    padded = np.pad(cams, ((1, 0), (0, 0), (0, 0)), mode="constant", constant_values=threshold)
    keys = np.pad(keys0 + 1, (1, 0), mode="constant")
    return keys[np.argmax(padded, axis=0)].astype(np.uint8)


def seam_labels(keys0, cams, threshold):
    """SEAM (npy): tensor[key + 1] = cam, tensor[0] = threshold, argmax."""
    tensor = np.zeros((N, *SHAPE), np.float32)
    for key, cam in zip(keys0, cams):
        tensor[key + 1] = cam
    tensor[0] = threshold
    return np.argmax(tensor, axis=0).astype(np.uint8)


def puzzlecam_labels(keys0, cams, threshold):
    """PuzzleCAM (evaluate.py): `hr_cam` padded with the threshold, `keys` = [0, fg + 1]."""
    padded = np.pad(cams, ((1, 0), (0, 0), (0, 0)), mode="constant", constant_values=threshold)
    keys = np.concatenate([[0], keys0 + 1])
    return keys[np.argmax(padded, axis=0)].astype(np.uint8)


@pytest.fixture
def cam_case(tmp_path):
    """Maps of each image's classes, plus boat (class 4) for the first image, whose label
    list names it though its mask has none: boat is predicted but absent from the ground
    truth, and 17 classes are in neither."""
    rng = np.random.default_rng(23)
    masks = _fixture(rng)
    labels = {"2007_000001": [1, 4], "2007_000002": [2], "2007_000003": [15]}
    root, label_file = _voc_root(tmp_path, masks, labels)
    folder = tmp_path / "cams"
    folder.mkdir()
    maps = {}
    for image_id, classes in labels.items():
        keys0 = np.array([c - 1 for c in classes], np.int64)
        cams = rng.random((len(classes), *SHAPE)).astype(np.float32)
        for plane, c in zip(cams, classes):
            plane[masks[image_id] == c] += 0.5  # the object scores higher, not perfectly
        cams = np.clip(cams, 0, 1).astype(np.float32)
        np.savez(folder / f"{image_id}.npz", keys=keys0, cams=cams)
        maps[image_id] = (keys0, cams)
    result = wsssbed.sweep(
        dataset="voc2012", data_root=root, split="val", activation=folder,
        activation_format="npz", thresholds=THRESHOLDS, boundary=False, labels=label_file,
        workers=0, device="cpu",
    )  # fmt: skip
    return masks, maps, result.points.set_index("threshold")


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_activation_map_columns_reproduce_each_peer_script(cam_case):
    masks, maps, points = cam_case
    gts = list(masks.values())
    differ = 0
    for t in THRESHOLDS:
        row = points.loc[t]
        irn = [irn_labels(*maps[i], t) for i in masks]
        seam = [seam_labels(*maps[i], t) for i in masks]
        puzzle = [puzzlecam_labels(*maps[i], t) for i in masks]
        assert all(np.array_equal(a, b) for a, b in zip(irn, seam))  # the same labels
        assert all(np.array_equal(a, b) for a, b in zip(irn, puzzle))
        # miou: IRN eval_cam (chainercv), mmsegmentation IoUMetric, torchmetrics
        assert row.miou == pytest.approx(irn_eval_cam(irn, gts), abs=1e-12)
        assert row.miou == pytest.approx(mmseg_miou(irn, gts), abs=1e-6)  # float32 histc
        assert row.miou == pytest.approx(torchmetrics_miou(irn, gts), abs=1e-6)
        # miou_gt_present: CLIP-ES eval_cam.py, WSSS-BED metric.py
        assert row.miou_gt_present == pytest.approx(fast_hist_scores(irn, gts), abs=1e-12)
        # miou_zero: SEAM evaluation.py, PuzzleCAM evaluate.py and its calculator
        assert row.miou_zero == pytest.approx(seam_miou(seam, gts), abs=1e-9)
        assert row.miou_zero == pytest.approx(seam_miou(puzzle, gts), abs=1e-9)
        assert row.miou_zero == pytest.approx(puzzlecam_calculator_miou(puzzle, gts), abs=1e-9)
        differ += row.miou != pytest.approx(row.miou_gt_present) and row.miou != pytest.approx(
            row.miou_zero
        )
    assert differ == len(THRESHOLDS)  # the fixture tells the conventions apart everywhere


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_label_map_columns_reproduce_the_255_conventions(tmp_path):
    """Label maps with unlabelled (255) pixels: IRN's eval_sem_seg.py counts them as
    background (`miou_unlabelled_bg`); mmsegmentation counts them as misses (`miou`);
    SEAM and PuzzleCAM count them as misses and average over all classes (`miou_zero`)."""
    rng = np.random.default_rng(5)
    masks = _fixture(rng)
    root, _ = _voc_root(tmp_path, masks)
    pred_folder = tmp_path / "pred"
    pred_folder.mkdir()
    preds = []
    for image_id, gt in masks.items():
        pred = np.where(gt == VOID, 0, gt).astype(np.uint8)
        noise = rng.random(SHAPE)
        pred[noise < 0.2] = VOID  # unlabelled, on background and on objects
        pred[(noise > 0.9) & (gt == 0)] = 7  # a class absent from every mask
        Image.fromarray(pred, mode="L").save(pred_folder / f"{image_id}.png")
        preds.append(pred)
    row = wsssbed.evaluate(
        pred_folder, "voc2012", root, "val", boundary=False, workers=0, device="cpu"
    ).points.iloc[0]
    gts = list(masks.values())
    assert row.miou_unlabelled_bg == pytest.approx(irn_eval_sem_seg(preds, gts), abs=1e-12)
    assert row.miou == pytest.approx(mmseg_miou(preds, gts), abs=1e-6)
    assert row.miou_zero == pytest.approx(seam_miou(preds, gts), abs=1e-9)
    assert row.miou_zero == pytest.approx(puzzlecam_calculator_miou(preds, gts), abs=1e-9)
    values = [row.miou, row.miou_zero, row.miou_gt_present, row.miou_unlabelled_bg]
    assert len({round(v, 6) for v in values}) == 4  # four different numbers here


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_unlabelled_as_background_is_undefined_without_a_background_class(tmp_path):
    """ADE20K-like datasets have no background to fill with: the column is empty, not a
    number IRN's script (written for VOC) never defined."""
    ade = tmp_path / "ade" / "annotations" / "validation"
    ade.mkdir(parents=True)
    raw = np.array([[1, 2], [3, 0]], np.uint8)  # classes 0, 1, 2 and one unlabelled pixel
    Image.fromarray(raw, mode="L").save(ade / "ADE_val_00000001.png")
    pred = tmp_path / "pred"
    pred.mkdir()
    Image.fromarray(np.array([[0, 255], [2, 5]], np.uint8), mode="L").save(
        pred / "ADE_val_00000001.png"
    )
    row = wsssbed.evaluate(pred, "ade20k", tmp_path / "ade", "validation", boundary=False,
                           workers=0, device="cpu").points.iloc[0]  # fmt: skip
    assert np.isnan(row.miou_unlabelled_bg)
    assert row.miou == pytest.approx((1 + 0 + 1) / 3)  # 5 is predicted on void only
