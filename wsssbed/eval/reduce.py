"""One image reduced to integer counts, and the additive state those counts sum into."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from wsssbed.datasets.spec import DatasetSpec
from wsssbed.eval.boundary import (
    BoundaryCounts,
    ImageBoundaryScores,
    Tolerance,
    image_scores,
    sweep_boundary_counts,
)
from wsssbed.eval.histogram import PairCounts, PairHistogram, count_pairs
from wsssbed.eval.rules import Rule
from wsssbed.eval.sample import EvalSample
from wsssbed.fingerprint import gt_digest


@dataclass
class ImageResult:
    """One image reduced to counts (all on the CPU)."""

    image_id: str
    pairs: PairCounts
    boundary: BoundaryCounts | None = None
    boundary_scores: ImageBoundaryScores | None = None
    gt_hash: bytes = b""


@dataclass
class SweepState:
    """Additive state of a sweep: merges by summation across images, workers, machines."""

    bucket_shape: tuple[int, ...]
    num_points: int
    with_boundary: bool
    images: int = 0
    pairs: PairHistogram = field(init=False)
    boundary: BoundaryCounts | None = None
    bf_sums: np.ndarray = field(init=False)  # (3, T): sums of per-image F, P, R
    bf_images: np.ndarray = field(init=False)  # (T,): images with a defined score
    per_image: list[tuple[str, np.ndarray]] = field(default_factory=list)  # `sparse_rows`
    keep_image_scores: bool = False  # a shard: keep per-image BF scores for `merge`
    image_scores: list[np.ndarray] = field(default_factory=list)  # (3, T) each
    gt_hashes: dict[str, bytes] = field(default_factory=dict)  # image id -> mask hash

    def __post_init__(self) -> None:
        self.pairs = PairHistogram(self.bucket_shape)
        self.bf_sums = np.zeros((3, self.num_points))
        self.bf_images = np.zeros(self.num_points, dtype=np.int64)

    def add(self, result: ImageResult) -> None:
        """Add one image."""
        self.images += 1
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
        """`wsssbed.fingerprint.gt_digest` of the images added (None if any was in memory)."""
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
    pairs, counts = reduce_on_device(sample, rule, spec, boundary)
    result = ImageResult(
        sample.image_id, PairCounts(pairs.codes.cpu(), pairs.hist.cpu()), gt_hash=sample.gt_hash
    )
    if counts is not None:
        result.boundary = counts
        result.boundary_scores = image_scores(counts)
    return result


def reduce_on_device(
    sample: EvalSample, rule: Rule, spec: DatasetSpec, boundary: Tolerance | None = None
) -> tuple[PairCounts, BoundaryCounts | None]:
    """One image's pair histogram (left on the sample's device) and boundary counts."""
    k = spec.num_classes
    states = rule.states(sample, none_class=k)
    pairs = count_pairs(sample.gt, states, rule.bucket_shape, k)
    if boundary is None:
        return pairs, None
    height, width = sample.gt.shape
    counts = sweep_boundary_counts(
        states.best_id,
        rule.line_buckets(states),
        sample.gt,
        num_points=int(np.prod(rule.shape)),
        num_classes=k,
        background_label=0 if spec.has_background else k,
        theta=boundary.pixels(height, width),
    )
    return pairs, counts
