"""Pseudo-label generators: one small interface, so new ones plug in.

A generator turns one image's inputs (`EvalSample`: ground-truth size, image-level
label classes, activation maps, saliency) into an (H, W) uint8 label map, 255 =
ignore. The classic generators are the sweep's own rules at a single grid point, so a
pseudo-label is exactly the prediction the sweep counted at that point:

- `bg-threshold` (IRN & co.): foreground iff the best map > `threshold`.
- `power-bg` (PSA): background (1 - best) ** `alpha`.
- `saliency-rule` (WSSS-BED `run.py`): salient iff saliency > `sal_threshold`;
  foreground iff salient and best >= `atm_threshold` (> 0); with `ignore_label`,
  salient background becomes 255; `without_saliency`: a background threshold of
  `atm_threshold`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from wsssbed.datasets.spec import DatasetSpec
from wsssbed.errors import InputError
from wsssbed.eval.rules import Rule, label_map, make_rule
from wsssbed.eval.sample import EvalSample

CLASSIC = ("bg-threshold", "power-bg", "saliency-rule")


class PseudoLabelGenerator(Protocol):
    """What every generator offers.

    Attributes:
        name: recorded with the labels.
        rule: the sweep rule whose inputs it reads (activation maps, saliency), so the
            engine's loader validates them the same way.
    """

    name: str
    rule: Rule

    def params(self) -> dict:
        """Its settings, recorded with the labels it writes."""

    def labels(self, sample: EvalSample, spec: DatasetSpec) -> np.ndarray:
        """(H, W) uint8 class ids of one image, 255 = ignore."""


def _one_point_rule(name: str, s: dict) -> Rule:
    if name == "bg-threshold":
        return make_rule(name, thresholds=[s["threshold"]])
    if name == "power-bg":
        return make_rule(name, alphas=[s["alpha"]])
    return make_rule(
        name,
        thresholds=[s["atm_threshold"]],
        sal_thresholds=[s["sal_threshold"]],
        ignore_label=s["ignore_label"],
        with_saliency=not s["without_saliency"],
    )


@dataclass(frozen=True)
class ClassicGenerator:
    """A sweep rule at one grid point (see the module docstring); built and checked on
    construction."""

    name: str
    settings: dict = field(default_factory=dict)
    rule: Rule = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "rule", _one_point_rule(self.name, self.settings))

    def params(self) -> dict:
        return dict(self.settings)

    def labels(self, sample: EvalSample, spec: DatasetSpec) -> np.ndarray:
        return label_map(self.rule, sample, 0, spec.num_classes, spec.has_background).numpy()


def make_generator(
    name: str,
    *,
    threshold: float | None = None,
    alpha: float | None = None,
    sal_threshold: float = 0.2,
    atm_threshold: float = 0.1,
    ignore_label: bool = True,
    without_saliency: bool = False,
) -> PseudoLabelGenerator:
    """A generator from CLI-level options; refuses missing or inconsistent ones."""
    if name == "bg-threshold":
        if threshold is None:
            raise InputError("bg-threshold needs --threshold")
        settings = {"threshold": threshold}
    elif name == "power-bg":
        if alpha is None:
            raise InputError("power-bg needs --alpha")
        settings = {"alpha": alpha}
    elif name == "saliency-rule":
        settings = {
            "sal_threshold": sal_threshold,
            "atm_threshold": atm_threshold,
            "ignore_label": ignore_label and not without_saliency,
            "without_saliency": without_saliency,
        }
    else:
        raise InputError(f"unknown generator {name!r}; use one of {CLASSIC}")
    return ClassicGenerator(name, settings)
