"""`saliency-rule` (WSSS-BED `run.py`): a 2-D grid over saliency x activation threshold.

A pixel is salient iff saliency > s (float32, s > 0); foreground iff salient and
best >= a and best > 0. With `ignore_label`, salient pixels that end as background are
unlabelled (255). Without saliency the rule is `bg-threshold` under this name.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from wsssbed.errors import InputError
from wsssbed.eval.rules import RULES
from wsssbed.eval.rules.base import PixelStates, Rule, make_axes
from wsssbed.eval.rules.bg_threshold import BackgroundThreshold
from wsssbed.eval.sample import EvalSample, best_class

if TYPE_CHECKING:
    import torch


@RULES.register("saliency-rule")
@dataclass(frozen=True)
class SaliencyRule(Rule):
    """Axes (`sal_threshold`, `threshold`)."""

    needs_saliency = True
    AXES = ("sal_threshold", "threshold")

    @classmethod
    def grid_axes(cls, with_saliency: bool = True) -> tuple[str, ...]:
        return cls.AXES if with_saliency else ("threshold",)

    @classmethod
    def build(
        cls,
        name: str,
        grids: Mapping[str, Sequence[float]],
        ignore_label: bool = False,
        with_saliency: bool = True,
    ) -> Rule:
        if not with_saliency:
            if ignore_label:
                raise InputError("`ignore_label` has no effect without saliency (as in WSSS-BED)")
            return BackgroundThreshold.build(name, grids)
        return cls(name, make_axes(name, cls.AXES, grids), ignore_label)

    def __post_init__(self) -> None:
        if min(self.axes[0].values) <= 0:
            raise InputError(
                "saliency thresholds must be > 0: WSSS-BED binarises saliency only "
                "for a threshold above 0 (0 selects a continuous cue)"
            )

    def states(self, sample: EvalSample, none_class: int) -> PixelStates:
        if sample.saliency is None:
            raise InputError(f"image {sample.image_id}: the saliency rule needs a saliency map")
        import torch

        score, best_id = best_class(sample, none_class)
        salient = self.bucketizers[0].count_below(sample.saliency)
        active = self.bucketizers[1].count_below(score, inclusive=True)
        active = torch.where(score > 0, active, torch.zeros_like(active))
        return PixelStates(best_id, (salient, active))

    @property
    def supports_boundary(self) -> bool:
        return self.shape[0] == 1 and not self.ignore_label

    def line_buckets(self, states: PixelStates) -> torch.Tensor:
        import torch

        salient, active = states.buckets
        return torch.where(salient > 0, active, torch.zeros_like(active))

    def outcome_at(self, states: PixelStates, point: int) -> tuple[torch.Tensor, torch.Tensor]:
        foreground, ignored = super().outcome_at(states, point)
        if self.ignore_label:
            ignored = (states.buckets[0] > self.internal_point(point)[0]) & ~foreground
        return foreground, ignored

    def outcomes(self, hist: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        foreground, ignored = super().outcomes(hist)
        if not self.ignore_label:
            return foreground, ignored
        salient = np.flip(np.flip(hist.sum(axis=2), 1).cumsum(1), 1)[:, 1:]  # (P, S)
        return foreground, salient[:, :, None] - foreground
