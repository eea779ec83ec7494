"""Pseudo-label rules as the sweep engine sees them.

A rule turns a pixel's (best class, best score, saliency) into bucket indices along its
grid axes, in an internal order in which the pixel's outcome is monotone: along every
axis the pixel is foreground for grid indices below its bucket and not after. A suffix
sum over buckets then gives, for every grid point at once, how many pixels of each
(ground truth, best class) pair are foreground, and how many are ignored.

The conventions (all named in DESIGN.md):

- `bg-threshold` (IRN, SEAM, PuzzleCAM, CLIP-ES): foreground iff best score > t, in float32.
- `power-bg` (PSA): background score (1 - best) ** alpha; foreground iff best > that.
  1 - best is taken in float32 as PSA does; the power is taken in float64 and rounded to
  float32 so that CPU and GPU agree.
- `saliency-rule` (WSSS-BED `run.py`): salient iff saliency > s (float32, s > 0);
  foreground iff salient and best >= a and best > 0; with `ignore_label`, salient pixels
  that end as background are unlabelled (255). Without saliency it is `bg-threshold`.
- `hard-labels`: a label map evaluated as it is (one grid point).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import torch

from wsssbed.errors import InputError
from wsssbed.eval.bucketize import Bucketizer
from wsssbed.eval.sample import EvalSample, best_class

GENERATORS = ("bg-threshold", "power-bg", "saliency-rule")


@dataclass(frozen=True)
class Axis:
    """One grid axis: `name` (a column of the results) and its values as the user gave them."""

    name: str
    values: tuple[float, ...]


@dataclass(frozen=True)
class PixelStates:
    """A rule's view of one image's pixels.

    Attributes:
        best_id: (H, W) int32 class a pixel gets when foreground (`none_class` for none).
        buckets: per axis, (H, W) int32 count of leading internal grid indices at which
            the pixel passes that axis.
    """

    best_id: torch.Tensor
    buckets: tuple[torch.Tensor, ...]


@dataclass(frozen=True)
class Rule:
    """Base of sweepable rules.

    Attributes:
        name: generator name stored with results.
        axes: grid axes, outermost first.
        ignore_label: salient background becomes unlabelled (saliency rule only).
    """

    name: str
    axes: tuple[Axis, ...]
    ignore_label: bool = field(default=False)

    needs_saliency = False
    needs_maps = True
    needs_predictions = False

    @property
    def shape(self) -> tuple[int, ...]:
        """Grid shape (points per axis)."""
        return tuple(len(a.values) for a in self.axes)

    @property
    def bucket_shape(self) -> tuple[int, ...]:
        """Histogram shape per pair: one more bucket than points per axis."""
        return tuple(n + 1 for n in self.shape)

    def order(self, axis: int) -> np.ndarray:
        """Permutation from internal grid index to the user's index along `axis`.

        The internal order is ascending float32 value, in which a pixel's outcome is
        monotone for the threshold rules.
        """
        return np.argsort(np.asarray(self.axes[axis].values, dtype=np.float32), kind="stable")

    def internal_values(self, axis: int) -> torch.Tensor:
        """Axis values in internal order, float32."""
        values = np.asarray(self.axes[axis].values, dtype=np.float32)
        return torch.tensor(values[self.order(axis)])

    @cached_property
    def bucketizers(self) -> tuple[Bucketizer, ...]:
        """One exact bucketizer per axis over its internally ordered values."""
        return tuple(Bucketizer(self.internal_values(a)) for a in range(len(self.axes)))

    def states(self, sample: EvalSample, none_class: int) -> PixelStates:
        """Bucket every pixel of `sample` (see module docstring)."""
        raise NotImplementedError

    @property
    def supports_boundary(self) -> bool:
        """Boundary F needs one axis along which a pixel is foreground or background."""
        return len(self.axes) == 1

    def line_buckets(self, states: PixelStates) -> torch.Tensor:
        """(H, W) buckets along the rule's single effective axis (see `supports_boundary`)."""
        return states.buckets[0]

    def user_order(self) -> np.ndarray:
        """(G,) internal flat grid index of each of the user's grid points, in user order."""
        inverse = [np.argsort(self.order(a)) for a in range(len(self.axes))]
        grids = np.meshgrid(*inverse, indexing="ij")
        return np.ravel_multi_index(tuple(g.ravel() for g in grids), self.shape)

    def internal_point(self, point: int) -> tuple[int, ...]:
        """Internal per-axis indices of the user's flat grid point `point`."""
        return tuple(int(i) for i in np.unravel_index(self.user_order()[point], self.shape))

    def outcome_at(self, states: PixelStates, point: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(H, W) bool foreground and ignored masks at the user's grid point `point`."""
        internal = self.internal_point(point)
        foreground = torch.ones_like(states.best_id, dtype=torch.bool)
        for bucket, index in zip(states.buckets, internal):
            foreground &= bucket > index
        return foreground, torch.zeros_like(foreground)

    def outcomes(self, hist: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Foreground and ignored counts at every grid point (internal order).

        Args:
            hist: (P, *bucket_shape) int64 counts per (gt, best class) pair.

        Returns:
            foreground, ignored: (P, *shape) int64.
        """
        suffix = hist
        for dim in range(1, hist.dim()):
            suffix = suffix.flip(dim).cumsum(dim).flip(dim)
        crop = (slice(None), *[slice(1, None)] * len(self.shape))
        foreground = suffix[crop]
        return foreground, torch.zeros_like(foreground)


@dataclass(frozen=True)
class BackgroundThreshold(Rule):
    """Constant background score t; foreground iff best > t (ties to background)."""

    def states(self, sample: EvalSample, none_class: int) -> PixelStates:
        score, best_id = best_class(sample, none_class)
        return PixelStates(best_id, (self.bucketizers[0].count_below(score),))


@dataclass(frozen=True)
class PowerBackground(Rule):
    """PSA: background (1 - best) ** alpha; foreground iff best > background.

    Internal order is alpha descending (foreground grows with alpha), found per pixel by
    a binary search over the sorted alphas.
    """

    def order(self, axis: int) -> np.ndarray:
        return super().order(axis)[::-1].copy()

    def states(self, sample: EvalSample, none_class: int) -> PixelStates:
        score, best_id = best_class(sample, none_class)
        alphas = self.internal_values(0).to(score.device, torch.float64)
        base = (torch.ones((), dtype=torch.float32, device=score.device) - score).double()
        low = torch.zeros(score.shape, dtype=torch.int32, device=score.device)
        high = torch.full_like(low, len(alphas))
        for _ in range(int(np.ceil(np.log2(len(alphas) + 1)))):
            active = low < high
            middle = (low + high) // 2
            alpha = alphas[middle.clamp(max=len(alphas) - 1).long()]
            background = torch.pow(base, alpha).float()
            foreground = score > background
            low = torch.where(active & foreground, middle + 1, low)
            high = torch.where(active & ~foreground, middle, high)
        return PixelStates(best_id, (low,))


@dataclass(frozen=True)
class SaliencyRule(Rule):
    """WSSS-BED: axes (sal_threshold, threshold); see the module docstring."""

    needs_saliency = True

    def states(self, sample: EvalSample, none_class: int) -> PixelStates:
        if sample.saliency is None:
            raise InputError(f"image {sample.image_id}: the saliency rule needs a saliency map")
        score, best_id = best_class(sample, none_class)
        salient = self.bucketizers[0].count_below(sample.saliency)
        active = self.bucketizers[1].count_below(score, inclusive=True)
        active = torch.where(score > 0, active, torch.zeros_like(active))
        return PixelStates(best_id, (salient, active))

    @property
    def supports_boundary(self) -> bool:
        return self.shape[0] == 1 and not self.ignore_label

    def line_buckets(self, states: PixelStates) -> torch.Tensor:
        salient, active = states.buckets
        return torch.where(salient > 0, active, torch.zeros_like(active))

    def outcome_at(self, states: PixelStates, point: int) -> tuple[torch.Tensor, torch.Tensor]:
        foreground, ignored = super().outcome_at(states, point)
        if self.ignore_label:
            ignored = (states.buckets[0] > self.internal_point(point)[0]) & ~foreground
        return foreground, ignored

    def outcomes(self, hist: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        foreground, _ = super().outcomes(hist)
        if not self.ignore_label:
            return foreground, torch.zeros_like(foreground)
        salient = hist.sum(dim=2).flip(1).cumsum(1).flip(1)[:, 1:]  # (P, S)
        return foreground, salient.unsqueeze(2) - foreground


@dataclass(frozen=True)
class HardLabels(Rule):
    """A hard label map scored as it is: one grid point, every pixel 'foreground'."""

    needs_maps = False
    needs_predictions = True

    def states(self, sample: EvalSample, none_class: int) -> PixelStates:
        pred = sample.pred.to(torch.int32)
        best_id = torch.where(pred == 255, torch.full_like(pred, none_class), pred)
        return PixelStates(best_id, (torch.ones_like(pred),))


@dataclass(frozen=True)
class PictureOnly(Rule):
    """The inputs of generators that read only the picture and its image-level labels
    (no activation maps, saliency or predictions); not sweepable."""

    needs_maps = False


def label_map(
    rule: Rule, sample: EvalSample, point: int, num_classes: int, has_background: bool
) -> torch.Tensor:
    """(H, W) uint8 pseudo-label of `sample` at the user's grid point `point` (255 = none).

    The same per-pixel states the sweep counts, so a label map and the stored counts agree.
    """
    states = rule.states(sample, none_class=num_classes)
    foreground, ignored = rule.outcome_at(states, point)
    background = 0 if has_background else 255
    labels = torch.where(foreground, states.best_id, background)
    labels = torch.where(labels >= num_classes, 255, labels)
    return torch.where(ignored, 255, labels).to(torch.uint8)


def make_rule(
    generator: str,
    *,
    thresholds: list[float] | None = None,
    alphas: list[float] | None = None,
    sal_thresholds: list[float] | None = None,
    ignore_label: bool = False,
    with_saliency: bool = True,
) -> Rule:
    """Build a rule from CLI-level parameters, refusing inconsistent combinations."""
    if generator == "bg-threshold" or (generator == "saliency-rule" and not with_saliency):
        if not thresholds:
            raise InputError(f"{generator} needs --thresholds")
        if generator == "saliency-rule" and ignore_label:
            raise InputError("--ignore-label has no effect without saliency (as in WSSS-BED)")
        return BackgroundThreshold(generator, (Axis("threshold", tuple(thresholds)),))
    if generator == "power-bg":
        if not alphas:
            raise InputError("power-bg needs --alphas")
        if min(alphas) < 0:
            raise InputError("power-bg alphas must be >= 0")
        return PowerBackground(generator, (Axis("alpha", tuple(alphas)),))
    if generator == "saliency-rule":
        if not thresholds or not sal_thresholds:
            raise InputError("saliency-rule needs --thresholds and --sal-thresholds")
        if min(sal_thresholds) <= 0:
            raise InputError(
                "saliency thresholds must be > 0: WSSS-BED binarises saliency only "
                "for a threshold above 0 (0 selects a continuous cue)"
            )
        return SaliencyRule(
            generator,
            (Axis("sal_threshold", tuple(sal_thresholds)), Axis("threshold", tuple(thresholds))),
            ignore_label,
        )
    raise InputError(f"unknown generator {generator!r}; use one of {GENERATORS}")
