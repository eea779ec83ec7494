"""The fused CPU path's compiled kernels (numba; imported only when `fused.py` chooses them).

Each kernel does in loops what `fused.py`'s numpy code does in whole-array passes, with
the same integers: it only loads, compares and adds integers (no float arithmetic), so no
compiler setting can change a result. `tests/test_fused.py` runs both.
"""

from __future__ import annotations

import numba
import numpy as np

jit = numba.njit(cache=True, nogil=True, boundscheck=False)


@jit
def _bucket(bits, score, shift, max_cell, table, thresholds):
    """`BitLut.count_below` of one score (`bits`: its float32 bits as a non-negative int)."""
    bucket = table[min((bits & 0x7FFFFFFF) >> shift, max_cell)]
    if bucket < 0:  # thresholds inside the cell: count those below the score
        bucket = ~bucket
        while bucket < thresholds.shape[0] and thresholds[bucket] < score:
            bucket += 1
    return bucket


@jit
def pair_histogram_f32(
    gt, rows, planes, bits, order, shift, max_cell, table, thresholds, buckets, hist,
    column_out, bucket_out, score, column,
):  # fmt: skip
    """Add each pixel to `hist` at (rows[gt] * K + column) * buckets + bucket.

    Args:
        gt: (N,) uint8 stored mask values; rows: (256,) int32 histogram row of each.
        planes: (K, N) float32 maps (K >= 1), `bits` the same memory as int32.
        order: (K,) int64 plane of each class, ascending class id: the first maximal
            plane in this order is the best (a strict `>`, as `best_class`).
        shift, max_cell, table, thresholds: the `BitLut`.
        hist: ((K + 2) * K * buckets,) int32, added to.
        column_out, bucket_out: (N,) int32 outputs, or empty arrays for none.
        score, column: (C,) float32 and int32 scratch (K >= 2).

    Scores outside [0, 1] (refused by the caller, `fused.out_of_range`) land in some
    cell; no index leaves its array.
    """
    n = gt.shape[0]
    count = order.shape[0]
    keep = column_out.shape[0] == n
    first, first_bits = planes[order[0]], bits[order[0]]
    if count == 1:
        for i in range(n):
            b = np.int64(first_bits[i]) & 0xFFFFFFFF
            bucket = _bucket(b, first[i], shift, max_cell, table, thresholds)
            hist[rows[gt[i]] * buckets + bucket] += 1
            if keep:
                column_out[i] = 0
                bucket_out[i] = bucket
        return
    size = score.shape[0]
    score_bits = score.view(np.int32)
    for start in range(0, n, size):  # chunks of C pixels, plane by plane (vectorised)
        m = min(size, n - start)
        head = first[start : start + m]
        for p in range(m):
            score[p] = head[p]
            column[p] = 0
        for j in range(1, count):
            plane = planes[order[j]][start : start + m]
            for p in range(m):
                v = plane[p]
                s = score[p]
                column[p] = j if v > s else column[p]
                score[p] = v if v > s else s
        for p in range(m):
            b = np.int64(score_bits[p]) & 0xFFFFFFFF
            bucket = _bucket(b, score[p], shift, max_cell, table, thresholds)
            i = start + p
            hist[(rows[gt[i]] * count + column[p]) * buckets + bucket] += 1
            if keep:
                column_out[i] = column[p]
                bucket_out[i] = bucket


@jit
def pair_histogram_u8(gt, rows, planes, order, table_u8, buckets, hist, column_out, bucket_out):
    """`pair_histogram_f32` for 8-bit maps (u scored as u / 255, strictly increasing in
    u, so the order and ties of the bytes are those of the scores; always in range):
    `table_u8` (256,) int32 is each byte's bucket."""
    n = gt.shape[0]
    count = order.shape[0]
    keep = column_out.shape[0] == n
    for i in range(n):
        s = planes[order[0], i]
        c = 0
        for j in range(1, count):
            v = planes[order[j], i]
            if v > s:
                s = v
                c = j
        bucket = table_u8[s]
        hist[(rows[gt[i]] * count + c) * buckets + bucket] += 1
        if keep:
            column_out[i] = c
            bucket_out[i] = bucket


