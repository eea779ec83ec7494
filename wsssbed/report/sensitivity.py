"""Threshold-sensitivity statistics from the Parquet results.

For each run (one method on one split under one generator and grid):

- `best`: the grid point with the highest mIoU (an oracle: it is chosen with the
  ground truth of the split it is scored on);
- `at_recommended`: mIoU at the method's published or recommended point (a pipeline
  manifest's `recommended_*`, or given by the user);
- `plateau_width`: width, in threshold units, of the contiguous range of activation
  thresholds around the best one whose mIoU is within `tolerance` (1 mIoU point) of it
  (at the best saliency threshold on 2-D grids); `plateau_share` is the share of all
  grid points within it;
- `auc`: area under the mIoU curve over the grid divided by the grid's span (the mean
  mIoU over the range; on 2-D grids the mean over the grid).

Transfer: a threshold chosen on one subset of images (a split, an id file, or a random
half) and scored on another, with the gap to that split's oracle. Intervals: a percentile
bootstrap over images (per-image counts, `sweep --per-image`), and a paired bootstrap of
the difference between two runs on the same images.
"""

from __future__ import annotations

import json
import numbers
from collections import Counter
from dataclasses import dataclass

import numpy as np
import pandas as pd

from wsssbed.activation import FORMATS
from wsssbed.datasets.fingerprint import with_subsets
from wsssbed.errors import InputError
from wsssbed.eval.confusion import ClassCounts
from wsssbed.eval.summary import summary_metrics
from wsssbed.results.store import best_row

ACTIVATION_AXES = ("threshold", "alpha")
PLATEAU_TOLERANCE = 0.01
MAX_DRAWS = 10_000  # bootstrap resamples
MAX_HALVES = 1_000  # random split-half repeats


def activation_axis(sweeps: pd.DataFrame) -> str:
    """The run's activation axis (`threshold` or `alpha`)."""
    for axis in ACTIVATION_AXES:
        if sweeps[axis].notna().any():
            return axis
    return "threshold"


def is_2d(sweeps: pd.DataFrame) -> bool:
    """A saliency x activation grid with more than one saliency threshold."""
    return sweeps.sal_threshold.notna().any() and sweeps.sal_threshold.nunique() > 1


def run_label(run: pd.Series) -> str:
    """A short human name for a run: method (or maps folder) + saliency + generator."""
    from pathlib import PurePath

    name = run.get("method")
    if name is None or pd.isna(name):
        source = run.activation if pd.notna(run.activation) else run.predictions
        if pd.isna(source):
            name = run.run_id
        else:  # `maps/<method>/<format>` names the method one level up
            path = PurePath(str(source))
            name = path.parent.name if path.name in FORMATS.names() else path.name
    parts = [str(name)]
    if pd.notna(run.saliency):
        parts.append(f"+ {PurePath(str(run.saliency)).name}")
    suffix = f"({run.generator})"
    if run.generator not in ("bg-threshold", "hard-labels") and not parts[-1].endswith(suffix):
        parts.append(suffix)  # not twice: `--name "mycam (power-bg)"` already says it
    return " ".join(parts)


def distinct_labels(
    labels: list[str], runs: list[str], groups: list[str] | None = None
) -> list[str]:
    """Labels that appear twice (within one of `groups`, when given) get their run's date
    and id suffix, so legends and tables tell them apart (`voc-cam (2026-11-25 5f3a2c1e)`)."""
    groups = groups or [""] * len(labels)
    counts = Counter(zip(labels, groups, strict=True))
    return [
        label
        if counts[(label, group)] == 1
        else f"{label} ({run[:4]}-{run[4:6]}-{run[6:8]} {run[-8:]})"
        for label, run, group in zip(labels, runs, groups, strict=True)
    ]


def recommended_point(run: pd.Series) -> dict[str, float]:
    """The recommended point of a run's pipeline manifest, when it has one."""
    if pd.isna(run.get("manifests")):
        return {}
    records = json.loads(run.manifests)
    if not records or records[0].get("kind") != "pipeline":
        return {}
    from wsssbed.catalogue.lookup import resolve

    try:
        spec = resolve(records[0]["name"], "pipeline").pipeline
    except InputError:
        return {}
    point = {}
    if spec.recommended_threshold is not None:
        point["threshold"] = spec.recommended_threshold
    if spec.recommended_sal_threshold is not None:
        point["sal_threshold"] = spec.recommended_sal_threshold
    return point


def row_at(sweeps: pd.DataFrame, point: dict[str, float]) -> pd.Series | None:
    """The run's row at `point` (axis name -> value, to 1e-9), or None when off the grid."""
    mask = pd.Series(True, index=sweeps.index)
    for axis, value in point.items():
        mask &= np.isclose(sweeps[axis].astype(float), value, rtol=0, atol=1e-9)
    return sweeps[mask].iloc[0] if mask.any() else None


