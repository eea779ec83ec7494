"""Sensitivity figures (matplotlib), sized for print: curves along the activation
threshold and heatmaps of 2-D saliency grids.

Figures are one column (3.3 in) or two columns (6.9 in) of a two-column paper wide, with
8 pt text, so they print at their size without scaling. Each marker has one meaning, named
once in the legend: a star is the best point of the metric plotted, a hollow diamond the
point a report shows (recommended, transferred or oracle), a shaded band the range within
`PLATEAU_POINTS` of the best. Run names (and a lone run's values; several runs' values
are in the statistics table) live in the legend, below the axes, so no label sits on a
curve or on another label.

SVG and PDF output are deterministic (fixed hash salt, no date), so the same results give
the same bytes.
"""

from __future__ import annotations

import io
import textwrap
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from wsssbed.errors import InputError
from wsssbed.eval.axes import AXES
from wsssbed.io.imageio import write_atomic
from wsssbed.report.sensitivity import PLATEAU_TOLERANCE

METRIC_TITLES = {"miou": "mIoU (%)", "bf_f": "boundary F (%)"}
AXIS_TITLES = {
    "threshold": "activation threshold (CAM score in [0, 1])",
    "sal_threshold": "saliency threshold (saliency in [0, 1])",
    "alpha": "power-bg exponent α (background = (1 − max)^α)",
}
PLATEAU_POINTS = 100 * PLATEAU_TOLERANCE  # the plateau, in points of the metric
WIDTHS = {"column": 3.3, "page": 6.9}  # inches: one column, both columns of a paper
HEIGHTS = {"column": 3.3, "page": 3.6}  # the legend below the axes takes part of it
FORMATS = ("png", "svg", "pdf")
STYLE = {
    "font.size": 8,
    "axes.titlesize": 8,
    "axes.labelsize": 8,
    "xtick.labelsize": 7,
    "ytick.labelsize": 7,
    "legend.fontsize": 7.5,
    "svg.hashsalt": "wsssbed",
    "svg.fonttype": "none",
}
BEST_MARKER = {"marker": "*", "markersize": 9, "markeredgecolor": "black", "markeredgewidth": 0.5}
SHOWN_MARKER = {"marker": "D", "markersize": 8, "markerfacecolor": "none", "markeredgewidth": 1.4}


@dataclass(frozen=True)
class FigureOptions:
    """How figures are sized and saved.

    Attributes:
        width: `column` (3.3 in) or `page` (6.9 in, both columns).
        dpi: resolution of PNG files (vector formats ignore it).
        formats: file types to write, from `FORMATS`.
    """

    width: str = "page"
    dpi: int = 200
    formats: tuple[str, ...] = FORMATS

    def __post_init__(self) -> None:
        if self.width not in WIDTHS:
            raise InputError(f"figure width {self.width!r}: use {' or '.join(WIDTHS)}")
        unknown = sorted(set(self.formats) - set(FORMATS))
        if unknown or not self.formats:
            raise InputError(f"figure format {', '.join(unknown)}: use {', '.join(FORMATS)}")
        if not 50 <= self.dpi <= 1200:
            raise InputError(f"dpi {self.dpi}: use a value from 50 to 1200")

    @property
    def size(self) -> tuple[float, float]:
        """(width, height) in inches."""
        return WIDTHS[self.width], HEIGHTS[self.width]


def plain(text: str) -> str:
    """`text` shown as typed: run labels come from folder names, and matplotlib would read
    `$...$` in them as mathtext (and fail on a stranger's `$\\foo{$`)."""
    return text.replace("$", r"\$")


def points_text(points: float) -> str:
    """`1 point`, `0.5 points`: the plateau's tolerance in words."""
    return f"{points:g} point" + ("" if points == 1 else "s")


@dataclass(frozen=True)
class Curve:
    """One run's line in a curves figure.

    Attributes:
        label: legend text (made unique by `distinct_labels` when runs share a name).
        rows: that run's sweeps rows along one axis (a 2-D run cut to one line).
        chosen: the axis value of the point the report shows, or None.
        chosen_by: how it was chosen (`recommended`, `transferred`, `oracle`, `best`).
    """

    label: str
    rows: pd.DataFrame
    chosen: float | None = None
    chosen_by: str = ""


