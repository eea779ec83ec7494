"""A finished sweep as tables: one row per grid point, one row per (point, class)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from wsssbed.datasets.spec import DatasetSpec
from wsssbed.eval.axes import AXIS_COLUMNS
from wsssbed.eval.confusion import ClassCounts, class_counts, grid_points
from wsssbed.eval.reduce import SweepState
from wsssbed.eval.rules import Rule
from wsssbed.eval.summary import per_class_iou, summary_metrics


def sweep_tables(
    state: SweepState, rule: Rule, spec: DatasetSpec, run_id: str
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(sweeps, per_class) data frames of a run, points in the user's grid order."""
    counts = class_counts(state.pairs.result(), rule, spec.num_classes, spec.has_background)
    points = grid_points(rule)
    sweeps = pd.DataFrame({"run_id": run_id, "point": np.arange(len(points), dtype=np.int64)})
    for column in AXIS_COLUMNS:
        sweeps[column] = pd.array([p.get(column) for p in points], dtype="Float64")
    for name, values in summary_metrics(counts).items():
        sweeps[name] = values
    order = rule.user_order()
    bf = {"bf_f": None, "bf_p": None, "bf_r": None}
    if state.with_boundary:
        with np.errstate(invalid="ignore"):
            means = state.bf_sums / np.where(state.bf_images > 0, state.bf_images, np.nan)
        bf = {"bf_f": means[0][order], "bf_p": means[1][order], "bf_r": means[2][order]}
    for name, values in bf.items():
        sweeps[name] = pd.array(
            values if values is not None else [None] * len(points), dtype="Float64"
        )
    sweeps["n_images"] = np.int64(state.images)
    return sweeps, _per_class_table(counts, state, spec, run_id, order)


def _per_class_table(
    counts: ClassCounts, state: SweepState, spec: DatasetSpec, run_id: str, order: np.ndarray
) -> pd.DataFrame:
    points, k = counts.tp.shape
    point = np.repeat(np.arange(points, dtype=np.int64), k)
    class_id = np.tile(np.arange(k, dtype=np.int64), points)
    union = counts.gt[None, :] + counts.pred - counts.tp
    table = pd.DataFrame(
        {
            "run_id": run_id,
            "point": point,
            "class_id": class_id,
            "class_name": np.asarray(spec.classes, dtype=object)[class_id],
            "tp": counts.tp.ravel(),
            "fp": counts.fp.ravel(),
            "fn": counts.fn.ravel(),
            "fn_unlabelled": counts.unlabelled.ravel(),
            "intersection": counts.tp.ravel(),
            "union": union.ravel(),
            "gt_pixels": np.tile(counts.gt, points),
            "pred_pixels": counts.pred.ravel(),
            "iou": per_class_iou(counts).ravel(),
        }
    )
    with np.errstate(invalid="ignore", divide="ignore"):
        table["precision"] = np.where(table.pred_pixels > 0, table.tp / table.pred_pixels, np.nan)
        table["recall"] = np.where(table.gt_pixels > 0, table.tp / table.gt_pixels, np.nan)
    names = ("bf_pred", "bf_pred_matched", "bf_gt", "bf_gt_matched")
    if state.boundary is not None:
        b = state.boundary
        gt_total = np.broadcast_to(b.gt_total[:, None], b.pred_total.shape)
        for name, values in zip(names, (b.pred_total, b.pred_matched, gt_total, b.gt_matched)):
            table[name] = pd.array(values[:, order].T.ravel(), dtype="Int64")
    else:
        for name in names:
            table[name] = pd.array([None] * len(table), dtype="Int64")
    return table


def per_image_table(state: SweepState, run_id: str) -> pd.DataFrame:
    """One row per (image, grid point, class) with a non-zero count (empty if not kept)."""
    columns = ["point", "class_id", "tp", "fp", "fn", "fn_unlabelled"]
    if not state.per_image:
        return pd.DataFrame(columns=["run_id", "image_id", *columns])
    rows = np.concatenate([r for _, r in state.per_image])
    image_ids = np.repeat([i for i, _ in state.per_image], [len(r) for _, r in state.per_image])
    table = pd.DataFrame(rows, columns=columns)
    table.insert(0, "image_id", image_ids)
    table.insert(0, "run_id", run_id)
    return table
