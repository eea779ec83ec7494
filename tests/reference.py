"""Independent reference implementations, written from the published conventions.

Nothing here imports wsssbed's evaluator: each function recomputes one threshold at a
time, the way the peers' scripts do, so the engine can be checked against it.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

#: Class counts of the built-in datasets, as published.
CLASS_COUNTS = {
    "voc2012": 21,
    "coco2014": 81,
    "context": 60,
    "context59": 59,
    "ade20k": 150,
    "cocostuff": 171,
}


def irn_labels(
    keys: np.ndarray,
    cams: np.ndarray,
    threshold: float,
    has_background: bool,
    shape: tuple[int, int],
) -> np.ndarray:
    """IRN's eval_cam: pad a constant background channel, argmax, map through keys."""
    if cams.shape[0] == 0:
        return np.full(shape, 0 if has_background else 255, dtype=np.uint8)
    padded = np.pad(cams, ((1, 0), (0, 0), (0, 0)), mode="constant", constant_values=threshold)
    # keys are dataset class ids here; index 0 = background channel.
    labels = np.concatenate([[0 if has_background else 255], keys])[np.argmax(padded, axis=0)]
    return labels.astype(np.uint8)


def psa_labels(
    keys: np.ndarray, cams: np.ndarray, alpha: float, has_background: bool, shape: tuple[int, int]
) -> np.ndarray:
    """PSA's power background: bg = (1 - max) ** alpha, then argmax (ties to background)."""
    if cams.shape[0] == 0:
        return np.full(shape, 0 if has_background else 255, dtype=np.uint8)
    base = np.float32(1) - cams.max(0)
    background = np.power(base.astype(np.float64), alpha).astype(np.float32)
    stacked = np.concatenate([background[None], cams])
    labels = np.concatenate([[0 if has_background else 255], keys])[np.argmax(stacked, axis=0)]
    return labels.astype(np.uint8)


def wsss_bed_labels(
    sal_u8: np.ndarray,
    keys: np.ndarray,
    cams: np.ndarray,
    num_classes: int,
    sal_thresh: float,
    atm_thresh: float,
    ignore_label: bool,
    wo_sal: bool,
) -> np.ndarray:
    """A transcription of WSSS-BED run.py's per-image logic (keys are class ids >= 1)."""
    sal = np.float32(sal_u8) / 255.0
    if sal_thresh > 0:
        sal = (sal > sal_thresh).astype(np.float32)
    height, width = sal.shape
    pred = np.zeros((num_classes, height, width), dtype=np.float32)
    pred[0] = atm_thresh if wo_sal else 1.0 - sal
    for key, cam in zip(keys, cams):
        pred[key] = cam
    if atm_thresh > 0 and not wo_sal:
        pred[1:] = np.where(pred[1:] < atm_thresh, 0, pred[1:])
    labels = pred.argmax(0).astype(np.uint8)
    if ignore_label and not wo_sal:
        labels[(sal > sal_thresh) & (labels == 0)] = 255
    return labels


def confusion(gt: np.ndarray, pred: np.ndarray, num_classes: int) -> np.ndarray:
    """(K, K+1) counts: rows ground truth (void dropped), last column = unlabelled."""
    valid = gt != 255
    g = gt[valid].astype(np.int64)
    p = pred[valid].astype(np.int64)
    p = np.where(p == 255, num_classes, p)
    return np.bincount(
        g * (num_classes + 1) + p, minlength=num_classes * (num_classes + 1)
    ).reshape(num_classes, -1)


def metrics(conf: np.ndarray) -> dict[str, float]:
    """mIoU conventions and friends, straight from the definitions."""
    k = conf.shape[0]
    tp = np.diag(conf[:, :k]).astype(float)
    gt = conf.sum(1).astype(float)
    pred = conf[:, :k].sum(0).astype(float)
    union = gt + pred - tp
    unl = conf[:, k].astype(float)
    iou = [tp[c] / union[c] for c in range(k) if union[c] > 0]
    labelled = [tp[c] / (union[c] - unl[c]) for c in range(k) if union[c] - unl[c] > 0]
    present = [tp[c] / union[c] for c in range(k) if gt[c] > 0]
    return {
        "miou": float(np.mean(iou)) if iou else float("nan"),
        "miou_zero": float(sum(iou) / k),
        "miou_gt_present": float(np.mean(present)) if present else float("nan"),
        "miou_labeled": float(np.mean(labelled)) if labelled else float("nan"),
        "ignore_ratio": float(unl.sum() / gt.sum()) if gt.sum() else float("nan"),
        "pixel_accuracy": float(tp.sum() / gt.sum()) if gt.sum() else float("nan"),
        "fp_ratio": float(np.mean([(pred[c] - tp[c]) / union[c] for c in range(k) if union[c] > 0]))
        if iou
        else float("nan"),
        "fn_ratio": float(np.mean([(gt[c] - tp[c]) / union[c] for c in range(k) if union[c] > 0]))
        if iou
        else float("nan"),
    }


def boundary_of(mask: np.ndarray) -> np.ndarray:
    """Mask minus its 4-connected erosion; outside the image counts as background."""
    eroded = ndimage.binary_erosion(mask, ndimage.generate_binary_structure(2, 1), border_value=0)
    return mask & ~eroded


def image_bf(
    pred: np.ndarray, gt: np.ndarray, num_classes: int, theta: float, scored: range | list[int]
) -> tuple[float, float, float]:
    """Per-image boundary F, P, R: mean over classes present on either side (default mode)."""
    fs, ps, rs = [], [], []
    void = gt == 255
    for k in scored:
        pb = boundary_of(pred == k)
        gb = boundary_of(gt == k)
        pb_counted = pb & ~void
        if not pb_counted.any() and not gb.any():
            continue
        near_gt = ndimage.distance_transform_edt(~gb) < theta if gb.any() else np.zeros_like(gb)
        near_pred = ndimage.distance_transform_edt(~pb) < theta if pb.any() else np.zeros_like(pb)
        precision = (pb_counted & near_gt).sum() / pb_counted.sum() if pb_counted.any() else 0.0
        recall = (gb & near_pred).sum() / gb.sum() if gb.any() else 0.0
        f = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
        fs.append(f)
        ps.append(precision)
        rs.append(recall)
    if not fs:
        return float("nan"), float("nan"), float("nan")
    return float(np.mean(fs)), float(np.mean(ps)), float(np.mean(rs))
