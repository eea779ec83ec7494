"""The fused CPU path of `bg-threshold` sweeps: one image read, checked and reduced to its
pair histogram with as few passes over its pixels as the checks allow.

The same inputs, checks (in the same order of precedence), error messages and integers as
`SweepInputs.load` followed by `reduce_image` (the general path), with less work:

- **mask**: decoded once, read-only. With an identity label mapping (VOC) the stored
  values are the class ids, so they are hashed as they are and neither mapped nor copied;
  a value the dataset does not define lands in an error row of the histogram (then
  `read_gt` reports it), and the image-level labels are the histogram's non-empty
  ground-truth rows. Other mappings (and a dataset class that overrides `read_gt`) go
  through `read_gt`.
- **maps**: `MapFormat.read_stored`: float32 maps in the buffer the file was read into,
  8-bit maps as bytes (u scored as u / 255, strictly increasing in u, so a 256-entry
  bucket table); no sorting copy.
- **one pass**: best class (the first maximal map in ascending class id), its bucket and
  the histogram cell, by the compiled kernels of `fused_jit` (numba), or by numpy in a
  few whole-array passes; the range and finiteness check is one vectorised pass over the
  scores' bits (`out_of_range`), and a failure is reported by `check_values`.
- **buckets**: `BitLut`, exact `#{t : t < score}` from the float's bits, no float
  arithmetic per pixel.

`FusedPlan.build` says whether a job takes this path: the `bg-threshold` rule on the CPU,
reading no pictures. `WSSSBED_FUSED=0` forces the general path; `WSSSBED_JIT=0` / `=1`
forbids / forces the compiled kernels (default: `use_jit` decides by measured cost).
"""

from __future__ import annotations

import functools
import os
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from wsssbed.activation import map_format
from wsssbed.activation.base import MapFormat, check_labels, check_size_and_keys, check_values
from wsssbed.datasets.fingerprint import image_hash
from wsssbed.datasets.local import LocalDataset
from wsssbed.errors import InputError

if TYPE_CHECKING:
    from wsssbed.eval.boundary import BoundaryCounts
    from wsssbed.eval.inputs import SweepInputs
    from wsssbed.eval.job import SweepJob
    from wsssbed.eval.reduce import ImageResult

FLOAT_ONE_BITS = 0x3F800000  # 1.0f: valid scores' bits are at most these (or -0.0's)
NEGATIVE_ZERO_BITS = 0x80000000
CELL_SHIFT = 11  # cells of 2**11 floats: a 2 MiB table; fastest of 2**11..2**17 measured
CHUNK = 4096  # pixels per chunk of the compiled several-maps argmax


class BitLut:
    """Exact `#{t : t < v}` for float32 scores v in [0, 1], from v's bits.

    The bits of a non-negative float32, read as an integer, grow with its value, so
    `bits >> CELL_SHIFT` names a cell of consecutive floats. A cell with no threshold
    inside has one bucket for all its values (`table[cell]`); a cell with thresholds
    inside stores `~b`, b the count below its first value, and the bucket is b plus the
    cell's thresholds below v (a short scan of the sorted thresholds). The table comes
    from `np.searchsorted` over each cell's first and last value, so every bucket is the
    integer `Bucketizer.count_below` gives, for any grid (repeated values included).

    Attributes:
        thresholds: (T,) float32, sorted.
        table: (cells,) int32 (see above); cells cover [0, 1].
        max_cell: the last cell (larger bits are clamped to it: such scores are refused).
    """

    def __init__(self, thresholds: np.ndarray) -> None:
        self.thresholds = np.sort(np.asarray(thresholds, dtype=np.float32))
        self.shift = CELL_SHIFT
        self.max_cell = FLOAT_ONE_BITS >> CELL_SHIFT
        first = np.arange(self.max_cell + 1, dtype=np.int64) << CELL_SHIFT
        last = np.minimum(first + (1 << CELL_SHIFT) - 1, FLOAT_ONE_BITS)
        low = np.searchsorted(self.thresholds, first.astype(np.uint32).view(np.float32))
        high = np.searchsorted(self.thresholds, last.astype(np.uint32).view(np.float32))
        self.table = np.where(high == low, low, ~low).astype(np.int32)

    def count_below(self, scores: np.ndarray) -> np.ndarray:
        """(N,) int32 buckets of (N,) float32 `scores` (a score outside [0, 1] gets some
        bucket; it is refused elsewhere)."""
        bits = scores.view(np.uint32) & np.uint32(0x7FFFFFFF)
        cell = np.minimum(bits >> np.uint32(self.shift), np.uint32(self.max_cell))
        bucket = self.table.take(cell)
        flagged = np.flatnonzero(bucket < 0)
        if flagged.size:
            bucket[flagged] = np.searchsorted(self.thresholds, scores[flagged], side="left")
        return bucket

    def byte_table(self) -> np.ndarray:
        """(256,) int32 bucket of each 8-bit value u, scored as float32(u) / 255."""
        values = np.arange(256, dtype=np.float32) / np.float32(255.0)
        return np.searchsorted(self.thresholds, values).astype(np.int32)


