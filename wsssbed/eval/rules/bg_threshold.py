"""`bg-threshold` (IRN, SEAM, PuzzleCAM, CLIP-ES): a constant background score t.

A pixel is foreground iff its best class score > t in float32 (ties go to background);
its class is the first maximal image-label class.
"""

from __future__ import annotations

from dataclasses import dataclass

from wsssbed.eval.rules import RULES
from wsssbed.eval.rules.base import PixelStates, Rule
from wsssbed.eval.sample import EvalSample, best_class


@RULES.register("bg-threshold")
@dataclass(frozen=True)
class BackgroundThreshold(Rule):
    """Axis `threshold`; foreground iff best > t."""

    AXES = ("threshold",)

    def states(self, sample: EvalSample, none_class: int) -> PixelStates:
        score, best_id = best_class(sample, none_class)
        return PixelStates(best_id, (self.bucketizers[0].count_below(score),))
