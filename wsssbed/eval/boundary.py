"""Boundary F-score (per class, per image), for hard labels and for whole threshold sweeps.

Convention (docs/architecture.md): a class's boundary is its mask minus the mask's 4-connected
erosion, the image border counting as outside; a boundary pixel matches when a boundary
pixel of the same class on the other side lies at Euclidean distance < theta. Predicted
boundary pixels on ground-truth void are not counted for precision.

For a sweep, a pixel's label at grid index j is its best class c* for j < b and the
background label after, so the pixel is a boundary pixel of c* exactly for j in
[lo, b) (lo = 0 if a 4-neighbour has another c* or lies outside the image, else the
neighbours' smallest b) and a background boundary pixel for j in [b, hi) (hi = T at the
image border, else the neighbours' largest b). Precision counts come from difference
arrays over these intervals. For recall, the grid indices at which a ground-truth
boundary pixel has a match form one interval, found by a min and a max over its
tolerance disk (`_covered_intervals` gives the argument), so recall needs no bitmask
dilation and is exact. Every count is an integer, so CPU and GPU agree.

Images are counted in batches (`batch_boundary_counts`): one (B, H, W) array holds every
image of the batch (padded to the largest), and the disks read the same planes with a
margin, so a batch costs one set of kernels; a single image is a batch of one, and a
batch gives each image the counts it gets alone.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from wsssbed.errors import InputError
from wsssbed.eval.histogram import value_counts

if TYPE_CHECKING:  # torch is imported by the functions that count boundaries
    import torch

DEFAULT_TOLERANCE = 0.0075
MAX_LABEL = 65535  # `bfscore` labels: 16-bit label maps (counts are kept per label value)


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
            raise InputError(f"boundary tolerance {text!r} must be positive and finite")
        return cls(value, pixels)

    def pixels(self, height: int, width: int) -> float:
        """Theta in pixels for an image of this size (see `within_diagonal`)."""
        theta = self.value if self.in_pixels else self.value * math.hypot(height, width)
        return within_diagonal(theta, height, width)


def within_diagonal(theta: float, height: int, width: int) -> float:
    """`theta`, at most the image's diagonal: every pixel pair of an H x W image lies
    closer than that, so a larger theta matches the same pixels, and the tolerance disk
    (about theta^2 offsets) stays the image's size, not the number a user typed."""
    return min(theta, math.hypot(height, width))

    def __str__(self) -> str:
        return f"{self.value:g}px" if self.in_pixels else f"{self.value:g}"