@jit
def boundary_counts(
    column, ids, bucket_in, gt, points, k, background_label, void_label, span_dy, span_dx,
    pred_diff, gt_start, gt_end, gt_total,
):  # fmt: skip
    """`boundary.batch_boundary_counts` of one image, in loops: the same intervals and
    difference arrays (see that module for the argument), so the same integers.

    Args:
        column: (H, W) int32 best map of each pixel; ids: (columns + 1,) int32 its class
            (the last: K, none, for an image without maps); bucket_in: (H, W) int32.
        gt: (H, W) uint8 mapped ground truth (classes < K, `void_label`).
        points: T; k: K.
        span_dy, span_dx: (S,) int64: the tolerance disk as rows of offsets, row dy
            spanning dx in [-span_dx, span_dx].
        pred_diff: (K + 1, 2, T + 1) int64, added to: precision intervals per (class,
            near a ground-truth boundary of it); gt_start, gt_end: (K, T + 1) int64,
            recall intervals; gt_total: (K,) int64 ground-truth boundary pixels.
    """
    h, w = gt.shape
    t = points
    best = np.empty((h, w), np.int32)
    bucket = np.empty((h, w), np.int32)
    for y in range(h):
        for x in range(w):
            c = ids[column[y, x]]
            best[y, x] = c
            bucket[y, x] = 0 if c == background_label else min(bucket_in[y, x], t)
    # each pixel's interval as a boundary of its best class [fg_low, bucket) and of the
    # background [bucket, bg_high); the border differs from outside (fg_low 0, bg_high T)
    fg_low = np.zeros((h, w), np.int32)
    bg_high = np.full((h, w), t, np.int32)
    is_gt = np.zeros((h, w), np.bool_)
    for y in range(h):  # the border: a ground-truth boundary wherever labelled
        step = 1 if y == 0 or y == h - 1 else max(w - 1, 1)
        for x in range(0, w, step):
            is_gt[y, x] = gt[y, x] < k
    for y in range(1, h - 1):  # the interior: four neighbours, no branches (vectorised)
        for x in range(1, w - 1):
            label, g, b = best[y, x], gt[y, x], bucket[y, x]
            up, down = bucket[y - 1, x], bucket[y + 1, x]
            left, right = bucket[y, x - 1], bucket[y, x + 1]
            differs = (
                (best[y - 1, x] != label) | (best[y + 1, x] != label)
                | (best[y, x - 1] != label) | (best[y, x + 1] != label)
            )  # fmt: skip
            gt_differs = (
                (gt[y - 1, x] != g) | (gt[y + 1, x] != g) | (gt[y, x - 1] != g)
                | (gt[y, x + 1] != g)
            )  # fmt: skip
            low = min(min(up, down), min(left, right))
            fg_low[y, x] = min(0 if differs else low, b)
            bg_high[y, x] = max(max(max(up, down), max(left, right)), b)
            is_gt[y, x] = gt_differs & (g < k)
    n_gt = 0
    for y in range(h):
        for x in range(w):
            n_gt += is_gt[y, x]
    # ground-truth boundary pixels, and a "near" plane per class that has some: the
    # union of their disks (row spans, clipped to the image)
    ys = np.empty(n_gt, np.int32)
    xs = np.empty(n_gt, np.int32)
    plane_of = np.full(k + 1, -1, np.int32)
    planes = 0
    i = 0
    for y in range(h):
        for x in range(w):
            if is_gt[y, x]:
                ys[i], xs[i] = y, x
                i += 1
                c = gt[y, x]
                gt_total[c] += 1
                if plane_of[c] < 0:
                    plane_of[c] = planes
                    planes += 1
    near = np.zeros((max(planes, 1), h, w), np.bool_)
    for i in range(n_gt):
        y0, x0 = ys[i], xs[i]
        p = plane_of[gt[y0, x0]]
        for s in range(span_dy.shape[0]):
            y = y0 + span_dy[s]
            if 0 <= y < h:
                for x in range(max(0, x0 - span_dx[s]), min(w, x0 + span_dx[s] + 1)):
                    near[p, y, x] = True
    # precision: each counted pixel's intervals, in its (class, near) row
    scores_background = background_label < k
    for y in range(h):
        for x in range(w):
            if gt[y, x] == void_label:
                continue
            b = bucket[y, x]
            row = best[y, x]
            if row < k:
                p = plane_of[row]
                m = 1 if p >= 0 and near[p, y, x] else 0
                pred_diff[row, m, fg_low[y, x]] += 1
                pred_diff[row, m, b] -= 1
            if scores_background:
                p = plane_of[background_label]
                m = 1 if p >= 0 and near[p, y, x] else 0
                pred_diff[background_label, m, b] += 1
                pred_diff[background_label, m, bg_high[y, x]] -= 1
    # recall: per ground-truth boundary pixel, one interval over its disk
    for i in range(n_gt):
        y0, x0 = ys[i], xs[i]
        c = gt[y0, x0]
        low, high = t, 0
        background = c == background_label and scores_background
        for s in range(span_dy.shape[0]):
            y = y0 + span_dy[s]
            if y < 0 or y >= h:
                continue
            start, stop = max(0, x0 - span_dx[s]), min(w, x0 + span_dx[s] + 1)
            if background:
                for x in range(start, stop):
                    low = min(low, bucket[y, x])
                    high = max(high, bg_high[y, x])
            else:
                for x in range(start, stop):
                    low = min(low, fg_low[y, x])
                    high = max(high, bucket[y, x] if best[y, x] == c else 0)
        gt_start[c, low] += 1
        gt_end[c, max(low, high)] += 1
