"""Additive integer histograms over (ground-truth class, best class, grid buckets).

Only the (gt, best) pairs that occur get a row, so memory grows with the pairs seen, not
with K^2; the state merges by summation (per image, per worker, per machine).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

    from wsssbed.eval.rules import PixelStates


@dataclass
class PairCounts:
    """Counts of one image or of a whole run: torch tensors as `count_pairs` makes them
    (on its device), numpy arrays from the fused CPU path and for a run's totals.

    Attributes:
        codes: (P,) int64 pair codes `gt * (K + 1) + best` (best = K means "no class").
        hist: (P, *bucket_shape) int64 pixel counts per bucket.
    """

    codes: torch.Tensor | np.ndarray
    hist: torch.Tensor | np.ndarray


def as_numpy(values: torch.Tensor | np.ndarray) -> np.ndarray:
    """A tensor (on any device) or an array, as a numpy array on the host."""
    return values if isinstance(values, np.ndarray) else values.cpu().numpy()


def value_counts(values: torch.Tensor, size: int) -> torch.Tensor:
    """(size,) int64: how often each of 0..size-1 occurs in the integer tensor `values`
    (every value must lie in that range).

    `torch.bincount` on the CPU. On CUDA a scatter-add into `size` zeros instead, since
    bincount reads the maximum back to the host to size its output, a synchronisation
    per call.
    """
    import torch

    if values.is_cuda:
        flat = values.reshape(-1)
        counts = torch.zeros(size, dtype=torch.int64, device=values.device)
        return counts.index_add_(0, flat, torch.ones_like(flat, dtype=torch.int64))
    return torch.bincount(values, minlength=size)


DENSE_LIMIT = 1 << 22  # histogram cells above which only occurring pairs get a row


def count_pairs(
    gt: torch.Tensor,
    states: PixelStates,
    bucket_shape: tuple[int, ...],
    num_classes: int,
    ignore_index: int = 255,
) -> PairCounts:
    """Histogram one image's labelled pixels by (gt, best class, buckets).

    Args:
        gt: (H, W) uint8 ground truth.
        states: the rule's per-pixel best class and buckets.
        bucket_shape: buckets per axis.
        num_classes: K.
    """
    import torch

    k = num_classes
    cells = int(np.prod(bucket_shape))
    flat = states.buckets[0].reshape(-1)
    for bucket, size in zip(states.buckets[1:], bucket_shape[1:]):
        flat = flat * size + bucket.reshape(-1)
    best = states.best_id.reshape(-1)
    pairs = (k + 1) * (k + 1)
    if pairs * cells <= DENSE_LIMIT:
        # void pixels go to an extra ground-truth row k that is dropped afterwards
        rows = torch.arange(256, dtype=torch.int32, device=gt.device).clamp_(max=k)
        rows[ignore_index] = k
        gt_row = rows.index_select(0, gt.reshape(-1).to(torch.int32))
        key = (gt_row * (k + 1) + best) * cells + flat
        hist = value_counts(key, pairs * cells).view(pairs, cells)[: k * (k + 1)]
        present = hist.sum(1).nonzero().squeeze(1)
        return PairCounts(present, hist.index_select(0, present).view(-1, *bucket_shape))
    valid = gt.reshape(-1) != ignore_index
    codes = gt.reshape(-1)[valid].long() * (k + 1) + best[valid].long()
    flat = flat[valid].long()
    present = value_counts(codes, k * (k + 1)).nonzero().squeeze(1)
    slot = torch.full((k * (k + 1),), -1, dtype=torch.int64, device=gt.device)
    slot[present] = torch.arange(present.numel(), device=gt.device)
    hist = value_counts(slot[codes] * cells + flat, present.numel() * cells)
    return PairCounts(present, hist.view(present.numel(), *bucket_shape))


class PairHistogram:
    """Running sum of `PairCounts` (the sweep's additive state), in numpy on the CPU.

    One row per pair code seen, in order of first appearance; the rows grow by doubling.
    Adding an image is one dict lookup per pair and one fancy-index add.
    """

    def __init__(self, bucket_shape: tuple[int, ...]) -> None:
        self.bucket_shape = bucket_shape
        self._rows: dict[int, int] = {}
        self._hist = np.zeros((0, *bucket_shape), dtype=np.int64)

    def add(self, counts: PairCounts) -> None:
        """Add one image's (or one shard's) counts."""
        rows = self._rows
        index = [rows.setdefault(code, len(rows)) for code in as_numpy(counts.codes).tolist()]
        if len(rows) > self._hist.shape[0]:
            grown = np.zeros((max(len(rows), 2 * self._hist.shape[0]), *self.bucket_shape),
                             dtype=np.int64)  # fmt: skip
            grown[: self._hist.shape[0]] = self._hist
            self._hist = grown
        hist = as_numpy(counts.hist)
        if len(set(index)) == len(index):
            self._hist[index] += hist
        else:  # a code listed twice (wsssbed's own counts never do)
            np.add.at(self._hist, index, hist)

    def merge(self, other: PairHistogram) -> None:
        """Add another histogram's totals."""
        self.add(other.result())

    def result(self) -> PairCounts:
        """Totals as numpy arrays, rows sorted by pair code (equal inputs, equal arrays)."""
        codes = np.fromiter(self._rows, dtype=np.int64, count=len(self._rows))
        order = np.argsort(codes)
        return PairCounts(codes[order], self._hist[: codes.shape[0]][order])