def curve_stats(
    sweeps: pd.DataFrame, recommended: dict[str, float], tolerance: float = PLATEAU_TOLERANCE
) -> dict:
    """Statistics of one run's grid (see the module docstring); scores are fractions.

    A run without a grid (label maps scored as they are: one point, no threshold) has
    `axis` None and only its score; the grid's statistics are None.
    """
    axis = activation_axis(sweeps)
    best = best_row(sweeps)
    best_bf_f = None if pd.isna(best.bf_f) else float(best.bf_f)
    if sweeps[axis].isna().all():
        return {"axis": None, "best_miou": float(best.miou), "best_threshold": None,
                "best_sal_threshold": None, "best_bf_f": best_bf_f, "recommended": None,
                "at_recommended_miou": None, "plateau_width": None, "plateau_share": None,
                "auc": None, "points": len(sweeps)}  # fmt: skip
    line = sweeps
    if is_2d(sweeps):
        line = sweeps[np.isclose(sweeps.sal_threshold.astype(float), best.sal_threshold)]
    line = line.sort_values(axis)
    values = line[axis].astype(float).to_numpy()
    scores = line.miou.astype(float).to_numpy()
    within = scores >= best.miou - tolerance
    at_best = int(np.flatnonzero(values == float(best[axis]))[0])
    low, high = at_best, at_best
    while low > 0 and within[low - 1]:
        low -= 1
    while high < len(values) - 1 and within[high + 1]:
        high += 1
    span = values[-1] - values[0]
    if is_2d(sweeps) or span == 0:
        auc = float(sweeps.miou.astype(float).mean())
    else:
        auc = float(np.sum((scores[1:] + scores[:-1]) / 2 * np.diff(values)) / span)
    at = row_at(sweeps, recommended) if recommended else None
    return {
        "axis": axis,
        "best_miou": float(best.miou),
        "best_threshold": float(best[axis]),
        "best_sal_threshold": None if pd.isna(best.sal_threshold) else float(best.sal_threshold),
        "best_bf_f": best_bf_f,
        "recommended": json.dumps(recommended) if recommended else None,
        "at_recommended_miou": None if at is None else float(at.miou),
        "plateau_width": float(values[high] - values[low]),
        "plateau_share": float((sweeps.miou.astype(float) >= best.miou - tolerance).mean()),
        "auc": auc,
        "points": len(sweeps),
    }


@dataclass
class PerImage:
    """One run's per-image counts as dense arrays over (image, class) at every point.

    Attributes:
        image_ids: (N,) sorted image ids.
        tp, fp, fn, unlabelled: (N, G, K) int64.
    """

    image_ids: np.ndarray
    tp: np.ndarray
    fp: np.ndarray
    fn: np.ndarray
    unlabelled: np.ndarray

    @classmethod
    def from_rows(cls, rows: pd.DataFrame, points: int, num_classes: int) -> PerImage:
        """From a run's `per_image` rows."""
        if rows.empty:
            raise InputError("this run has no per-image counts; sweep it again with --per-image")
        image_ids, image = np.unique(rows.image_id.to_numpy(), return_inverse=True)
        shape = (len(image_ids), points, num_classes)
        arrays = []
        for column in ("tp", "fp", "fn", "fn_unlabelled"):
            out = np.zeros(shape, dtype=np.int64)
            np.add.at(out, (image, rows.point.to_numpy(), rows.class_id.to_numpy()), rows[column])
            arrays.append(out)
        return cls(image_ids, *arrays)

    def miou(self, weights: np.ndarray) -> np.ndarray:
        """(B, G) mIoU of B weighted image sets (weights: (B, N) image multiplicities)."""
        tp, fp, fn = (np.einsum("bn,ngk->bgk", weights, a) for a in (self.tp, self.fp, self.fn))
        union = (tp + fp + fn).astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            iou = np.where(union > 0, tp / np.where(union > 0, union, 1), np.nan)
            return np.nanmean(iou, axis=2)

    def at_point(self, point: int, images: np.ndarray | None = None) -> PerImage:
        """The counts at one grid point (G = 1), optionally for some images only."""
        index = np.arange(len(self.image_ids)) if images is None else images
        arrays = (
            a[index][:, point : point + 1] for a in (self.tp, self.fp, self.fn, self.unlabelled)
        )
        return PerImage(self.image_ids[index], *arrays)

    def metrics(self, images: np.ndarray) -> dict[str, np.ndarray]:
        """Every summary metric at every point for the images at indices `images`."""
        tp, fp, fn, unlabelled = (
            a[images].sum(0) for a in (self.tp, self.fp, self.fn, self.unlabelled)
        )
        counts = ClassCounts(tp, tp + fp, (tp + fn).max(0), unlabelled)
        return summary_metrics(counts)


def check_draws(draws: object, option: str = "--draws") -> int:
    """`draws` as a count of bootstrap resamples: an integer in 2..`MAX_DRAWS` (the
    resample weights take draws x images x 8 bytes: 850 MB for train_aug at the maximum).

    Raises:
        InputError: naming `option` and the value.
    """
    if (
        isinstance(draws, bool)
        or not isinstance(draws, numbers.Integral)
        or not (2 <= draws <= MAX_DRAWS)
    ):
        raise InputError(f"{option} {draws!r:.30}: bootstrap resamples must be an integer "
                         f"from 2 to {MAX_DRAWS:,}")  # fmt: skip
    return int(draws)


