"""The evaluator: exact single-pass threshold sweeps, mIoU conventions, boundary F-score."""

from wsssbed.eval.boundary import Tolerance, bfscore
from wsssbed.eval.confusion import ClassCounts, class_counts, grid_points
from wsssbed.eval.engine import SweepJob, SweepState, accumulate, run_sweep
from wsssbed.eval.metrics import summary_metrics
from wsssbed.eval.rules import (
    BackgroundThreshold,
    HardLabels,
    PowerBackground,
    SaliencyRule,
    make_rule,
)
from wsssbed.eval.sample import EvalSample

__all__ = [
    "BackgroundThreshold",
    "ClassCounts",
    "EvalSample",
    "HardLabels",
    "PowerBackground",
    "SaliencyRule",
    "SweepJob",
    "SweepState",
    "Tolerance",
    "accumulate",
    "bfscore",
    "class_counts",
    "grid_points",
    "make_rule",
    "run_sweep",
    "summary_metrics",
]
