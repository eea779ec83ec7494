"""The grid axes a sweep rule can have: one table, the only place their names are spelled.

Each axis is a column of `sweeps.parquet` (null where a run's rule lacks it), a grid
parameter (`thresholds`, `alphas`, `sal_thresholds`: the CLI's `--thresholds` and the
API's `thresholds=`), and a label for figures. A rule names the axes it uses; a new
axis is a new row here and a new column of the results schema.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal


@dataclass(frozen=True)
class AxisInfo:
    """One axis.

    Attributes:
        name: column of the results (`threshold`).
        grid: the parameter that takes its grid (`thresholds`).
        default: the default grid, in `start:stop:step` or comma syntax.
        label: axis title for figures and tables.
        scores: the axis thresholds scores in [0, 1] (a value outside is a mistake,
            usually a percentage).
        example: a typical grid of the axis, quoted by messages about its scale.
    """

    name: str
    grid: str
    default: str
    label: str
    scores: bool = False
    example: str = ""


AXES = {
    a.name: a
    for a in (
        AxisInfo(
            "threshold", "thresholds", "0:0.6:0.01", "activation threshold", True, "0:0.6:0.01"
        ),
        AxisInfo("alpha", "alphas", "1:32:1", "power-bg exponent alpha"),
        AxisInfo(
            "sal_threshold", "sal_thresholds", "0.2", "saliency threshold", True, "0.1:0.5:0.05"
        ),  # WSSS-BED's saliency grid
    )
}
AXIS_COLUMNS = tuple(AXES)  # in the results schema's order
GRID_PARAMETERS = {a.grid: a.name for a in AXES.values()}  # `thresholds` -> `threshold`
DISPLAY_ORDER = ("sal_threshold", "threshold", "alpha")  # how a grid point is printed


def _outside(values: Sequence[float]) -> list[float]:
    """The values no score in [0, 1] can be compared with meaningfully."""
    return [v for v in values if not 0 <= v <= 1]


def _as_percent(grid: str) -> str:
    """`0:0.6:0.01` written in percent (`0:60:1`), to show the likely mistake."""
    return ":".join(f"{float(Decimal(p) * 100):g}" for p in grid.split(":"))


def _single_hint(value: float) -> str:
    """What a single out-of-range score threshold was probably meant to be."""
    if 1 < value <= 100:
        return f"a percentage? write `{value / 100:g}`"
    if 100 < value <= 255:
        return f"an 8-bit value? write `{value / 255:.3g}` (value / 255)"
    return "write a value in [0, 1]"


def scale_error(axis: str, values: Sequence[float], option: str | None = None) -> str | None:
    """Why a grid (or a single value) on a score axis is refused, or None when it is not.

    Scores (activation maps, saliency / 255) lie in [0, 1]. A grid with more than half of
    its values outside [0, 1] (every single value outside, for one value) thresholds
    nothing a score can reach: all background or all foreground, usually a percentage or
    a 0..255 value. `option` names the parameter in the message (default: the axis's grid).
    """
    info = AXES[axis]
    outside = _outside(values)
    if not info.scores or not values or 2 * len(outside) <= len(values):
        return None
    name = option or info.grid
    if len(values) == 1:
        return (
            f"`{name}` {values[0]:g} is outside [0, 1], the range of scores, so no score can "
            f"reach it (every pixel would get the same label); {_single_hint(values[0])}"
        )
    hint = f"write a grid in [0, 1] such as `{info.example}`"
    if max(values) > 1:
        hint = f"percentages? write `{info.example}`, not `{_as_percent(info.example)}`"
    return (
        f"`{name}` has {len(outside)} of its {len(values)} values outside [0, 1] (from "
        f"{min(values):g} to {max(values):g}), but scores are in [0, 1], so those points "
        f"threshold nothing; {hint}"
    )


def grid_warnings(grids: tuple[tuple[str, tuple[float, ...]], ...]) -> list[str]:
    """Score grids with a few values outside [0, 1] (most outside: `scale_error` refuses)."""
    found = []
    for name, values in grids:
        axis = AXES[name]
        outside = _outside(values)
        if axis.scores and outside:
            found.append(
                f"`{axis.grid}` has {len(outside)} of its {len(values)} values outside "
                f"[0, 1] (from {min(values):g} to {max(values):g}), but scores are in [0, 1]: "
                f"those points give all background or all foreground (typical grid: "
                f"`{axis.example}`)"
            )
    return found


def edge_warnings(
    grids: tuple[tuple[str, tuple[float, ...]], ...], best: dict[str, float]
) -> list[str]:
    """Axes whose best point is the first or last of at least three grid values."""
    found = []
    for name, values in grids:
        if len(values) < 3 or name not in best:
            continue
        low, high = min(values), max(values)
        bounded = AXES[name].scores  # a score threshold cannot go below 0 or above 1
        if (best[name] == high and not (bounded and high >= 1)) or (
            best[name] == low and not (bounded and low <= 0)
        ):
            side = "upper" if best[name] == high else "lower"
            found.append(
                f"the best mIoU is at the {side} edge of `{AXES[name].grid}` ({best[name]:g}); "
                "widen the grid to see the peak"
            )
    return found
