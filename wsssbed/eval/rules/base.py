"""The base of sweep rules: how a rule buckets pixels and turns histograms into outcomes.

A rule turns a pixel's (best class, best score, saliency) into bucket indices along its
grid axes, in an internal order in which the pixel's outcome is monotone: along every
axis the pixel is foreground for grid indices below its bucket and not after. A suffix
sum over buckets then gives, for every grid point at once, how many pixels of each
(ground truth, best class) pair are foreground, and how many are ignored.

The rules themselves are one module each in this package (`bg_threshold.py`,
`power_bg.py`, `saliency_rule.py`), registered by name in `RULES`; their conventions
are in docs/architecture.md. `HardLabels` (a label map scored as it is) and
`PictureOnly` (generators that read no maps) live here and are not sweepable.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from wsssbed.errors import InputError
from wsssbed.eval.axes import AXES, scale_error

if TYPE_CHECKING:  # torch is imported where pixels are bucketed, not to build a rule
    import torch

    from wsssbed.eval.bucketize import Bucketizer
    from wsssbed.eval.sample import EvalSample


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
    AXES: ClassVar[tuple[str, ...]] = ()  # the axes a registered rule sweeps (eval/axes.py)

    @classmethod
    def grid_axes(cls, with_saliency: bool = True) -> tuple[str, ...]:
        """The axes this rule sweeps (outermost first), given whether saliency is used."""
        return cls.AXES

    @classmethod
    def build(
        cls,
        name: str,
        grids: Mapping[str, Sequence[float]],
        ignore_label: bool = False,
        with_saliency: bool = True,
    ) -> Rule:
        """The rule with one grid per axis of `grid_axes`, refusing bad combinations.

        Args:
            grids: axis name -> values (as the user gave them).
        """
        if ignore_label:
            raise InputError(f"`ignore_label` applies to the saliency rule, not to {name}")
        return cls(name, make_axes(name, cls.grid_axes(with_saliency), grids))

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

    def internal_array(self, axis: int) -> np.ndarray:
        """(points,) axis values in internal order, float32."""
        return np.asarray(self.axes[axis].values, dtype=np.float32)[self.order(axis)]

    def internal_values(self, axis: int) -> torch.Tensor:
        """`internal_array` as a tensor."""
        import torch

        return torch.from_numpy(self.internal_array(axis))

    @cached_property
    def bucketizers(self) -> tuple[Bucketizer, ...]:
        """One exact bucketizer per axis over its internally ordered values."""
        from wsssbed.eval.bucketize import Bucketizer

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
        import torch

        internal = self.internal_point(point)
        foreground = torch.ones_like(states.best_id, dtype=torch.bool)
        for bucket, index in zip(states.buckets, internal):
            foreground &= bucket > index
        return foreground, torch.zeros_like(foreground)

    def outcomes(self, hist: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Foreground and ignored counts at every grid point (internal order).

        Args:
            hist: (P, *bucket_shape) int64 counts per (gt, best class) pair.

        Returns:
            foreground, ignored: (P, *shape) int64.
        """
        suffix = hist
        for dim in range(1, hist.ndim):
            suffix = np.flip(np.flip(suffix, dim).cumsum(dim), dim)
        crop = (slice(None), *[slice(1, None)] * len(self.shape))
        foreground = suffix[crop]
        return foreground, np.zeros_like(foreground)


@dataclass(frozen=True)
class HardLabels(Rule):
    """A hard label map scored as it is: one grid point, every pixel 'foreground'."""

    needs_maps = False
    needs_predictions = True

    def states(self, sample: EvalSample, none_class: int) -> PixelStates:
        import torch

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
    import torch

    states = rule.states(sample, none_class=num_classes)
    foreground, ignored = rule.outcome_at(states, point)
    background = 0 if has_background else 255
    labels = torch.where(foreground, states.best_id, background)
    labels = torch.where(labels >= num_classes, 255, labels)
    return torch.where(ignored, 255, labels).to(torch.uint8)


def make_axes(name: str, wanted: tuple[str, ...], grids: Mapping[str, Sequence[float]]) -> tuple:
    """`Axis` objects of `wanted`, in order, each with a non-empty grid from `grids`.

    Raises:
        InputError: a missing grid, or a score grid lying mostly outside [0, 1]
            (`wsssbed.eval.axes.scale_error`).
    """
    axes = []
    for axis in wanted:
        values = tuple(float(v) for v in grids.get(axis) or ())
        if not values:
            raise InputError(f"{name} needs a grid: `{AXES[axis].grid}`")
        problem = scale_error(axis, values)
        if problem:
            raise InputError(problem)
        axes.append(Axis(axis, values))
    return tuple(axes)
