"""Sensitivity figures (matplotlib): curves along the activation threshold, heatmaps of
2-D saliency grids. SVG output is deterministic (fixed hash salt, no date), so the same
results give the same bytes.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from wsssbed.eval.axes import AXES
from wsssbed.report.sensitivity import PLATEAU_TOLERANCE

plt.rcParams["svg.hashsalt"] = "wsssbed"
plt.rcParams["svg.fonttype"] = "none"
METRIC_TITLES = {"miou": "mIoU (%)", "bf_f": "boundary F (%)"}
AXIS_TITLES = {
    "threshold": "activation threshold (CAM score in [0, 1])",
    "sal_threshold": "saliency threshold (saliency in [0, 1])",
    "alpha": "power-bg exponent alpha (background = (1 - max)^alpha)",
}
PLATEAU_POINTS = 100 * PLATEAU_TOLERANCE  # the plateau, in points of the metric


def plain(text: str) -> str:
    """`text` shown as typed: run labels come from folder names, and matplotlib would read
    `$...$` in them as mathtext (and fail on a stranger's `$\\foo{$`)."""
    return text.replace("$", r"\$")


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


def distinct_labels(labels: list[str], runs: list[str]) -> list[str]:
    """Labels that appear twice get their run's date and id suffix, so legends tell them
    apart (`voc-cam (2026-11-25 5f3a2c1e)`)."""
    counts = {label: labels.count(label) for label in labels}
    return [
        label if counts[label] == 1 else f"{label} ({run[:4]}-{run[4:6]}-{run[6:8]} {run[-8:]})"
        for label, run in zip(labels, runs, strict=True)
    ]


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


def curves_figure(curves: list[Curve], axis: str, metric: str, title: str = "") -> plt.Figure:
    """One line per run: `metric` (in %) against `axis`, each run's chosen point marked
    and its plateau (within `PLATEAU_POINTS` of its best) shaded."""
    figure, ax = plt.subplots(figsize=(6.4, 4.0), dpi=100)
    for curve in curves:
        rows = curve.rows.sort_values(axis)
        xs = rows[axis].astype(float).to_numpy()
        ys = rows[metric].astype(float).to_numpy() * 100
        (line,) = ax.plot(xs, ys, marker=".", markersize=3, label=plain(curve.label))
        if np.isfinite(ys).any():
            for low, high in _plateau(xs, ys, PLATEAU_POINTS):
                ax.axvspan(low - 1e-3, high + 1e-3, color=line.get_color(), alpha=0.12, lw=0)
        if curve.chosen is not None:
            at = np.isclose(xs, curve.chosen, rtol=0, atol=1e-9)
            if at.any():
                y = ys[np.argmax(at)]
                ax.plot([curve.chosen], [y], marker="D", markersize=7, color=line.get_color(),
                        markeredgecolor="black", linestyle="none")  # fmt: skip
                ax.annotate(f"{curve.chosen_by} {curve.chosen:g}: {y:.1f}", (curve.chosen, y),
                            textcoords="offset points", xytext=(6, -12), fontsize=7)  # fmt: skip
    ax.set_xlabel(AXIS_TITLES.get(axis, axis))
    ax.set_ylabel(METRIC_TITLES[metric])
    ax.set_title(
        plain(title or f"{METRIC_TITLES[metric]} along the {AXES[axis].label}"), fontsize=9
    )
    ax.grid(alpha=0.3)
    if curves:
        shaded = f"shaded: within {PLATEAU_POINTS:g} points of the best"
        ax.legend(fontsize=7, loc="best", title=shaded, title_fontsize=6)
    figure.tight_layout()
    return figure


def heatmap_figure(
    rows: pd.DataFrame,
    title: str,
    metric: str = "miou",
    chosen: dict[str, float] | None = None,
    chosen_by: str = "",
) -> plt.Figure:
    """`metric` over a saliency threshold x activation threshold grid: the best point
    marked with a star, the shown point (when another) with a diamond."""
    table = rows.pivot_table(index="sal_threshold", columns="threshold", values=metric)
    values = table.to_numpy(dtype=float) * 100
    figure, ax = plt.subplots(figsize=(6.4, 4.0), dpi=100)
    image = ax.imshow(values, origin="lower", aspect="auto", cmap="viridis")
    ax.set_xticks(range(len(table.columns)), [f"{v:g}" for v in table.columns], rotation=90)
    ax.set_yticks(range(len(table.index)), [f"{v:g}" for v in table.index])
    best = np.unravel_index(np.nanargmax(values), values.shape)
    ax.plot(best[1], best[0], marker="*", color="white", markersize=12, linestyle="none",
            label=f"best {values[best]:.1f}")  # fmt: skip
    if chosen:
        column = np.flatnonzero(np.isclose(table.columns, chosen.get("threshold", np.nan)))
        row = np.flatnonzero(np.isclose(table.index, chosen.get("sal_threshold", np.nan)))
        if column.size and row.size:
            ax.plot(column[0], row[0], marker="D", color="white", markeredgecolor="black",
                    markersize=7, linestyle="none",
                    label=f"{chosen_by} {values[row[0], column[0]]:.1f}")  # fmt: skip
    ax.legend(fontsize=7, loc="upper right", framealpha=0.8)
    ax.set_xlabel(AXIS_TITLES["threshold"])
    ax.set_ylabel(AXIS_TITLES["sal_threshold"])
    ax.set_title(plain(title), fontsize=9)
    figure.colorbar(image, ax=ax, label=METRIC_TITLES[metric])
    figure.tight_layout()
    return figure


def svg_text(figure: plt.Figure) -> str:
    """The figure as deterministic SVG text (closes the figure)."""
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", metadata={"Date": None})
    plt.close(figure)
    return buffer.getvalue()


def encoded(figure: plt.Figure, stem: str) -> dict[str, bytes]:
    """`<stem>.png` and `<stem>.svg` as bytes, to be written with the rest of a report
    (closes the figure)."""
    png = io.BytesIO()
    figure.savefig(png, format="png", metadata={"Software": None})
    return {f"{stem}.png": png.getvalue(), f"{stem}.svg": svg_text(figure).encode()}