@dataclass
class FusedPlan:
    """What the fused path needs of a job, built once before any worker starts.

    Attributes:
        num_classes: K of the dataset (histogram rows K: void, K + 1: undefined value).
        first_foreground: the dataset's first foreground class (image-level labels).
        rows: (256,) int32 histogram row of each mask value (a mapped mask's, which for
            an identity mapping is the stored one).
        identity: the mask is read as stored (identity mapping, `read_gt` not overridden).
        lut: the rule's thresholds; byte_table: their `BitLut.byte_table`.
        format: the job's map format.
        jit: the compiled kernels (the `fused_jit` module), or None for numpy.
    """

    num_classes: int
    first_foreground: int
    rows: np.ndarray
    identity: bool
    lut: BitLut
    byte_table: np.ndarray
    format: MapFormat
    jit: object | None = None

    @property
    def buckets(self) -> int:
        return self.lut.thresholds.shape[0] + 1

    @classmethod
    def build(cls, job: SweepJob) -> FusedPlan | None:
        """The plan of `job` on the CPU, or None when it takes the general path."""
        from wsssbed.eval.rules.bg_threshold import BackgroundThreshold

        if os.environ.get("WSSSBED_FUSED") == "0" or job.images:
            return None
        if type(job.rule) is not BackgroundThreshold:
            return None
        spec = job.dataset.spec
        k = spec.num_classes
        rows = np.full(256, k + 1, dtype=np.int32)  # values the dataset does not define
        rows[:k] = np.arange(k)
        rows[spec.ignore_index] = k
        lut = BitLut(job.rule.internal_array(0))
        plan = cls(
            num_classes=k,
            first_foreground=spec.first_foreground,
            rows=rows,
            identity=job.dataset.gt_source.mapping == "identity"
            and type(job.dataset).read_gt is LocalDataset.read_gt,
            lut=lut,
            byte_table=lut.byte_table(),
            format=map_format(job.activation_format),
        )
        if os.environ.get("WSSSBED_JIT") == "1" or "wsssbed.eval.fused_jit" in sys.modules:
            plan.use_jit()  # forced, or loaded already: free
        return plan

    def use_jit(self) -> bool:
        """Load the compiled kernels (numba's cache, or a first compile of about 2 s),
        unless numba is missing or WSSSBED_JIT=0. Returns whether they are in use."""
        if self.jit is None and os.environ.get("WSSSBED_JIT") != "0":
            try:
                from wsssbed.eval import fused_jit
            except ImportError:  # numba is optional: the numpy passes give the same counts
                return False
            _compile(fused_jit)
            self.jit = fused_jit
        return self.jit is not None


