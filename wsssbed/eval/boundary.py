"""Boundary F-score (per class, per image), for hard labels and for whole threshold sweeps.

Convention (DESIGN.md): a class's boundary is its mask minus the mask's 4-connected
erosion, the image border counting as outside; a boundary pixel matches when a boundary
pixel of the same class on the other side lies at Euclidean distance < theta. Predicted
boundary pixels on ground-truth void are not counted for precision.

For a sweep, a pixel's label at grid index j is its best class c* for j < b and the
background label after, so the pixel is a boundary pixel of c* exactly for j in
[lo, b) (lo = 0 if a 4-neighbour has another c* or lies outside the image, else the
neighbours' smallest b) and a background boundary pixel for j in [b, hi) (hi = T at the
image border, else the neighbours' largest b). Precision counts come from difference
arrays over these intervals; recall ORs the intervals, as bitmasks of 62 thresholds per
int64 word, over the tolerance disk around each ground-truth boundary pixel.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from wsssbed.errors import InputError

BITS_PER_WORD = 62
DEFAULT_TOLERANCE = 0.0075


@dataclass(frozen=True)
class Tolerance:
    """Matching distance: a fraction of the image diagonal, or a number of pixels."""

    value: float
    in_pixels: bool = False

    @classmethod
    def parse(cls, text: str) -> Tolerance:
        """`0.0075` (fraction of the diagonal) or `2px` (pixels)."""
        text = text.strip()
        pixels = text.endswith("px")
        try:
            value = float(text[:-2] if pixels else text)
        except ValueError as exc:
            raise InputError(
                f"boundary tolerance {text!r}: use a fraction like 0.0075 or a pixel count like 2px"
            ) from exc
        if not value > 0 or not math.isfinite(value):
            raise InputError(f"boundary tolerance {text!r} must be positive")
        return cls(value, pixels)

    def pixels(self, height: int, width: int) -> float:
        """Theta in pixels for an image of this size."""
        return self.value if self.in_pixels else self.value * math.hypot(height, width)

    def __str__(self) -> str:
        return f"{self.value:g}px" if self.in_pixels else f"{self.value:g}"


def disk_offsets(theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Integer offsets (dy, dx) with dy^2 + dx^2 < theta^2 (strict, as MATLAB's bfscore)."""
    reach = math.ceil(theta)
    dy, dx = torch.meshgrid(
        torch.arange(-reach, reach + 1), torch.arange(-reach, reach + 1), indexing="ij"
    )
    inside = (dy * dy + dx * dx).double() < theta * theta
    return dy[inside], dx[inside]


def _neighbours(values: torch.Tensor, fill: float | int) -> torch.Tensor:
    """(4, H, W): the up, down, left and right neighbour of every pixel (`fill` outside)."""
    padded = F.pad(values[None, None].double(), (1, 1, 1, 1), value=float(fill))[0, 0]
    return torch.stack(
        [padded[:-2, 1:-1], padded[2:, 1:-1], padded[1:-1, :-2], padded[1:-1, 2:]]
    ).to(values.dtype)


def edge_mask(labels: torch.Tensor) -> torch.Tensor:
    """(H, W) bool: the pixel's 4-neighbourhood holds another label or leaves the image."""
    return (_neighbours(labels.long(), -1) != labels.long()).any(0)


@dataclass
class BoundaryCounts:
    """Boundary pixel counts of one image (or a sum of images), per class and grid index.

    Attributes:
        pred_total: (K, T) predicted boundary pixels not on ground-truth void.
        pred_matched: (K, T) of those, pixels within theta of a ground-truth boundary.
        gt_total: (K,) ground-truth boundary pixels.
        gt_matched: (K, T) of those, pixels within theta of a predicted boundary.
    """

    pred_total: np.ndarray
    pred_matched: np.ndarray
    gt_total: np.ndarray
    gt_matched: np.ndarray

    def __add__(self, other: BoundaryCounts) -> BoundaryCounts:
        return BoundaryCounts(
            self.pred_total + other.pred_total,
            self.pred_matched + other.pred_matched,
            self.gt_total + other.gt_total,
            self.gt_matched + other.gt_matched,
        )