def _plateau(xs: np.ndarray, ys: np.ndarray, tolerance: float) -> list[tuple[float, float]]:
    """Contiguous x ranges where y is within `tolerance` of its maximum."""
    good = ys >= np.nanmax(ys) - tolerance
    spans, start = [], None
    for i, flag in enumerate(good):
        if flag and start is None:
            start = i
        if start is not None and (not flag or i == len(good) - 1):
            stop = i if flag else i - 1
            spans.append((float(xs[start]), float(xs[stop])))
            start = None
    return spans


def _shown_kind(chosen_by: str) -> str | None:
    """The meaning of a run's diamond, or None when the shown point is just its best."""
    return None if chosen_by in ("", "best") else chosen_by


def _best_handle() -> Line2D:
    return Line2D([], [], linestyle="none", color="0.6", **BEST_MARKER)


def _shown_handle() -> Line2D:
    return Line2D([], [], linestyle="none", markeredgecolor="0.1", **SHOWN_MARKER)


def _meaning_handles(kinds: list[str], shading: bool) -> list[tuple[Line2D | Patch, str]]:
    """One legend entry per marker meaning: the best star, each kind of shown point, the
    plateau's shading."""
    entries: list[tuple[Line2D | Patch, str]] = [(_best_handle(), "best point")]
    entries += [(_shown_handle(), f"{kind} point") for kind in kinds]
    if shading:
        entries.append(
            (Patch(color="0.5", alpha=0.25, lw=0), f"within {points_text(PLATEAU_POINTS)} of best")
        )
    return entries


def _set_title(ax: plt.Axes, title: str) -> None:
    """The axes' title, wrapped at spaces (measured after layout) to stay in the figure."""
    text, figure = plain(title), ax.figure
    for _ in range(4):
        ax.set_title(text)
        figure.canvas.draw()
        box = ax.title.get_window_extent()
        if box.x0 >= 0 and box.x1 <= figure.bbox.width:
            return
        center = (box.x0 + box.x1) / 2  # the title stays centred over the axes
        room = 2 * min(center, figure.bbox.width - center)
        longest = max(len(line) for line in text.splitlines())
        text = textwrap.fill(plain(title), max(12, int(longest * room / box.width) - 2))


def _legend_below(figure: plt.Figure, entries: list[tuple], width: str) -> None:
    """The legend under the axes: in one row (up to 3 entries) or two columns when that
    fits the figure's width, else in one column, else with labels wrapped at spaces."""
    per_line = {"column": 48, "page": 110}[width]
    tries = [(1, None), (1, per_line)]
    if len(entries) > 1:
        tries.insert(0, (len(entries) if len(entries) <= 3 else 2, None))
    for columns, wrap in tries:
        labels = [plain(label) for _, label in entries]
        if wrap:
            labels = [textwrap.fill(label, wrap) for label in labels]
        legend = figure.legend([h for h, _ in entries], labels, loc="outside lower center",
                               ncols=columns, frameon=False, handlelength=1.6,
                               columnspacing=1.2)  # fmt: skip
        figure.canvas.draw()
        if legend.get_window_extent().width <= figure.bbox.width or wrap:
            return
        legend.remove()


def curves_figure(
    curves: list[Curve], axis: str, metric: str, title: str = "", width: str = "page"
) -> plt.Figure:
    """One line per run: `metric` (in %) against `axis`; each run's best point starred,
    its shown point (when chosen otherwise) in a hollow diamond, its plateau shaded.

    Args:
        width: `column` or `page` (`WIDTHS`).
    """
    with plt.rc_context(STYLE):
        figure = plt.figure(figsize=FigureOptions(width).size, layout="constrained")
        ax = figure.add_subplot()
        entries, kinds, shaded = [], [], False
        for curve in curves:
            rows = curve.rows.sort_values(axis)
            xs = rows[axis].astype(float).to_numpy()
            ys = rows[metric].astype(float).to_numpy() * 100
            (line,) = ax.plot(xs, ys, linewidth=1.2)
            color = line.get_color()
            label = curve.label
            if np.isfinite(ys).any():
                shaded = True
                for low, high in _plateau(xs, ys, PLATEAU_POINTS):
                    ax.axvspan(low - 1e-3, high + 1e-3, color=color, alpha=0.12, lw=0)
                best = int(np.nanargmax(ys))
                ax.plot(xs[best], ys[best], color=color, zorder=4, **BEST_MARKER)
                if len(curves) == 1:  # room for the values (several runs: the stats table)
                    label += f": best {ys[best]:.1f} at {xs[best]:g}"
            kind = _shown_kind(curve.chosen_by)
            at = np.isclose(xs, np.nan if curve.chosen is None else curve.chosen, atol=1e-9)
            if kind is not None and at.any():
                y = ys[np.argmax(at)]
                ax.plot(curve.chosen, y, markeredgecolor=color, zorder=5, **SHOWN_MARKER)
                if len(curves) == 1:
                    label += f"; {kind} {y:.1f} at {curve.chosen:g}"
                kinds += [kind] if kind not in kinds else []
            entries.append((line, label))
        ax.set_xlabel(AXIS_TITLES.get(axis, axis))
        ax.set_ylabel(METRIC_TITLES[metric])
        _set_title(ax, title or f"{METRIC_TITLES[metric]} along the {AXES[axis].label}")
        ax.grid(alpha=0.3)
        if curves:
            _legend_below(figure, entries + _meaning_handles(kinds, shaded), width)
    return figure