def bootstrap_interval(
    per_image: PerImage, point: int, draws: int, seed: int, level: float = 0.95
) -> tuple[float, float]:
    """Percentile bootstrap interval over images of the mIoU at grid point `point`."""
    weights = _resample_weights(len(per_image.image_ids), draws, seed)
    scores = per_image.at_point(point).miou(weights)[:, 0]
    tail = (1 - level) / 2 * 100
    low, high = np.nanpercentile(scores, [tail, 100 - tail])
    return float(low), float(high)


def _resample_weights(images: int, draws: int, seed: int) -> np.ndarray:
    """(draws, images) multiplicities of images drawn with replacement."""
    rng = np.random.default_rng(seed)
    return rng.multinomial(images, np.full(images, 1 / images), size=draws)


def split_half_transfer(per_image: PerImage, repeats: int, seed: int) -> dict:
    """Choose the best point on a random half of the images, score it on the other half.

    Returns the mean score on the held-out half, the mean gap to that half's own
    oracle, and the mean chosen threshold index spread (as point indices).
    """
    rng = np.random.default_rng(seed)
    n = len(per_image.image_ids)
    if n < 2:
        raise InputError("a split-half study needs at least 2 images")
    scores, gaps, chosen = [], [], []
    for _ in range(repeats):
        order = rng.permutation(n)
        pick, held = order[: n // 2], order[n // 2 :]
        choice = int(np.nanargmax(per_image.metrics(pick)["miou"]))
        held_miou = per_image.metrics(held)["miou"]
        scores.append(held_miou[choice])
        gaps.append(np.nanmax(held_miou) - held_miou[choice])
        chosen.append(choice)
    return {
        "held_out_miou": float(np.mean(scores)),
        "gap_to_oracle": float(np.mean(gaps)),
        "max_gap": float(np.max(gaps)),
        "distinct_choices": len(set(chosen)),
        "repeats": repeats,
    }


def setting_key(run: pd.Series) -> tuple[str, ...]:
    """Runs with the same key differ only in their subset: the same maps source, dataset,
    stage, generator and grid (point for point), so a point chosen on one applies to the
    other."""
    ignore = "" if pd.isna(run.ignore_label) else str(bool(run.ignore_label))
    return (run_label(run), run.dataset, run.stage, run.generator, ignore, run.grid)


def split_transfer(runs: pd.DataFrame, sweeps: pd.DataFrame) -> pd.DataFrame:
    """For runs of the same setting (`setting_key`) on different subsets: choose on one,
    score on another. Subsets are told apart by their ids (`with_subsets`): the same ids
    under two names are no transfer."""
    rows = []
    keyed = with_subsets(runs)
    keyed = keyed.assign(label=keyed.apply(run_label, axis=1), key=keyed.apply(setting_key, axis=1))
    for _, group in keyed.groupby("key", sort=True):
        for _, source in group.iterrows():
            point = int(best_row(sweeps[sweeps.run_id == source.run_id]).point)
            targets = group[(group.subset_key != source.subset_key)
                            & (group.subset != source.subset)]  # fmt: skip
            for _, target in targets.iterrows():
                scored = sweeps[sweeps.run_id == target.run_id].set_index("point")
                rows.append(
                    {
                        "label": source.label,
                        "chosen_run": source.run_id,
                        "scored_run": target.run_id,
                        "dataset": source.dataset,
                        "chosen_on": source.subset,
                        "scored_on": target.subset,
                        "point": point,
                        "transferred_miou": float(scored.loc[point, "miou"]),
                        "oracle_miou": float(scored.miou.max()),
                        "gap_to_oracle": float(scored.miou.max() - scored.loc[point, "miou"]),
                    }
                )
    return pd.DataFrame(rows)


def paired_comparison(
    first: PerImage, first_point: int, second: PerImage, second_point: int, draws: int, seed: int
) -> dict:
    """Paired bootstrap of mIoU(first) - mIoU(second) on the images both runs scored."""
    common, a_index, b_index = np.intersect1d(
        first.image_ids, second.image_ids, return_indices=True
    )
    if len(common) < 2:
        raise InputError("the two runs share fewer than 2 images; a paired test needs more")

    a, b = first.at_point(first_point, a_index), second.at_point(second_point, b_index)
    weights = _resample_weights(len(common), draws, seed)
    difference = a.miou(weights)[:, 0] - b.miou(weights)[:, 0]
    ones = np.ones((1, len(common)), dtype=np.int64)
    low, high = np.nanpercentile(difference, [2.5, 97.5])
    return {
        "images": len(common),
        "difference": float(a.miou(ones)[0, 0] - b.miou(ones)[0, 0]),
        "ci_low": float(low),
        "ci_high": float(high),
        "share_not_better": float(np.mean(difference <= 0)),
    }
