"""The evaluation protocol of a run, as one object (as pycocotools' `COCOeval.Params`).

`Protocol` says what a run measures: the dataset and split, the generator and its grids,
the boundary tolerance and where image-level labels come from. The CLI, the Python API,
pipeline manifests and Ray workers all get one from `build_protocol`, which is the only
place the precedence lives: a value given explicitly wins over the pipeline manifest's,
which wins over the default. The protocol is stored with the run (`runs.protocol`, JSON)
and `Protocol.from_json` rebuilds it.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from functools import cached_property
from typing import TYPE_CHECKING

from wsssbed.errors import InputError
from wsssbed.eval.axes import AXES, GRID_PARAMETERS, grid_warnings
from wsssbed.grids import check_grid_size, grid_values

if TYPE_CHECKING:
    from wsssbed.catalogue.manifest import PipelineSpec
    from wsssbed.eval.boundary import Tolerance
    from wsssbed.eval.rules import Rule

DEFAULT_GENERATOR = "bg-threshold"
HARD_LABELS = "hard-labels"  # label maps scored as they are (`evaluate`)
DEFAULT_TOLERANCE = "0.0075"  # fraction of the image diagonal (Perazzi et al., DAVIS)

Grid = str | Sequence[float]


@dataclass(frozen=True)
class Protocol:
    """What a sweep measures (see the module docstring).

    Attributes:
        dataset: a built-in dataset name or the path of a spec `.toml`.
        split: split name (None: the dataset's default split).
        generator: a registered sweep rule (`bg-threshold`, `power-bg`, `saliency-rule`).
        grids: (axis, values) per axis of the generator, outermost first, values in the
            order given.
        ignore_label: salient background becomes 255 (saliency rule, WSSS-BED).
        with_saliency: the saliency rule reads saliency maps (False: a threshold alone).
        boundary_tolerance: boundary-F matching distance (`0.0075` of the diagonal, or
            `2px`); None: no boundary F.
        labels: image-level labels, `masks` (from the ground truth) or a label-list path.
    """

    dataset: str = "voc2012"
    split: str | None = None
    generator: str = DEFAULT_GENERATOR
    grids: tuple[tuple[str, tuple[float, ...]], ...] = ()
    ignore_label: bool = False
    with_saliency: bool = True
    boundary_tolerance: str | None = DEFAULT_TOLERANCE
    labels: str = "masks"

    @cached_property
    def rule(self) -> Rule:
        """The sweep rule over the grids."""
        from wsssbed.eval.rules import hard_labels, make_rule

        if self.generator == HARD_LABELS:
            return hard_labels()
        return make_rule(
            self.generator,
            dict(self.grids),
            ignore_label=self.ignore_label,
            with_saliency=self.with_saliency,
        )

    @property
    def tolerance(self) -> Tolerance | None:
        """The boundary-F tolerance, or None when boundary F is off."""
        from wsssbed.eval.boundary import Tolerance

        return None if self.boundary_tolerance is None else Tolerance.parse(self.boundary_tolerance)

    def to_json(self) -> str:
        """The protocol as stored with a run."""
        data = asdict(self)
        data["grids"] = {axis: list(values) for axis, values in self.grids}
        return json.dumps(data, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Protocol:
        """Inverse of `to_json`."""
        data = json.loads(text)
        data["grids"] = tuple((axis, tuple(values)) for axis, values in data["grids"].items())
        return cls(**data)


def checked_tolerance(value: object) -> str | None:
    """`boundary_tolerance` as a protocol stores it: `0.0075` (a fraction of the diagonal)
    or `2px`, from a string or a positive finite number; None stays None.

    Raises:
        InputError: naming `boundary_tolerance`: another type, or a value that is not a
            positive finite fraction or pixel count.
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise InputError(f"`boundary_tolerance` must be a string (0.0075, 2px) or a number, "
                         f"got {type(value).__name__}")  # fmt: skip
    text = value if isinstance(value, str) else repr(float(value))
    from wsssbed.eval.boundary import Tolerance

    Tolerance.parse(text)
    return text


def check_text(value: object, name: str, optional: bool = False) -> None:
    """Refuse an argument that is not a string (or None when `optional`), naming it."""
    if not (isinstance(value, str) or (optional and value is None)):
        kind = "a string" + (" or None" if optional else "")
        raise InputError(f"`{name}` must be {kind}, got {type(value).__name__} {value!r:.30}")


def check_flag(value: object, name: str, optional: bool = False) -> None:
    """Refuse an argument that is not True/False (or None when `optional`), naming it."""
    if not (isinstance(value, bool) or (optional and value is None)):
        kind = "True or False" + (" or None" if optional else "")
        raise InputError(f"`{name}` must be {kind}, got {type(value).__name__} {value!r:.30}")


def build_protocol(
    *,
    dataset: str = "voc2012",
    split: str | None = None,
    generator: str | None = None,
    thresholds: Grid | None = None,
    sal_thresholds: Grid | None = None,
    alphas: Grid | None = None,
    ignore_label: bool | None = None,
    with_saliency: bool | None = None,
    boundary: bool = True,
    boundary_tolerance: str | None = None,
    labels: str = "masks",
    pipeline: PipelineSpec | None = None,
) -> Protocol:
    """A checked protocol from explicit values (None = not given), a pipeline manifest's
    settings, and the defaults, in that order of precedence.

    Grids not used by the generator must not be given explicitly. Boundary F is dropped
    (not refused) for grids it is not defined on unless a tolerance is given explicitly.

    Raises:
        InputError: an unknown generator, a bad grid, a grid the generator does not take.
    """
    from wsssbed.eval.rules import RULES

    check_text(dataset, "dataset")
    for value, name in ((split, "split"), (generator, "generator")):
        check_text(value, name, optional=True)
    check_text(labels, "labels")
    for value, name in ((ignore_label, "ignore_label"), (with_saliency, "with_saliency")):
        check_flag(value, name, optional=True)
    check_flag(boundary, "boundary")
    boundary_tolerance = checked_tolerance(boundary_tolerance)

    def pick(explicit, pinned, default):
        if explicit is not None:
            return explicit
        return pinned if pinned is not None else default

    generator = pick(generator, pipeline and pipeline.generator, DEFAULT_GENERATOR)
    rule_class = RULES.get(generator, "generator")
    with_saliency = pick(with_saliency, pipeline and pipeline.with_saliency, True)
    ignore_label = pick(ignore_label, pipeline and pipeline.ignore_label, False)
    given = {"thresholds": thresholds, "sal_thresholds": sal_thresholds, "alphas": alphas}
    wanted = rule_class.grid_axes(with_saliency)
    for parameter, value in given.items():
        axis = AXES[GRID_PARAMETERS[parameter]]
        if value is not None and axis.name not in wanted:
            raise InputError(
                f"`{parameter}` is not a grid of {generator} (its grids: "
                f"{', '.join(f'`{AXES[a].grid}`' for a in wanted)})"
            )
    grids = []
    for axis_name in wanted:
        axis = AXES[axis_name]
        pinned = getattr(pipeline, axis.grid, None) if pipeline else None
        value = pick(given[axis.grid], pinned, axis.default)
        grids.append((axis_name, grid_values(value, axis.grid)))
    check_grid_size(grids)
    protocol = Protocol(
        dataset=dataset,
        split=split,
        generator=generator,
        grids=tuple(grids),
        ignore_label=bool(ignore_label),
        with_saliency=bool(with_saliency),
        boundary_tolerance=None,
        labels=labels,
    )
    rule = protocol.rule  # checks the combination now
    for message in grid_warnings(protocol.grids):
        warnings.warn(message, stacklevel=2)
    if boundary and (rule.supports_boundary or boundary_tolerance is not None):
        tolerance = boundary_tolerance or DEFAULT_TOLERANCE
        protocol = replace(protocol, boundary_tolerance=tolerance)
        protocol.tolerance  # noqa: B018  (parses it: a bad tolerance fails here)
        if not rule.supports_boundary:
            raise InputError(
                "boundary F is computed for 1-D sweeps (one saliency threshold and no "
                "ignore label for the saliency rule); turn boundary off or fix the grid"
            )
    return protocol