def sweep_boundary_counts(
    best_id: torch.Tensor,
    buckets: torch.Tensor,
    gt: torch.Tensor,
    *,
    num_points: int,
    num_classes: int,
    background_label: int,
    theta: float,
    void_label: int | None = 255,
) -> BoundaryCounts:
    """Boundary counts at every grid index of a two-outcome sweep.

    Args:
        best_id: (H, W) int64 label of a pixel while foreground (K = none).
        buckets: (H, W) int64; the pixel is foreground for grid indices j < bucket.
        gt: (H, W) uint8 ground truth.
        num_points: T, grid points (internal order).
        num_classes: K.
        background_label: label after the bucket (0, or K = unlabelled, not scored).
        theta: tolerance in pixels.
        void_label: ground-truth value excluded from precision (None: no void).
    """
    k, t = num_classes, num_points
    device = best_id.device
    best = best_id.long()
    bucket = buckets.long().clamp(max=t)
    gt_long = gt.long()

    neighbour_best = _neighbours(best, -1)
    neighbour_bucket = _neighbours(bucket, 0)
    outside_or_other = (neighbour_best != best).any(0)
    fg_low = torch.where(outside_or_other, torch.zeros_like(bucket), neighbour_bucket.min(0).values)
    fg_high = bucket
    border = torch.zeros_like(best, dtype=torch.bool)
    border[0, :] = border[-1, :] = True
    border[:, 0] = border[:, -1] = True
    bg_low = bucket
    bg_high = torch.where(border, torch.full_like(bucket, t), neighbour_bucket.max(0).values)
    scores_background = background_label < k
    fg_valid = (fg_low < fg_high) & (best < k)
    bg_valid = (bg_low < bg_high) & scores_background

    # Ground-truth boundary pixels and their tolerance neighbourhoods.
    gt_edge = edge_mask(gt_long) & (gt_long < k)
    gy, gx = torch.nonzero(gt_edge, as_tuple=True)
    gt_class = gt_long[gy, gx]
    gt_total = torch.bincount(gt_class, minlength=k)
    dy, dx = (o.to(device) for o in disk_offsets(theta))
    height, width = best.shape
    near_gt = _near(gy, gx, gt_class, dy, dx, height, width)

    if void_label is None:
        counted = torch.ones_like(best, dtype=torch.bool)
    else:
        counted = gt_long != void_label
    flat_index = torch.arange(height * width, device=device).view(height, width)
    pred_total = torch.zeros((k, t + 1), dtype=torch.int64, device=device)
    pred_matched = torch.zeros_like(pred_total)
    for label_map, low, high, valid in (
        (best, fg_low, fg_high, fg_valid),
        (torch.full_like(best, min(background_label, k - 1)), bg_low, bg_high, bg_valid),
    ):
        keep = valid & counted
        labels, lows, highs = label_map[keep], low[keep], high[keep]
        matched = near_gt.lookup(labels, flat_index[keep])
        for target, weight in ((pred_total, None), (pred_matched, matched)):
            _add_intervals(target, labels, lows, highs, weight)
    pred_total = pred_total.cumsum(1)[:, :t]
    pred_matched = pred_matched.cumsum(1)[:, :t]

    words = max(1, math.ceil(t / BITS_PER_WORD))
    fg_bits = _interval_bits(fg_low, torch.where(fg_valid, fg_high, fg_low), words)
    bg_bits = _interval_bits(bg_low, torch.where(bg_valid, bg_high, bg_low), words)
    covered = _or_over_disk(
        fg_bits,
        bg_bits,
        best,
        gy,
        gx,
        gt_class,
        dy,
        dx,
        background_label if scores_background else -2,
    )
    gt_matched = torch.zeros((k, t), dtype=torch.int64, device=device)
    gt_matched.index_add_(0, gt_class, _unpack_bits(covered, t))
    return BoundaryCounts(
        pred_total.cpu().numpy(),
        pred_matched.cpu().numpy(),
        gt_total.cpu().numpy(),
        gt_matched.cpu().numpy(),
    )