def disk_offsets(theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Integer offsets (dy, dx) with dy^2 + dx^2 < theta^2 (strict, as MATLAB's bfscore)."""
    import torch

    reach = math.ceil(theta)
    dy, dx = torch.meshgrid(
        torch.arange(-reach, reach + 1), torch.arange(-reach, reach + 1), indexing="ij"
    )
    inside = in_disk(dy, dx, theta)
    return dy[inside], dx[inside]


def in_disk(dy: torch.Tensor, dx: torch.Tensor, theta: float) -> torch.Tensor:
    """Whether each offset lies strictly inside the tolerance disk (in double precision)."""
    return (dy * dy + dx * dx).double() < theta * theta


def _differs_from_neighbour(labels: torch.Tensor) -> torch.Tensor:
    """(..., H, W) bool: a 4-neighbour holds another label (or, on the array's edge, the
    pixel has no neighbour there)."""
    import torch

    differs = torch.zeros(labels.shape, dtype=torch.bool, device=labels.device)
    vertical = labels[..., 1:, :] != labels[..., :-1, :]
    horizontal = labels[..., :, 1:] != labels[..., :, :-1]
    differs[..., 1:, :] |= vertical
    differs[..., :-1, :] |= vertical
    differs[..., :, 1:] |= horizontal
    differs[..., :, :-1] |= horizontal
    differs[..., 0, :] = differs[..., -1, :] = True
    differs[..., :, 0] = differs[..., :, -1] = True
    return differs


def _neighbour_extreme(values: torch.Tensor, fill: int, pick) -> torch.Tensor:
    """(..., H, W): `pick` (torch.minimum / maximum) over the 4 neighbours in the array."""
    import torch

    out = torch.full_like(values, fill)
    out[..., 1:, :] = pick(out[..., 1:, :], values[..., :-1, :])
    out[..., :-1, :] = pick(out[..., :-1, :], values[..., 1:, :])
    out[..., :, 1:] = pick(out[..., :, 1:], values[..., :, :-1])
    out[..., :, :-1] = pick(out[..., :, :-1], values[..., :, 1:])
    return out


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

    def same_as(self, other: BoundaryCounts) -> bool:
        """Every count equal (the arrays make `==` ambiguous)."""
        return all(
            np.array_equal(getattr(self, name), getattr(other, name))
            for name in ("pred_total", "pred_matched", "gt_total", "gt_matched")
        )

    def __add__(self, other: BoundaryCounts) -> BoundaryCounts:
        return BoundaryCounts(
            self.pred_total + other.pred_total,
            self.pred_matched + other.pred_matched,
            self.gt_total + other.gt_total,
            self.gt_matched + other.gt_matched,
        )


@dataclass(frozen=True)
class BoundaryInput:
    """One image of a two-outcome sweep, as boundary counting reads it.

    Attributes:
        best_id: (H, W) integer label of a pixel while foreground (K = none).
        buckets: (H, W) integer; the pixel is foreground for grid indices j < bucket.
        gt: (H, W) uint8 ground truth.
        theta: tolerance in pixels.
    """

    best_id: torch.Tensor
    buckets: torch.Tensor
    gt: torch.Tensor
    theta: float


@dataclass(frozen=True)
class _Layout:
    """A batch of images as (B, H, W) arrays, each image at the top left of its slice and
    padded to the batch's largest height and width; and, for reading tolerance disks, the
    same planes flattened with a margin of `reach` (>= 1) pixels all round, so a pixel
    plus any disk offset stays inside its own plane. Padding and margin hold values no
    reduction picks."""

    images: int
    height: int
    width: int
    reach: int
    filled: bool  # every image has the layout's height and width: no padding

    @property
    def row_length(self) -> int:
        return self.width + 2 * self.reach

    @property
    def size(self) -> int:
        """Elements of one image's plane with its margin."""
        return (self.height + 2 * self.reach) * self.row_length

    def stack(self, planes: list[torch.Tensor], fill: int) -> torch.Tensor:
        """(B, H, W) int32: the (h, w) planes, padded with `fill`."""
        import torch

        if len(planes) == 1:
            return planes[0].to(torch.int32).unsqueeze(0)
        if self.filled:
            return torch.stack(planes).to(torch.int32)
        out = torch.full((self.images, self.height, self.width), fill, dtype=torch.int32,
                         device=planes[0].device)  # fmt: skip
        for b, plane in enumerate(planes):
            out[b, : plane.shape[0], : plane.shape[1]] = plane
        return out

    def with_margin(self, values: torch.Tensor, fill: int) -> torch.Tensor:
        """(B * size,) int32: (B, H, W) `values` inside a margin of `fill`."""
        import torch

        r = self.reach
        out = torch.full((self.images, self.height + 2 * r, self.row_length), fill,
                         dtype=torch.int32, device=values.device)  # fmt: skip
        out[:, r : r + self.height, r : r + self.width] = values
        return out.reshape(-1)

    def plane_index(self, device: torch.device) -> torch.Tensor:
        """(H, W) int32: each pixel's index in its plane with the margin."""
        import torch

        r = self.reach
        rows = torch.arange(r, r + self.height, dtype=torch.int32, device=device)
        columns = torch.arange(r, r + self.width, dtype=torch.int32, device=device)
        return rows[:, None] * self.row_length + columns

    def edge(self, inside: torch.Tensor | None, device: torch.device) -> torch.Tensor:
        """(B, H, W) bool: each image's own border pixels (`inside`: the image pixels,
        None when nothing is padded)."""
        import torch

        if inside is not None:
            return inside & _differs_from_neighbour(inside)
        shape = (self.images, self.height, self.width)
        edge = torch.zeros(shape, dtype=torch.bool, device=device)
        edge[:, 0] = edge[:, -1] = True
        edge[:, :, 0] = edge[:, :, -1] = True
        return edge


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
    """Boundary counts of one image at every grid index of a two-outcome sweep
    (`batch_boundary_counts` of one image; the arguments are `BoundaryInput`'s)."""
    (counts,) = batch_boundary_counts(
        [BoundaryInput(best_id, buckets, gt, theta)],
        num_points=num_points,
        num_classes=num_classes,
        background_label=background_label,
        void_label=void_label,
    )
    return counts


def batch_boundary_counts(
    images: list[BoundaryInput],
    *,
    num_points: int,
    num_classes: int,
    background_label: int,
    void_label: int | None = 255,
) -> list[BoundaryCounts]:
    """Boundary counts at every grid index of a two-outcome sweep, for a batch of images
    of any sizes and tolerances at once: one set of kernels and three host
    synchronisations (`nonzero`, `unique`, the copy back) serve the whole batch.

    Args:
        images: the images, on one device.
        num_points: T, grid points (internal order).
        num_classes: K.
        background_label: label after the bucket (0, or K = unlabelled, not scored).
        void_label: ground-truth value excluded from precision (None: no void).

    Returns:
        each image's counts, in order; the same integers whatever the batch.
    """
    import torch

    k, t = num_classes, num_points
    device = images[0].best_id.device
    disks = [disk_offsets(image.theta) for image in images]  # on the host: no GPU sync
    sizes = {tuple(image.gt.shape) for image in images}
    layout = _Layout(
        len(images),
        max(height for height, _ in sizes),
        max(width for _, width in sizes),
        max(1, *(int(dy.abs().max()) for dy, _ in disks)),
        filled=len(sizes) == 1,
    )
    plane = layout.size
    best = layout.stack([image.best_id for image in images], -1)  # -1: padding
    bucket = layout.stack([image.buckets.clamp(max=t) for image in images], t)
    gt = layout.stack([image.gt for image in images], k)  # k: padding, no class
    inside = None if layout.filled else best >= 0
    # a pixel whose best class is the background label (a hard label map's background)
    # is background at every grid index: one background set, however it got there
    bucket = torch.where(best == background_label, 0, bucket)

    # Each pixel's interval as a boundary of its best class, and of the background.
    fg_low = torch.where(
        _differs_from_neighbour(best), 0, _neighbour_extreme(bucket, t, torch.minimum)
    )
    fg_low = torch.minimum(fg_low, bucket)
    edge = layout.edge(inside, device)
    bg_high = torch.where(edge, t, _neighbour_extreme(bucket, 0, torch.maximum))
    bg_high = torch.maximum(bg_high, bucket)
    if inside is not None:  # padding: values no reduction picks (fg low T, bg high 0)
        fg_low = torch.where(inside, fg_low, t)
        bg_high = torch.where(inside, bg_high, 0)
    scores_background = background_label < k

    # Ground-truth boundary pixels (flat indices in the planes with their margins), and
    # for each its disk: the largest disk of the batch, with offsets beyond the image's
    # own tolerance sent to its plane's corner, a margin pixel.
    b, y, x = torch.nonzero(_differs_from_neighbour(gt) & (gt < k), as_tuple=True)
    gt_class = gt[b, y, x]
    b, y, x = b.int(), y.int(), x.int()
    centres = b * plane + (y + layout.reach) * layout.row_length + x + layout.reach
    pair = b * (k + 1) + gt_class  # (image, class), with a row for "none"
    gt_key = pair - b  # (image, class)
    gt_total = value_counts(gt_key, layout.images * k).view(layout.images, k)
    widest = max(range(len(images)), key=lambda i: disks[i][0].numel())
    dy, dx = disks[widest]
    offsets = (dy * layout.row_length + dx).to(device, torch.int32)
    disk = centres[:, None] + offsets
    within = torch.stack([in_disk(dy, dx, image.theta) for image in images])
    if not within.all():  # only in a batch: one image's disk is the widest
        disk = torch.where(within.to(device).index_select(0, b), disk, (b * plane)[:, None])

    # Which (image, class, pixel) lie within theta of a ground-truth boundary of that
    # class: one near plane per (image, class) with such a boundary, and an all-false
    # plane for every other pair.
    present = torch.unique(pair)
    plane_of = torch.full((layout.images * (k + 1),), present.numel(), dtype=torch.int32,
                          device=device)  # fmt: skip
    plane_of[present.long()] = torch.arange(present.numel(), dtype=torch.int32, device=device)
    near_base = (plane_of.index_select(0, pair) - b) * plane  # disks within their own plane
    near = torch.zeros((present.numel() + 1) * plane, dtype=torch.bool, device=device)
    near[near_base[:, None] + disk] = True

    # Precision: difference arrays over each pixel's intervals (empty ones cancel). A
    # pixel counts in one row, (its image, its class, whether a ground-truth boundary of
    # that class lies within theta); a class's total is the sum of its two rows.
    counted = inside
    if void_label is not None:
        counted = gt != void_label if counted is None else counted & (gt != void_label)
    local = layout.plane_index(device)
    size = layout.images * (k + 1) * 2 * (t + 1)
    diff = torch.zeros(size, dtype=torch.int64, device=device)
    foreground = best if counted is None else torch.where(counted, best, k)  # best <= k
    intervals = [(foreground, fg_low, bucket)]
    if scores_background:
        background = torch.full_like(best, background_label)  # int32 rows, as foreground's
        intervals.append((background if counted is None else torch.where(counted, background, k),
                          bucket, bg_high))  # fmt: skip
    image_rows = (k + 1) * torch.arange(layout.images, dtype=torch.int32, device=device)
    for row, low, high in intervals:
        if layout.images > 1:  # each image's own rows
            row = row + image_rows.view(-1, 1, 1)
        near_plane = plane_of.index_select(0, row.reshape(-1)).view(row.shape)
        is_near = near.index_select(0, (near_plane * plane + local).reshape(-1))
        cell = torch.add(row * (2 * (t + 1)), is_near.view(row.shape), alpha=t + 1)
        diff += value_counts((cell + low).reshape(-1), size)
        diff -= value_counts((cell + high).reshape(-1), size)
    counts = diff.view(layout.images, k + 1, 2, t + 1)[:, :k].cumsum(3)[..., :t]
    pred_total, pred_matched = counts.sum(2), counts[:, :, 1]

    # Recall: per ground-truth boundary pixel, the one interval of grid indices at which
    # its disk holds a matching predicted boundary pixel, summed per (image, class) as a
    # difference array over the grid.
    planes = [layout.with_margin(v, fill) for v, fill in ((best, -1), (fg_low, t), (bucket, t),
                                                           (bg_high, 0))]  # fmt: skip
    low, high = _covered_intervals(
        planes, disk, gt_class,
        background_label if scores_background else -1,
    )  # fmt: skip
    row = gt_key * (t + 1)
    size = layout.images * k * (t + 1)
    starts = value_counts(row + low, size)
    ends = value_counts(row + torch.maximum(low, high), size)  # empty: cancels
    gt_matched = (starts - ends).view(layout.images, k, t + 1).cumsum(2)[..., :t]
    found = [x.cpu().numpy() for x in (pred_total, pred_matched, gt_total, gt_matched)]
    return [BoundaryCounts(*(x[b] for x in found)) for b in range(layout.images)]


def _covered_intervals(
    planes: tuple[torch.Tensor, ...],
    disk: torch.Tensor,
    gt_class: torch.Tensor,
    background_label: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(N,) [low, high): the grid indices at which ground-truth boundary pixel n has a
    same-class predicted boundary pixel within theta.

    That set is one interval. Along the grid a class's predicted set S_j only shrinks
    (the background's only grows), and the tolerance disk clipped to the image is
    4-connected. When the disk holds pixels both in and out of S_j, a path between them
    inside the disk leaves S_j at a boundary pixel: covered. When it holds no pixel of
    S_j: not covered. When it lies inside S_j: covered while one of its pixels is a
    boundary pixel. For a foreground class c this gives [min fg_low, max bucket of the
    pixels with best == c) over the disk (a disk that mixes classes holds a class-c
    pixel next to another class, whose fg_low is 0); for the background,
    [min bucket, max bg_high).

    Args:
        planes: four flat int32 planes in `_Layout`: best class, fg low, bucket (= fg
            high and bg low), bg high; outside the images they hold values no reduction
            picks (class -1, fg low T, bucket T, bg high 0).
        disk: (N, D) flat indices of each ground-truth boundary pixel's disk.
        gt_class: (N,) its class.
    """
    import torch

    n = disk.shape[0]
    if n == 0:
        empty = torch.zeros(0, dtype=torch.int32, device=disk.device)
        return empty, empty
    label, fg_low, bucket, bg_high = planes

    def near(which: torch.Tensor, *values: torch.Tensor) -> list[torch.Tensor]:
        """(len(which), D) values of each plane in the disks of ground-truth pixels `which`."""
        index = disk.index_select(0, which)
        flat = index.reshape(-1)
        return [v.index_select(0, flat).view(index.shape) for v in values]

    # each group gathers only the planes it needs (two for background, three otherwise)
    is_background = gt_class == background_label
    low = torch.empty(n, dtype=torch.int32, device=disk.device)
    high = torch.empty_like(low)
    background = is_background.nonzero().squeeze(1)
    bucket_near, bg_high_near = near(background, bucket, bg_high)
    low[background], high[background] = bucket_near.amin(1), bg_high_near.amax(1)
    classes = (~is_background).nonzero().squeeze(1)
    label_near, fg_low_near, bucket_near = near(classes, label, fg_low, bucket)
    same = label_near == gt_class.index_select(0, classes)[:, None]
    low[classes] = fg_low_near.amin(1)
    high[classes] = torch.where(same, bucket_near, 0).amax(1)
    return low, high


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

    Raises:
        InputError: naming the argument: an empty or non-integer map, a label outside
            0..`MAX_LABEL`, a bad tolerance or mode.
    """
    import torch

    if mode not in ("default", "matlab"):
        raise InputError(f"bfscore mode {mode!r}: use 'default' or 'matlab'")
    if (
        isinstance(tolerance_px, bool)
        or not isinstance(tolerance_px, numbers.Real)
        or not math.isfinite(tolerance_px)
        or not tolerance_px > 0
    ):
        raise InputError(
            f"`tolerance_px` must be a positive finite number of pixels, got {tolerance_px!r:.30}"
        )
    pred_t, gt_t = _label_map(pred, "pred"), _label_map(gt, "gt")
    if pred_t.shape != gt_t.shape or pred_t.dim() != 2:
        raise InputError(
            f"pred {tuple(pred_t.shape)} and gt {tuple(gt_t.shape)} must be equal 2-D shapes"
        )
    void = 255 if mode == "default" else None
    values = torch.cat([pred_t.flatten(), gt_t.flatten()])
    if void is not None:
        values = values[values != void]
    if classes is None:
        classes = [int(c) for c in torch.unique(values)]
    elif not all(isinstance(c, numbers.Integral) and not isinstance(c, bool)
                 and 0 <= c <= MAX_LABEL for c in classes):  # fmt: skip
        raise InputError(f"`classes` must be non-negative integer class ids up to {MAX_LABEL}, got "
                         f"{classes!r:.60}")  # fmt: skip
    num_classes = max([*classes, int(values.max()) if values.numel() else 0]) + 1
    counts = sweep_boundary_counts(
        pred_t,
        torch.ones_like(pred_t),
        gt_t,
        num_points=1,
        num_classes=num_classes,
        background_label=num_classes,
        theta=within_diagonal(float(tolerance_px), *pred_t.shape),
        void_label=void,
    )
    f, _, _ = class_scores(counts, matlab=mode == "matlab")
    scores = f[classes, 0]
    valid = scores[~np.isnan(scores)]
    return scores, float(valid.mean()) if valid.size else float("nan")


def _label_map(labels: object, name: str) -> torch.Tensor:
    """A non-empty (H, W) map of integer labels in 0..`MAX_LABEL` as int64, or an
    InputError naming `name` (counts are kept per label value up to the largest, so a
    label of 2**40 would ask for terabytes)."""
    import torch

    array = np.asarray(labels)
    if array.dtype.kind not in "biu":
        raise InputError(f"`{name}` must hold integer labels, got dtype {array.dtype}")
    if array.size == 0:
        raise InputError(f"`{name}` is empty (shape {array.shape})")
    if array.dtype.kind == "i" and array.min() < 0:
        raise InputError(f"`{name}` holds a negative label ({int(array.min())})")
    if array.max() > MAX_LABEL:
        raise InputError(f"`{name}` holds label {int(array.max())}, above {MAX_LABEL}: bfscore "
                         "keeps counts per label value, so map the labels to 0..K-1 first "
                         "(np.unique(..., return_inverse=True))")  # fmt: skip
    return torch.as_tensor(array).long()
