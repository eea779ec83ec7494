"""From pair histograms to per-class counts at every grid point."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from wsssbed.eval.histogram import PairCounts, as_numpy
from wsssbed.eval.rules import Rule


@dataclass
class ClassCounts:
    """Per-class pixel counts at every grid point (user order, flattened row-major).

    Attributes:
        tp: (G, K) pixels of class k predicted k.
        pred: (G, K) pixels predicted k on labelled ground truth.
        gt: (K,) labelled ground-truth pixels of class k.
        unlabelled: (G, K) pixels of class k the prediction leaves unlabelled (255).
        background: the background class id (0) of a dataset that has one, else None.
    """

    tp: np.ndarray
    pred: np.ndarray
    gt: np.ndarray
    unlabelled: np.ndarray
    background: int | None = None

    @property
    def fp(self) -> np.ndarray:
        """(G, K) pixels predicted k whose ground truth is another class."""
        return self.pred - self.tp

    @property
    def fn(self) -> np.ndarray:
        """(G, K) pixels of class k predicted otherwise or left unlabelled."""
        return self.gt[None, :] - self.tp


def class_counts(
    counts: PairCounts, rule: Rule, num_classes: int, has_background: bool
) -> ClassCounts:
    """Turn a run's pair histogram into per-class counts at every grid point.

    A pixel of pair (g, c) is predicted c where foreground, unlabelled where ignored,
    and background (class 0, or unlabelled for datasets without background) otherwise.
    """
    k = num_classes
    none = k  # column of "unlabelled"
    codes, hist = as_numpy(counts.codes), as_numpy(counts.hist)
    gt_ids = codes // (k + 1)
    best_ids = codes % (k + 1)
    foreground, ignored = rule.outcomes(hist)
    points = int(np.prod(rule.shape))
    foreground = foreground.reshape(-1, points).T  # (G, P)
    ignored = ignored.reshape(-1, points).T
    totals = hist.reshape(hist.shape[0], -1).sum(1)  # (P,)
    background = totals[None, :] - foreground - ignored
    background_column = 0 if has_background else none

    def per_class(ids: np.ndarray, values: np.ndarray) -> np.ndarray:
        """(G, K + 1): column c sums the pairs' (G, P) `values` whose id is c."""
        out = np.zeros((k + 1, values.shape[0]), dtype=np.int64)
        np.add.at(out, ids, values.T)
        return out.T

    pred = per_class(best_ids, foreground)
    pred[:, background_column] += background.sum(1)
    pred[:, none] += ignored.sum(1)

    unlabelled = per_class(gt_ids, ignored + foreground * (best_ids == none))
    if not has_background:
        unlabelled += per_class(gt_ids, background)

    pred_on_gt = foreground * (best_ids == gt_ids)
    if has_background:
        pred_on_gt = pred_on_gt + background * (gt_ids == 0)
    tp = per_class(gt_ids, pred_on_gt)

    gt = np.zeros(k + 1, dtype=np.int64)
    np.add.at(gt, gt_ids, totals)
    order = rule.user_order()
    return ClassCounts(
        tp[order, :k], pred[order, :k], gt[:k], unlabelled[order, :k], 0 if has_background else None
    )


def sparse_rows(counts: ClassCounts) -> np.ndarray:
    """(M, 6) int64 rows `point, class, tp, fp, fn, unlabelled` where tp + fp + fn > 0.

    The non-zero part of one image's counts (an image touches few classes), stored in
    `per_image.parquet`.
    """
    fn = counts.fn
    point, cls = np.nonzero(counts.tp + counts.fp + fn)
    return np.stack(
        [point, cls, counts.tp[point, cls], counts.fp[point, cls], fn[point, cls],
         counts.unlabelled[point, cls]],
        axis=1,
    ).astype(np.int64)  # fmt: skip


def grid_points(rule: Rule) -> list[dict[str, float]]:
    """The user's grid points in result order: one dict of axis name -> value each."""
    grids = np.meshgrid(*[np.asarray(a.values, dtype=np.float64) for a in rule.axes], indexing="ij")
    names = [a.name for a in rule.axes]
    return [dict(zip(names, values)) for values in zip(*(g.ravel().tolist() for g in grids))]
