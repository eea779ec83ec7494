"""Generators: one small interface, so new ones plug in.

A generator turns one image's inputs (`EvalSample`: ground-truth size, image-level
label classes, activation maps, saliency, the picture) into one output file: an (H, W)
uint8 label map (255 = ignore), a saliency map, or activation maps. The foundation-model
generators are `sam_refine.py`, `sam_box.py`, `clip_cam.py` and `sam_clip.py` beside
this module. The classic generators are the sweep's own rules (any registered
in `wsssbed.eval.rules.RULES`) at a single grid point, so a pseudo-label is exactly the
prediction the sweep counted at that point:

- `bg-threshold` (IRN & co.): foreground iff the best map > `threshold`.
- `power-bg` (PSA): background (1 - best) ** `alpha`.
- `saliency-rule` (WSSS-BED `run.py`): salient iff saliency > `sal_threshold`;
  foreground iff salient and best >= `atm_threshold` (> 0); with `ignore_label`,
  salient background becomes 255; `without_saliency`: a background threshold of
  `atm_threshold`.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import torch

from wsssbed.activation import ActivationMaps
from wsssbed.datasets.local import LocalDataset
from wsssbed.datasets.spec import DatasetSpec
from wsssbed.errors import InputError
from wsssbed.eval.axes import scale_error
from wsssbed.eval.rules import RULES, Rule, label_map, make_rule
from wsssbed.eval.sample import EvalSample


class Generator(Protocol):
    """What every generator offers.

    Attributes:
        name: recorded with its output.
        output: what it writes per image: `labels`, `saliency` or `activation` (the keys
            of `wsssbed.generators.writer.OUTPUTS`).
        rule: the sweep rule whose inputs it reads (activation maps, saliency), so the
            engine's loader validates them the same way (`PictureOnly` when it reads none).
        needs_image: it looks at the RGB picture (`EvalSample.image`).
    """

    name: str
    output: str
    rule: Rule
    needs_image: bool

    def params(self) -> dict:
        """Its settings, recorded with what it writes."""

    def prepare(self, dataset: LocalDataset, device: torch.device) -> None:
        """Check everything it will need before any image is done: load its models on
        `device`, read its prompts.

        Raises:
            InputError: naming the bad file or option.
        """

    def produce(self, sample: EvalSample, spec: DatasetSpec) -> np.ndarray | ActivationMaps:
        """One image's output: (H, W) uint8 labels (255 = ignore) or saliency (0..255),
        or its activation maps."""


def _one_point_rule(name: str, s: dict) -> Rule:
    """The rule `name` with one value per axis: `threshold` (the saliency rule's
    `atm_threshold`), `alpha`, `sal_threshold`."""
    values = {
        "threshold": s.get("threshold", s.get("atm_threshold")),
        "alpha": s.get("alpha"),
        "sal_threshold": s.get("sal_threshold"),
    }
    return make_rule(
        name,
        {axis: [v] for axis, v in values.items() if v is not None},
        ignore_label=s.get("ignore_label", False),
        with_saliency=not s.get("without_saliency", False),
    )


@dataclass(frozen=True)
class ClassicGenerator:
    """A sweep rule at one grid point (see the module docstring); built and checked on
    construction."""

    name: str
    settings: dict = field(default_factory=dict)
    rule: Rule = field(init=False, repr=False, compare=False)
    output = "labels"
    needs_image = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "rule", _one_point_rule(self.name, self.settings))

    def params(self) -> dict:
        return dict(self.settings)

    def prepare(self, dataset: LocalDataset, device: torch.device) -> None:
        """Nothing beyond the inputs the engine's loader checks."""

    def produce(self, sample: EvalSample, spec: DatasetSpec) -> np.ndarray:
        labels = label_map(self.rule, sample, 0, spec.num_classes, spec.has_background)
        return labels.cpu().numpy()


def make_generator(
    name: str,
    *,
    threshold: float | None = None,
    alpha: float | None = None,
    sal_threshold: float = 0.2,
    atm_threshold: float = 0.1,
    ignore_label: bool = True,
    without_saliency: bool = False,
) -> ClassicGenerator:
    """A classic generator from CLI-level options; refuses missing or inconsistent ones,
    a non-finite `alpha`, and a score threshold outside [0, 1]
    (`wsssbed.eval.axes.scale_error`, named by its option: `threshold`, `atm_threshold`,
    `sal_threshold`)."""
    if name == "bg-threshold":
        if threshold is None:
            raise InputError("bg-threshold needs --threshold")
        settings = {"threshold": threshold}
    elif name == "power-bg":
        if alpha is None:
            raise InputError("power-bg needs --alpha")
        if (
            isinstance(alpha, bool)
            or not isinstance(alpha, numbers.Real)
            or not math.isfinite(alpha)
        ):
            # nan made every pixel background, inf every pixel foreground
            raise InputError(
                f"`alpha` {alpha!r:.30}: the power-bg exponent must be a finite number"
            )
        settings = {"alpha": alpha}
    elif name == "saliency-rule":
        settings = {
            "sal_threshold": sal_threshold,
            "atm_threshold": atm_threshold,
            "ignore_label": ignore_label and not without_saliency,
            "without_saliency": without_saliency,
        }
    else:
        RULES.get(name, "generator")  # an unknown name: the error lists the choices
        raise InputError(f"generator {name} has no single-point pseudo-label settings")
    for option, axis in (("threshold", "threshold"), ("atm_threshold", "threshold"),
                         ("sal_threshold", "sal_threshold")):  # fmt: skip
        problem = option in settings and scale_error(axis, [settings[option]], option)
        if problem:
            raise InputError(problem)
    return ClassicGenerator(name, settings)
