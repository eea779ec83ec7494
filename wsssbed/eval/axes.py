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
    """

    name: str
    grid: str
    default: str
    label: str


AXES = {
    a.name: a
    for a in (
        AxisInfo("threshold", "thresholds", "0:0.6:0.01", "activation threshold"),
        AxisInfo("alpha", "alphas", "1:32:1", "power-bg exponent alpha"),
        AxisInfo("sal_threshold", "sal_thresholds", "0.2", "saliency threshold"),
    )
}
AXIS_COLUMNS = tuple(AXES)  # in the results schema's order
GRID_PARAMETERS = {a.grid: a.name for a in AXES.values()}  # `thresholds` -> `threshold`
DISPLAY_ORDER = ("sal_threshold", "threshold", "alpha")  # how a grid point is printed
