"""The evaluator: exact single-pass threshold sweeps, mIoU conventions, boundary F-score.

Modules, in data-path order: `job` (what to evaluate), `inputs` (read and check one
image), `rules/` (a generator's per-pixel buckets), `histogram` and `boundary` (one image
to integer counts), `reduce` (the additive state), `loop` (stream a split), `confusion`,
`summary` and `tables` (counts to metrics and rows). `axes` names the grid axes.

The names below are imported on first use, so importing `wsssbed.eval.axes` (as the CLI
does for its help) does not load torch.
"""

from importlib import import_module

_LAZY = {
    "RULES": "wsssbed.eval.rules",
    "HardLabels": "wsssbed.eval.rules",
    "make_rule": "wsssbed.eval.rules",
    "ClassCounts": "wsssbed.eval.confusion",
    "class_counts": "wsssbed.eval.confusion",
    "grid_points": "wsssbed.eval.confusion",
    "EvalSample": "wsssbed.eval.sample",
    "SweepJob": "wsssbed.eval.job",
    "SweepState": "wsssbed.eval.reduce",
    "Tolerance": "wsssbed.eval.boundary",
    "bfscore": "wsssbed.eval.boundary",
    "accumulate": "wsssbed.eval.loop",
    "run_sweep": "wsssbed.eval.loop",
    "summary_metrics": "wsssbed.eval.summary",
}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'wsssbed.eval' has no attribute {name!r}")


__all__ = sorted(_LAZY)