class _NearSet:
    """Which (class, pixel) pairs lie within theta of a boundary pixel of that class."""

    def __init__(self, keys: torch.Tensor, num_pixels: int) -> None:
        self.keys = torch.unique(keys)
        self.num_pixels = num_pixels

    def lookup(self, labels: torch.Tensor, pixels: torch.Tensor) -> torch.Tensor:
        """(N,) bool: pixel `pixels[i]` is near a boundary of class `labels[i]`."""
        query = labels * self.num_pixels + pixels
        if self.keys.numel() == 0:
            return torch.zeros_like(query, dtype=torch.bool)
        position = torch.searchsorted(self.keys, query).clamp(max=self.keys.numel() - 1)
        return self.keys[position] == query


def _near(
    ys: torch.Tensor,
    xs: torch.Tensor,
    classes: torch.Tensor,
    dy: torch.Tensor,
    dx: torch.Tensor,
    height: int,
    width: int,
) -> _NearSet:
    """The (class, pixel) pairs within the disk around each boundary pixel."""
    y = ys[:, None] + dy[None, :]
    x = xs[:, None] + dx[None, :]
    inside = (y >= 0) & (y < height) & (x >= 0) & (x < width)
    keys = classes[:, None] * (height * width) + y * width + x
    return _NearSet(keys[inside], height * width)


def _add_intervals(
    target: torch.Tensor,
    labels: torch.Tensor,
    lows: torch.Tensor,
    highs: torch.Tensor,
    weight: torch.Tensor | None,
) -> None:
    """Difference-array update: +1 at [label, low], -1 at [label, high]."""
    if weight is not None:
        labels, lows, highs = labels[weight], lows[weight], highs[weight]
    width = target.shape[1]
    flat = target.view(-1)
    ones = torch.ones_like(labels)
    flat.index_add_(0, labels * width + lows, ones)
    flat.index_add_(0, labels * width + highs, -ones)


def _interval_bits(low: torch.Tensor, high: torch.Tensor, words: int) -> torch.Tensor:
    """(H, W, words) int64 bitmask with bits [low, high) set (62 bits per word)."""
    start = torch.arange(words, device=low.device) * BITS_PER_WORD
    lo = (low[..., None] - start).clamp(0, BITS_PER_WORD)
    hi = (high[..., None] - start).clamp(0, BITS_PER_WORD)
    one = torch.ones((), dtype=torch.int64, device=low.device)
    bits = torch.bitwise_left_shift(one, hi) - torch.bitwise_left_shift(one, lo)
    return torch.where(hi > lo, bits, torch.zeros_like(bits))


def _or_over_disk(
    fg_bits: torch.Tensor,
    bg_bits: torch.Tensor,
    best: torch.Tensor,
    gy: torch.Tensor,
    gx: torch.Tensor,
    gt_class: torch.Tensor,
    dy: torch.Tensor,
    dx: torch.Tensor,
    background_label: int,
) -> torch.Tensor:
    """(N, words): OR of the class-matching interval bits over each gt pixel's disk."""
    reach = int(max(dy.abs().max().item(), dx.abs().max().item())) if dy.numel() else 0
    width, words = fg_bits.shape[1:]
    padded_width = width + 2 * reach
    pad = (0, 0, reach, reach, reach, reach)
    fg = F.pad(fg_bits, pad).view(-1, words)
    bg = F.pad(bg_bits, pad).view(-1, words)
    labels = F.pad(best, (reach, reach, reach, reach), value=-1).view(-1)
    base = (gy + reach) * padded_width + (gx + reach)
    wants_background = (gt_class == background_label)[:, None]
    covered = torch.zeros((gy.numel(), words), dtype=torch.int64, device=best.device)
    for offset in (dy * padded_width + dx).tolist():
        index = base + offset
        same = (labels[index] == gt_class)[:, None]
        covered |= torch.where(same, fg[index], 0)
        covered |= torch.where(wants_background, bg[index], 0)
    return covered


def _unpack_bits(words: torch.Tensor, count: int) -> torch.Tensor:
    """(N, words) bitmasks -> (N, count) int64 0/1."""
    shifts = torch.arange(BITS_PER_WORD, device=words.device)
    bits = torch.bitwise_right_shift(words[..., None], shifts) & 1
    return bits.reshape(words.shape[0], words.shape[1] * BITS_PER_WORD)[:, :count]


