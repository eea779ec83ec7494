"""Sweep rules: how a generator turns a pixel's scores into a label at every grid point.

Each rule is one module of this package registered in `RULES` under the generator name
users type (`bg-threshold`, `power-bg`, `saliency-rule`); it declares its axes
(`Rule.AXES`, names from `wsssbed.eval.axes`) and builds itself from grids
(`Rule.build`). `make_rule` is the one way to get one by name.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from importlib import import_module
from typing import TYPE_CHECKING

from wsssbed.registry import Registry

if TYPE_CHECKING:
    from wsssbed.eval.rules.base import (
        Axis,
        HardLabels,
        PictureOnly,
        PixelStates,
        Rule,
        label_map,
    )

RULES: Registry[type[Rule]] = Registry("generator", "wsssbed.eval.rules")
_BASE = ("Axis", "HardLabels", "PictureOnly", "PixelStates", "Rule", "label_map")


def __getattr__(name: str):
    # the base classes load torch: imported on first use, so that listing RULES'
    # names (manifest validation, help) stays light
    if name in _BASE:
        return getattr(import_module("wsssbed.eval.rules.base"), name)
    raise AttributeError(f"module 'wsssbed.eval.rules' has no attribute {name!r}")


def make_rule(
    generator: str,
    grids: Mapping[str, Sequence[float]],
    *,
    ignore_label: bool = False,
    with_saliency: bool = True,
) -> Rule:
    """The registered rule `generator` over `grids` (axis name -> values).

    Raises:
        InputError: an unknown generator (with the closest name), a missing grid, or an
            inconsistent option.
    """
    return RULES.get(generator, "generator").build(generator, grids, ignore_label, with_saliency)


def hard_labels() -> HardLabels:
    """The one-point rule that scores label maps as they are."""
    from wsssbed.eval.rules.base import Axis, HardLabels

    return HardLabels("hard-labels", (Axis("point", (0.0,)),))


__all__ = [
    "RULES",
    "Axis",
    "HardLabels",
    "PictureOnly",
    "PixelStates",
    "Rule",
    "hard_labels",
    "label_map",
    "make_rule",
]
