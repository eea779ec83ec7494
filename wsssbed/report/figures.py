"""Sensitivity figures (matplotlib): curves along the activation threshold, heatmaps of
2-D saliency grids. SVG output is deterministic (fixed hash salt, no date), so the same
results give the same bytes.
"""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from wsssbed.imageio import write_atomic

plt.rcParams["svg.hashsalt"] = "wsssbed"
plt.rcParams["svg.fonttype"] = "none"
METRIC_TITLES = {"miou": "mIoU (%)", "bf_f": "boundary F (%)"}


def plain(text: str) -> str:
    """`text` shown as typed: run labels come from folder names, and matplotlib would read
    `$...$` in them as mathtext (and fail on a stranger's `$\\foo{$`)."""
    return text.replace("$", r"\$")


def curves_figure(lines: list[tuple[str, pd.DataFrame]], axis: str, metric: str) -> plt.Figure:
    """One line per run: `metric` (in %) against `axis`.

    Args:
        lines: (label, that run's sweeps rows) pairs; 2-D runs should be cut to one line.
    """
    figure, ax = plt.subplots(figsize=(6.4, 4.0), dpi=100)
    for label, rows in lines:
        rows = rows.sort_values(axis)
        values = rows[metric].astype(float) * 100
        ax.plot(rows[axis].astype(float), values, marker=".", markersize=3, label=plain(label))
    ax.set_xlabel("activation threshold" if axis == "threshold" else "power-bg alpha")
    ax.set_ylabel(METRIC_TITLES[metric])
    ax.grid(alpha=0.3)
    if lines:
        ax.legend(fontsize=7, loc="best")
    figure.tight_layout()
    return figure


def heatmap_figure(rows: pd.DataFrame, title: str, metric: str = "miou") -> plt.Figure:
    """mIoU over a saliency threshold x activation threshold grid, best point marked."""
    table = rows.pivot_table(index="sal_threshold", columns="threshold", values=metric)
    values = table.to_numpy(dtype=float) * 100
    figure, ax = plt.subplots(figsize=(6.4, 4.0), dpi=100)
    image = ax.imshow(values, origin="lower", aspect="auto", cmap="viridis")
    ax.set_xticks(range(len(table.columns)), [f"{v:g}" for v in table.columns], rotation=90)
    ax.set_yticks(range(len(table.index)), [f"{v:g}" for v in table.index])
    best = np.unravel_index(np.nanargmax(values), values.shape)
    ax.plot(best[1], best[0], marker="*", color="white", markersize=12)
    ax.set_xlabel("activation threshold")
    ax.set_ylabel("saliency threshold")
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


def save(figure: plt.Figure, stem: Path) -> list[Path]:
    """Write `<stem>.png` and `<stem>.svg` atomically (closes the figure)."""
    png = io.BytesIO()
    figure.savefig(png, format="png", metadata={"Software": None})
    svg = svg_text(figure).encode()
    paths = [stem.with_suffix(".png"), stem.with_suffix(".svg")]
    for path, payload in zip(paths, (png.getvalue(), svg)):
        write_atomic(path, lambda f, p=payload: f.write(p))
    return paths