@dataclass
class ImageBoundaryScores:
    """Per-image boundary scores at every grid index (NaN where no class is defined)."""

    f: np.ndarray
    precision: np.ndarray
    recall: np.ndarray


def class_scores(
    counts: BoundaryCounts, *, matlab: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-class (K, T) F, precision and recall.

    Default: a class is defined when either side has boundary pixels; a class present on
    one side only scores 0. `matlab`: defined only when both sides have boundary pixels
    (MATLAB's bfscore gives NaN otherwise).
    """
    pred_total = counts.pred_total.astype(np.float64)
    gt_total = np.broadcast_to(counts.gt_total[:, None], pred_total.shape).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(pred_total > 0, counts.pred_matched / pred_total, 0.0)
        recall = np.where(gt_total > 0, counts.gt_matched / gt_total, 0.0)
        total = precision + recall
        f = np.where(total > 0, 2 * precision * recall / np.where(total > 0, total, 1), 0.0)
    defined = (pred_total > 0) & (gt_total > 0) if matlab else (pred_total > 0) | (gt_total > 0)
    nan = np.nan
    return (
        np.where(defined, f, nan),
        np.where(defined, precision, nan),
        np.where(defined, recall, nan),
    )


def image_scores(counts: BoundaryCounts, *, matlab: bool = False) -> ImageBoundaryScores:
    """Per-image scores: mean over the classes defined at each grid index."""
    f, precision, recall = class_scores(counts, matlab=matlab)
    with np.errstate(invalid="ignore"):
        defined = (~np.isnan(f)).sum(0)
        means = [
            np.where(defined > 0, np.nansum(v, 0) / np.maximum(defined, 1), np.nan)
            for v in (f, precision, recall)
        ]
    return ImageBoundaryScores(*means)


def bfscore(
    pred: np.ndarray,
    gt: np.ndarray,
    classes: list[int] | None = None,
    tolerance_px: float = 2.0,
    mode: str = "default",
) -> tuple[np.ndarray, float]:
    """Boundary F1 of one label map, per class and averaged (MATLAB `bfscore` compatible).

    Args:
        pred: (H, W) integer predicted labels.
        gt: (H, W) integer ground-truth labels (255 = void in default mode).
        classes: class ids to score (default: every id in either map, void excluded).
        tolerance_px: theta in pixels; boundary pixels match at distance < theta.
        mode: `matlab` gives NaN where either side lacks the class (MATLAB's numbers);
            `default` scores a class present on one side only as 0 and does not count
            predicted boundary pixels on ground-truth void.

    Returns:
        (len(classes),) float64 per-class scores, and their mean over non-NaN entries.
    """
    if mode not in ("default", "matlab"):
        raise InputError(f"bfscore mode {mode!r}: use 'default' or 'matlab'")
    pred_t = torch.as_tensor(np.asarray(pred)).long()
    gt_t = torch.as_tensor(np.asarray(gt)).long()
    if pred_t.shape != gt_t.shape or pred_t.dim() != 2:
        raise InputError(
            f"pred {tuple(pred_t.shape)} and gt {tuple(gt_t.shape)} must be equal 2-D shapes"
        )
    void = 255 if mode == "default" else None
    if classes is None:
        present = torch.unique(torch.cat([pred_t.flatten(), gt_t.flatten()]))
        classes = [int(c) for c in present if c != 255]
    num_classes = max([*classes, int(pred_t.max()), int(gt_t.max()), 0]) + 1
    gt_for_count = gt_t if void is None else torch.where(gt_t == void, num_classes, gt_t)
    counts = sweep_boundary_counts(
        pred_t,
        torch.ones_like(pred_t),
        gt_for_count,
        num_points=1,
        num_classes=num_classes + (0 if void is None else 1),
        background_label=10**9,
        theta=float(tolerance_px),
        void_label=None if void is None else num_classes,
    )
    f, _, _ = class_scores(counts, matlab=mode == "matlab")
    scores = f[classes, 0]
    valid = scores[~np.isnan(scores)]
    return scores, float(valid.mean()) if valid.size else float("nan")
