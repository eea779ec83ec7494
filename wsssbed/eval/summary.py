"""Segmentation metrics from per-class counts, under every named convention.

Conventions (docs/architecture.md, "Conventions"):
- `miou` (nanmean): mean IoU over classes with a non-zero union (IRN/chainercv, mmseg,
  torchmetrics >= 1.0).
- `miou_zero`: a class with zero union counts as IoU 0 (SEAM, PuzzleCAM).
- `miou_gt_present`: mean over classes present in the ground truth (CLIP-ES, ToCo).
- `miou_labeled`: only pixels the prediction labels (unlabelled pixels are not misses).
- `miou_unlabelled_bg`: unlabelled predictions (255) count as background, then nanmean
  (IRN's `step/eval_sem_seg.py`); NaN for datasets without a background class.
- `ignore_ratio`: share of labelled ground-truth pixels the prediction leaves unlabelled.
- `fp_ratio`, `fn_ratio`: mean over classes of FP / union and FN / union (PuzzleCAM, DHR).
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from wsssbed.eval.confusion import ClassCounts

SUMMARY_METRICS = (
    "miou",
    "miou_zero",
    "miou_gt_present",
    "miou_labeled",
    "miou_unlabelled_bg",
    "ignore_ratio",
    "pixel_accuracy",
    "mean_precision",
    "mean_recall",
    "fp_ratio",
    "fn_ratio",
)
BOUNDARY_METRICS = ("bf_f", "bf_p", "bf_r")
#: The mIoU conventions among them (columns of `sweeps.parquet`), for tables that ask
#: which one to report.
MIOU_CONVENTIONS = tuple(m for m in SUMMARY_METRICS if m == "miou" or m.startswith("miou_"))

#: Each reported metric in one sentence, with the convention it follows (shown by the
#: leaderboard's glossary page and by `wsssbed sweep --help`).
GLOSSARY = {
    "miou": "Mean IoU over classes with a non-zero union (nanmean): the headline number. "
    "Reproduces IRN's step/eval_cam.py (chainercv's confusion), mmsegmentation's "
    "IoUMetric and torchmetrics' MulticlassJaccardIndex (>= 1.0, ignore_index=255).",
    "miou_zero": "Mean IoU over all classes, a class with zero union counting as 0. "
    "Reproduces SEAM's evaluation.py and PuzzleCAM's evaluate.py / Calculator_For_mIoU "
    "(their 1e-10 guard moves it by less than 1e-9); PuzzleCAM's evaluate.py as published "
    "scores only every 8th image of the list, so its printed numbers differ.",
    "miou_gt_present": "Mean IoU over the classes present in the ground truth. Reproduces "
    "CLIP-ES's eval_cam.py and WSSS-BED's metric.py (their valid-class mask), as ToCo "
    "reports.",
    "miou_labeled": "Mean IoU counting only pixels the prediction labels: unlabelled (255) "
    "pixels are not misses.",
    "miou_unlabelled_bg": "Mean IoU (nanmean) after unlabelled (255) predictions are "
    "counted as background. Reproduces IRN's step/eval_sem_seg.py, which sets predicted "
    "255 to 0; undefined (empty) for datasets without a background class.",
    "ignore_ratio": "Share of labelled ground-truth pixels that the prediction leaves "
    "unlabelled (255).",
    "pixel_accuracy": "Share of labelled ground-truth pixels predicted as their class.",
    "mean_precision": "Mean over classes of TP / (TP + FP).",
    "mean_recall": "Mean over classes of TP / (TP + FN), unlabelled pixels counting as FN.",
    "fp_ratio": "Mean over classes of FP / union: how much a class spills over (PuzzleCAM, DHR).",
    "fn_ratio": "Mean over classes of FN / union: how much of a class is missed (PuzzleCAM, DHR).",
    "bf_f": "Boundary F-score: per image, the mean over classes on either side of F1 "
    "between boundary pixels matched within the tolerance (0.75% of the diagonal), then "
    "the mean over images.",
    "bf_p": "Boundary precision: the share of predicted boundary pixels with a "
    "ground-truth boundary within the tolerance.",
    "bf_r": "Boundary recall: the share of ground-truth boundary pixels with a predicted "
    "boundary within the tolerance.",
}


def _divide(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """Elementwise ratio as float64, NaN where the denominator is 0."""
    numerator = numerator.astype(np.float64)
    denominator = denominator.astype(np.float64)
    out = np.full(np.broadcast(numerator, denominator).shape, np.nan)
    np.divide(numerator, denominator, out=out, where=denominator > 0)
    return out


def _nanmean(values: np.ndarray, axis: int = -1) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(values, axis=axis)


def per_class_iou(counts: ClassCounts) -> np.ndarray:
    """(G, K) IoU, NaN where a class has zero union."""
    union = counts.gt[None, :] + counts.pred - counts.tp
    return _divide(counts.tp, union)


def _unlabelled_as_background(counts: ClassCounts) -> np.ndarray:
    """(G,) nanmean IoU once every unlabelled prediction is background (IRN's
    `step/eval_sem_seg.py`): background gains those pixels as predictions, and its own
    unlabelled pixels as hits; NaN at every point without a background class."""
    points = counts.tp.shape[0]
    b = counts.background
    if b is None:
        return np.full(points, np.nan)
    tp = counts.tp.copy()
    pred = counts.pred.copy()
    tp[:, b] += counts.unlabelled[:, b]
    pred[:, b] += counts.unlabelled.sum(1)
    return _nanmean(_divide(tp, counts.gt[None, :] + pred - tp))


def summary_metrics(counts: ClassCounts) -> dict[str, np.ndarray]:
    """Every summary metric at every grid point: name -> (G,) float64 in [0, 1]."""
    tp, fp, fn = counts.tp, counts.fp, counts.fn
    gt = np.broadcast_to(counts.gt[None, :], tp.shape)
    union = tp + fp + fn
    iou = _divide(tp, union)
    labelled_union = union - counts.unlabelled
    filled = _unlabelled_as_background(counts)
    gt_present = gt > 0
    total_gt = gt.sum(1)
    return {
        "miou": _nanmean(iou),
        "miou_zero": np.nan_to_num(iou, nan=0.0).mean(1),
        "miou_gt_present": _nanmean(np.where(gt_present, np.nan_to_num(iou, nan=0.0), np.nan)),
        "miou_labeled": _nanmean(_divide(tp, labelled_union)),
        "miou_unlabelled_bg": filled,
        "ignore_ratio": _divide(counts.unlabelled.sum(1), total_gt),
        "pixel_accuracy": _divide(tp.sum(1), total_gt),
        "mean_precision": _nanmean(_divide(tp, tp + fp)),
        "mean_recall": _nanmean(_divide(tp, gt)),
        "fp_ratio": _nanmean(_divide(fp, union)),
        "fn_ratio": _nanmean(_divide(fn, union)),
    }