def heatmap_figure(
    rows: pd.DataFrame,
    title: str,
    metric: str = "miou",
    chosen: dict[str, float] | None = None,
    chosen_by: str = "",
    width: str = "page",
) -> plt.Figure:
    """`metric` over a saliency threshold x activation threshold grid: the best point
    starred, the shown point (when chosen otherwise) in a hollow diamond."""
    table = rows.pivot_table(index="sal_threshold", columns="threshold", values=metric)
    values = table.to_numpy(dtype=float) * 100
    with plt.rc_context(STYLE):
        figure = plt.figure(figsize=FigureOptions(width).size, layout="constrained")
        ax = figure.add_subplot()
        image = ax.imshow(values, origin="lower", aspect="auto", cmap="viridis")
        ax.set_xticks(range(len(table.columns)), [f"{v:g}" for v in table.columns], rotation=90)
        ax.set_yticks(range(len(table.index)), [f"{v:g}" for v in table.index])
        best = np.unravel_index(np.nanargmax(values), values.shape)
        ax.plot(best[1], best[0], color="white", linestyle="none", **BEST_MARKER)
        entries = [(_best_handle(), f"best point: {values[best]:.1f}")]
        kind = _shown_kind(chosen_by)
        if chosen and kind is not None:
            column = np.flatnonzero(np.isclose(table.columns, chosen.get("threshold", np.nan)))
            row = np.flatnonzero(np.isclose(table.index, chosen.get("sal_threshold", np.nan)))
            if column.size and row.size:
                ax.plot(column[0], row[0], linestyle="none", markeredgecolor="white",
                        **SHOWN_MARKER)  # fmt: skip
                entries.append((_shown_handle(), f"{kind} point: {values[row[0], column[0]]:.1f}"))
        ax.set_xlabel(AXIS_TITLES["threshold"])
        ax.set_ylabel(AXIS_TITLES["sal_threshold"])
        figure.colorbar(image, ax=ax, label=METRIC_TITLES[metric])
        _set_title(ax, title)
        _legend_below(figure, entries, width)
    return figure


def svg_text(figure: plt.Figure) -> str:
    """The figure as deterministic SVG text (closes the figure)."""
    buffer = io.StringIO()
    with plt.rc_context(STYLE):
        figure.savefig(buffer, format="svg", metadata={"Date": None})
    plt.close(figure)
    return buffer.getvalue()


METADATA = {"png": {"Software": None}, "svg": {"Date": None}, "pdf": {"CreationDate": None}}


def save(figure: plt.Figure, stem: Path, options: FigureOptions | None = None) -> list[Path]:
    """Write `<stem>.<format>` for each of `options.formats`, atomically (closes the figure)."""
    options = options or FigureOptions()
    paths = []
    with plt.rc_context(STYLE):
        for fmt in options.formats:
            buffer = io.BytesIO()
            figure.savefig(buffer, format=fmt, dpi=options.dpi, metadata=METADATA[fmt])
            path = stem.with_name(f"{stem.name}.{fmt}")
            write_atomic(path, lambda f, p=buffer.getvalue(): f.write(p))
            paths.append(path)
    plt.close(figure)
    return paths
