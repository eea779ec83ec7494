"""The grid axes a sweep rule can have: one table, the only place their names are spelled.

Each axis is a column of `sweeps.parquet` (null where a run's rule lacks it), a grid
parameter (`thresholds`, `alphas`, `sal_thresholds`: the CLI's `--thresholds` and the
API's `thresholds=`), and a label for figures. A rule names the axes it uses; a new
axis is a new row here and a new column of the results schema.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class AxisInfo:
    """One axis.

    Attributes:
        name: column of the results (`threshold`).
        grid: the parameter that takes its grid (`thresholds`).
        default: the default grid, in `start:stop:step` or comma syntax.
        label: axis title for figures and tables.
        scores: the axis thresholds scores in [0, 1] (a value above 1 is a mistake,
            usually a percentage).
    """

    name: str
    grid: str
    default: str
    label: str
    scores: bool = False


AXES = {
    a.name: a
    for a in (
        AxisInfo("threshold", "thresholds", "0:0.6:0.01", "activation threshold", True),
        AxisInfo("alpha", "alphas", "1:32:1", "power-bg exponent alpha"),
        AxisInfo("sal_threshold", "sal_thresholds", "0.2", "saliency threshold", True),
    )
}
AXIS_COLUMNS = tuple(AXES)  # in the results schema's order
GRID_PARAMETERS = {a.grid: a.name for a in AXES.values()}  # `thresholds` -> `threshold`
DISPLAY_ORDER = ("sal_threshold", "threshold", "alpha")  # how a grid point is printed


def grid_warnings(grids: tuple[tuple[str, tuple[float, ...]], ...]) -> list[str]:
    """Grids that look like percentages (a score threshold above 1)."""
    found = []
    for name, values in grids:
        axis = AXES[name]
        if axis.scores and values and max(values) > 1:
            found.append(
                f"`{axis.grid}` goes up to {max(values):g}, but scores are in [0, 1]: "
                f"percentages? (write `0:0.6:0.01`, not `0:60:1`)"
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