def _compile(jit) -> None:
    """Compile (or load) each kernel's one signature now, in this process, so forked
    workers inherit them: arrays are always passed read-only (file buffers are), so
    fresh arrays share the signature."""
    lut = BitLut(np.zeros(1, np.float32))
    gt, scores, planes = (_readonly(np.zeros(shape, dtype)) for shape, dtype in
                          ((4, np.uint8), ((1, 4), np.float32), ((1, 4), np.uint8)))  # fmt: skip
    int32, hist = np.zeros(4, np.int32), np.zeros(64, np.int32)
    order = _readonly(np.zeros(1, np.int64))
    jit.pair_histogram_f32(gt, int32, scores, scores.view(np.int32), order, lut.shift,
                           lut.max_cell, lut.table, lut.thresholds, 2, hist, int32, int32,
                           *_scratch())  # fmt: skip
    jit.pair_histogram_u8(gt, int32, planes, order, int32, 2, hist, int32, int32)
    square = np.zeros((2, 2), np.int32)
    offsets = np.zeros(1, np.int64)
    jit.boundary_counts(square, np.zeros(1, np.int32), square,
                        _readonly(np.zeros((2, 2), np.uint8)), 1, 1, 0, 255, offsets, offsets,
                        np.zeros((2, 2, 2), np.int64), np.zeros((1, 2), np.int64),
                        np.zeros((1, 2), np.int64), np.zeros(1, np.int64))  # fmt: skip


def _readonly(array: np.ndarray) -> np.ndarray:
    view = array.view()
    view.flags.writeable = False
    return view


@functools.cache
def _scratch() -> tuple[np.ndarray, np.ndarray]:
    """This process's scratch of the several-maps kernel: best score and its column."""
    return np.empty(CHUNK, np.float32), np.empty(CHUNK, np.int32)


@dataclass
class FusedImage:
    """One image reduced by the fused path, in numpy (cheap to send between processes).

    Attributes:
        codes: (P,) int64 pair codes `gt * (K + 1) + best`, ascending.
        hist: (P, T + 1) int64 pixel counts per bucket.
        gt_hash: `image_hash` of the mapped mask.
        shape: (H, W).
        boundary: the image's boundary counts, when the job asks for them.
    """

    image_id: str
    codes: np.ndarray
    hist: np.ndarray
    gt_hash: bytes
    shape: tuple[int, int]
    boundary: BoundaryCounts | None = None

    def result(self) -> ImageResult:
        """The `ImageResult` the general path gives for this image (its counts as numpy)."""
        from wsssbed.eval.boundary import image_scores
        from wsssbed.eval.histogram import PairCounts
        from wsssbed.eval.reduce import ImageResult

        pairs = PairCounts(self.codes, self.hist)
        height, width = self.shape
        result = ImageResult(self.image_id, pairs, gt_hash=self.gt_hash, pixels=height * width)
        if self.boundary is not None:
            result.boundary = self.boundary
            result.boundary_scores = image_scores(self.boundary)
        return result


