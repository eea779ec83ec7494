"""`power-bg` (PSA): background score (1 - best) ** alpha; foreground iff best > it.

1 - best is taken in float32 as PSA does; the power is taken in float64 and rounded to
float32, so that CPU and GPU agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from wsssbed.errors import InputError
from wsssbed.eval.rules import RULES
from wsssbed.eval.rules.base import PixelStates, Rule
from wsssbed.eval.sample import EvalSample, best_class

if TYPE_CHECKING:
    pass


@RULES.register("power-bg")
@dataclass(frozen=True)
class PowerBackground(Rule):
    """Axis `alpha`. Internal order is alpha descending (foreground grows with alpha),
    found per pixel by a binary search over the sorted alphas."""

    AXES = ("alpha",)

    def __post_init__(self) -> None:
        if min(self.axes[0].values) < 0:
            raise InputError("power-bg alphas must be >= 0")

    def order(self, axis: int) -> np.ndarray:
        return super().order(axis)[::-1].copy()

    def states(self, sample: EvalSample, none_class: int) -> PixelStates:
        import torch

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
