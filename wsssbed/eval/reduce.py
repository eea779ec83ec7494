"""One image reduced to integer counts, and the additive state those counts sum into."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from wsssbed.datasets.fingerprint import gt_digest
from wsssbed.datasets.spec import DatasetSpec
from wsssbed.eval.boundary import (
    BoundaryCounts,
    BoundaryInput,
    ImageBoundaryScores,
    Tolerance,
    batch_boundary_counts,
    image_scores,
)
from wsssbed.eval.histogram import PairCounts, PairHistogram, count_pairs
from wsssbed.eval.rules import Rule
from wsssbed.eval.sample import EvalSample


@dataclass
class ImageResult:
    """One image reduced to counts (all on the CPU); `pixels`: H x W of its mask (void
    included, so the run's void ratio is 1 - labelled pixels / pixels)."""

    image_id: str
    pairs: PairCounts
    boundary: BoundaryCounts | None = None
    boundary_scores: ImageBoundaryScores | None = None
    gt_hash: bytes = b""
    pixels: int = 0


@dataclass
class SweepState:
    """Additive state of a sweep: merges by summation across images, workers, machines."""

    bucket_shape: tuple[int, ...]
    num_points: int
    with_boundary: bool
    images: int = 0
    pixels: int = 0  # mask pixels of the images added, void included
    pairs: PairHistogram = field(init=False)
    boundary: BoundaryCounts | None = None
    bf_sums: np.ndarray = field(init=False)  # (3, T): sums of per-image F, P, R
    bf_images: np.ndarray = field(init=False)  # (T,): images with a defined score
    per_image: list[tuple[str, np.ndarray]] = field(default_factory=list)  # `sparse_rows`
    keep_image_scores: bool = False  # a shard: keep per-image BF scores for `merge`
    image_scores: list[np.ndarray] = field(default_factory=list)  # (3, T) each
    gt_hashes: dict[str, bytes] = field(default_factory=dict)  # image id -> mask hash
    workers: int = 0  # worker processes the local loop used (`eval.loop._items`)

    def __post_init__(self) -> None:
        self.pairs = PairHistogram(self.bucket_shape)
        self.bf_sums = np.zeros((3, self.num_points))
        self.bf_images = np.zeros(self.num_points, dtype=np.int64)

    def add(self, result: ImageResult) -> None:
        """Add one image."""
        self.images += 1
        self.pixels += result.pixels
        self.pairs.add(result.pairs)
        self.gt_hashes[result.image_id] = result.gt_hash
        if result.boundary is not None:
            self.boundary = (
                result.boundary if self.boundary is None else self.boundary + (result.boundary)
            )
            scores = result.boundary_scores
            stacked = np.stack([scores.f, scores.precision, scores.recall])
            if self.keep_image_scores:
                self.image_scores.append(stacked)
            else:
                self._add_scores(stacked)

    def _add_scores(self, stacked: np.ndarray) -> None:
        self.bf_sums += np.nan_to_num(stacked, nan=0.0)
        self.bf_images += ~np.isnan(stacked[0])

    @property
    def gt_digest(self) -> str | None:
        """`datasets.fingerprint.gt_digest` of the images added (None if any was in memory)."""
        if not self.gt_hashes or not all(self.gt_hashes.values()):
            return None
        return gt_digest(self.gt_hashes)

    def merge(self, shard: SweepState) -> None:
        """Add a shard's state (shards merged in split order give the local run's bits).

        Integer counts add in any order. Boundary-F score sums are floats, so a shard
        keeps its per-image scores (`keep_image_scores`) and they are added here one
        image at a time, in the same order as a local run adds them.
        """
        self.images += shard.images
        self.pixels += shard.pixels
        self.pairs.merge(shard.pairs)
        self.gt_hashes.update(shard.gt_hashes)
        if shard.boundary is not None:
            self.boundary = (
                shard.boundary if self.boundary is None else self.boundary + shard.boundary
            )
        for stacked in shard.image_scores:
            self._add_scores(stacked)
        self.per_image.extend(shard.per_image)


def reduce_image(
    sample: EvalSample, rule: Rule, spec: DatasetSpec, boundary: Tolerance | None = None
) -> ImageResult:
    """One image -> integer counts (and boundary scores), computed on the sample's device
    and returned on the CPU."""
    (result,) = reduce_batch([sample], rule, spec, boundary)
    return result


def reduce_batch(
    samples: list[EvalSample], rule: Rule, spec: DatasetSpec, boundary: Tolerance | None = None
) -> list[ImageResult]:
    """Images -> their `ImageResult`s, in order, on the CPU (see `reduce_on_device`)."""
    results = []
    for sample, (pairs, counts) in zip(
        samples, reduce_on_device(samples, rule, spec, boundary), strict=True
    ):
        result = ImageResult(sample.image_id, PairCounts(pairs.codes.cpu(), pairs.hist.cpu()),
                             gt_hash=sample.gt_hash, pixels=sample.gt.numel())  # fmt: skip
        if counts is not None:
            result.boundary = counts
            result.boundary_scores = image_scores(counts)
        results.append(result)
    return results


def reduce_on_device(
    samples: list[EvalSample], rule: Rule, spec: DatasetSpec, boundary: Tolerance | None = None
) -> list[tuple[PairCounts, BoundaryCounts | None]]:
    """Each image's pair histogram (left on its device) and boundary counts. The boundary
    counts of the whole batch come from one `batch_boundary_counts` call (on a GPU, one
    set of kernels instead of one per image); each image's counts are those it gets
    alone."""
    k = spec.num_classes
    states = [rule.states(sample, none_class=k) for sample in samples]
    pairs = [count_pairs(sample.gt, s, rule.bucket_shape, k)
             for sample, s in zip(samples, states, strict=True)]  # fmt: skip
    if boundary is None:
        return [(p, None) for p in pairs]
    inputs = [
        BoundaryInput(s.best_id, rule.line_buckets(s), sample.gt, boundary.pixels(*sample.gt.shape))
        for sample, s in zip(samples, states, strict=True)
    ]
    counts = batch_boundary_counts(
        inputs,
        num_points=int(np.prod(rule.shape)),
        num_classes=k,
        background_label=0 if spec.has_background else k,
    )
    return list(zip(pairs, counts, strict=True))