def reduce_fused(inputs: SweepInputs, image_id: str) -> FusedImage:
    """Read, check and reduce one image (see the module docstring).

    Raises:
        InputError: the general path's, in its order: the mask's, the map file's, the
            maps' size and keys, labels, values.
    """
    job, plan = inputs.job, inputs.fused
    spec = job.dataset.spec
    k = plan.num_classes
    gt = job.dataset.read_stored_gt(image_id) if plan.identity else job.dataset.read_gt(image_id)
    shape = gt.shape
    try:
        stored = plan.format.read_stored(
            job.activation, image_id, spec, inputs.keys.get(image_id), shape
        )
        where = stored.where
        check_size_and_keys(stored.planes.shape, stored.class_ids, shape, spec, where)
    except InputError:
        if plan.identity:
            job.dataset.read_gt(image_id)  # an undefined mask value is reported first
        raise
    count = stored.class_ids.shape[0]
    columns = max(count, 1)
    planes = stored.planes
    if not stored.quantised and (planes.dtype != np.float32 or not planes.flags.c_contiguous):
        planes = np.ascontiguousarray(planes, dtype=np.float32)  # float64/16, big-endian
    gt_flat = gt.reshape(-1)
    planes = planes.reshape(count, gt_flat.shape[0])
    hist = np.zeros((k + 2) * columns * plan.buckets, dtype=np.int32)
    keep = job.boundary is not None
    column, bucket, bad = _pair_histogram(plan, gt_flat, planes, stored.order, hist, keep)
    cells = hist.reshape(k + 2, columns, plan.buckets)
    pair_totals = cells.sum(2, dtype=np.int64)  # (K + 2, columns)
    row_totals = pair_totals.sum(1)
    if row_totals[k + 1]:  # values the dataset does not define: the mask's own error
        job.dataset.read_gt(image_id)
        raise AssertionError("unreachable: read_gt refuses values the dataset lacks")
    if inputs.label_lists is not None:
        labels = inputs.label_lists[image_id]
    else:
        present = np.flatnonzero(row_totals[:k])
        labels = tuple(int(c) for c in present if c >= plan.first_foreground)
    check_labels(stored.class_ids, labels, spec, where)
    if bad:
        check_values(stored.as_maps().cams, where)
        raise AssertionError("unreachable: check_values refuses what the kernel flagged")
    gt_rows, pair_columns = np.nonzero(pair_totals[:k])
    best = stored.class_ids[pair_columns] if count else np.full(gt_rows.shape, k, np.int64)
    codes = gt_rows.astype(np.int64) * (k + 1) + best  # ascending: rows, then class ids
    image = FusedImage(image_id, codes, cells[gt_rows, pair_columns].astype(np.int64),
                       image_hash(gt), shape)  # fmt: skip
    if keep:
        ids = np.append(stored.class_ids, k).astype(np.int32)  # column -> class (none: K)
        image.boundary = boundary_counts(
            plan.jit, column.reshape(shape), ids, bucket.reshape(shape), gt,
            points=plan.buckets - 1, num_classes=k,
            background_label=0 if spec.has_background else k, theta=job.boundary.pixels(*shape),
        )  # fmt: skip
    return image


def _pair_histogram(
    plan: FusedPlan,
    gt: np.ndarray,
    planes: np.ndarray,
    order: np.ndarray,
    hist: np.ndarray,
    keep: bool,
) -> tuple[np.ndarray, np.ndarray, bool]:
    """Add every pixel to `hist` at cell (rows[gt] * C + column) * buckets + bucket.

    Args:
        gt: (N,) uint8 mask values; planes: (K, N) float32 or uint8 maps (K >= 0);
        order: (K,) plane index of each class, ascending class id (ties: the first).
        hist: ((K + 2) * C * buckets,) int32, C = max(K, 1).
        keep: also return each pixel's column (into `order`) and bucket.

    Returns:
        (N,) int32 columns and buckets (empty unless `keep`), and whether a float score
        is out of range or not finite (`out_of_range`, one vectorised pass).
    """
    n = gt.shape[0]
    rows = plan.rows
    count = order.shape[0]
    order = order.astype(np.int64)
    if count == 0:  # no maps: every pixel below every threshold, best "none"
        cells = rows.take(gt) * plan.buckets
        hist += np.bincount(cells, minlength=hist.shape[0]).astype(np.int32)
        empty = np.zeros(n if keep else 0, np.int32)
        return empty, empty, False
    bad = planes.dtype != np.uint8 and out_of_range(planes)
    if plan.jit is not None:
        column = np.empty(n if keep else 0, np.int32)
        bucket = np.empty_like(column)
        gt, planes, order = _readonly(gt), _readonly(planes), _readonly(order)
        if planes.dtype == np.uint8:
            plan.jit.pair_histogram_u8(gt, rows, planes, order, plan.byte_table, plan.buckets,
                                       hist, column, bucket)  # fmt: skip
        else:
            lut, bits = plan.lut, planes.view(np.int32)
            plan.jit.pair_histogram_f32(gt, rows, planes, bits, order, lut.shift, lut.max_cell,
                                        lut.table, lut.thresholds, plan.buckets, hist, column,
                                        bucket, *_scratch())  # fmt: skip
        return column, bucket, bad
    score = planes[order[0]]
    column = np.zeros(n, np.int32)
    if count > 1:  # the first maximal plane, in class order, wins ties
        score = score.copy()
        for j in range(1, count):
            plane = planes[order[j]]
            column[plane > score] = j
            np.maximum(score, plane, out=score)
    if planes.dtype == np.uint8:
        bucket = plan.byte_table.take(score)
    else:
        bucket = plan.lut.count_below(score)
    cells = (rows.take(gt) * count + column) * plan.buckets + bucket
    hist += np.bincount(cells, minlength=hist.shape[0]).astype(np.int32)
    return column, bucket, bad


def out_of_range(planes: np.ndarray) -> bool:
    """Whether a float32 score is NaN, infinite or outside [0, 1] (-0.0 is in range).

    Read as unsigned integers, the bits of valid scores are at most those of 1.0 but
    for -0.0: one vectorised max, and an exact look only when it is above."""
    bits = planes.view(np.uint32)
    if not bits.size or bits.max() <= FLOAT_ONE_BITS:
        return False
    return bool(((bits > FLOAT_ONE_BITS) & (bits != NEGATIVE_ZERO_BITS)).any())


def boundary_counts(
    jit: object | None,
    column: np.ndarray,
    ids: np.ndarray,
    bucket: np.ndarray,
    gt: np.ndarray,
    *,
    points: int,
    num_classes: int,
    background_label: int,
    theta: float,
) -> BoundaryCounts:
    """`batch_boundary_counts` of one image with best class `ids[column]`, by the
    compiled kernel `jit.boundary_counts`, or by that torch code when `jit` is None.

    Args:
        column: (H, W) int32 index into `ids`, (columns + 1,) int32 class ids (K: none).
        bucket: (H, W) int32; gt: (H, W) uint8; the rest as `BoundaryInput`'s.
    """
    from wsssbed.eval.boundary import BoundaryCounts, BoundaryInput, batch_boundary_counts

    k, t = num_classes, points
    if jit is None:
        import torch

        (counts,) = batch_boundary_counts(
            [BoundaryInput(torch.from_numpy(ids.take(column)), torch.from_numpy(bucket),
                           torch.from_numpy(np.array(gt)), theta)],
            num_points=t, num_classes=k, background_label=background_label,
        )  # fmt: skip
        return counts
    span_dy, span_dx = _disk_rows(theta)
    pred_diff = np.zeros((k + 1, 2, t + 1), np.int64)
    gt_start, gt_end = np.zeros((k, t + 1), np.int64), np.zeros((k, t + 1), np.int64)
    gt_total = np.zeros(k, np.int64)
    jit.boundary_counts(column, ids, bucket, _readonly(gt), t, k, background_label, 255, span_dy,
                        span_dx, pred_diff, gt_start, gt_end, gt_total)  # fmt: skip
    counts = pred_diff[:k].cumsum(2)[..., :t]
    gt_matched = (gt_start - gt_end).cumsum(1)[:, :t]
    return BoundaryCounts(counts.sum(1), counts[:, 1].copy(), gt_total, gt_matched)


@functools.lru_cache(maxsize=64)
def _disk_rows(theta: float) -> tuple[np.ndarray, np.ndarray]:
    """`boundary.disk_offsets(theta)` as rows: (S,) dy and (S,) d, row dy holding the
    offsets dx in [-d, d] (within a row the disk's offsets are contiguous)."""
    from wsssbed.eval.boundary import disk_offsets

    dy, dx = (offsets.numpy() for offsets in disk_offsets(theta))
    rows = np.unique(dy)
    reach = np.array([dx[dy == row].max() for row in rows])
    return rows.astype(np.int64), reach.astype(np.int64)
