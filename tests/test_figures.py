"""Figures for print: labels that never overlap (from matplotlib's text extents), one
marker per meaning, sizes for one and two paper columns, PNG / SVG / PDF output."""

from __future__ import annotations

import itertools
import re

import numpy as np
import pandas as pd
import pytest
from matplotlib.text import Text
from PIL import Image

from wsssbed.errors import InputError
from wsssbed.report import figures


def _rows(peak: float, shift: float = 0.0) -> pd.DataFrame:
    """A 1-D sweep with its maximum at threshold `peak`."""
    xs = np.round(np.arange(0, 0.61, 0.05), 2)
    ys = 0.6 - (xs - peak) ** 2 + shift
    return pd.DataFrame({"threshold": xs, "miou": ys, "bf_f": ys / 2})


def _grid() -> pd.DataFrame:
    rows = []
    for s, t in itertools.product([0.1, 0.2, 0.3], [0.0, 0.05, 0.1, 0.15]):
        rows.append({"sal_threshold": s, "threshold": t, "miou": 0.5 + s - (t - 0.1) ** 2})
    return pd.DataFrame(rows)


def _similar_runs() -> list[figures.Curve]:
    """Two nearly identical runs shown at one recommended point: the old annotations of
    their values printed on top of each other."""
    return [
        figures.Curve("cam (2026-11-25 aaaaaaaa)", _rows(0.3), 0.25, "recommended"),
        figures.Curve("cam (2026-11-26 bbbbbbbb)", _rows(0.3, 0.001), 0.25, "recommended"),
        figures.Curve("eps + a long saliency source name (saliency-rule)", _rows(0.4), 0.25,
                      "recommended"),
    ]  # fmt: skip


def _texts(figure) -> list[Text]:
    """Every text the figure draws: tick labels only where their tick is inside the axis
    (matplotlib keeps a few hidden ones beyond its limits)."""
    figure.canvas.draw()
    ticks, drawn = set(), []
    for ax in figure.axes:
        for axis, (low, high) in ((ax.xaxis, ax.get_xlim()), (ax.yaxis, ax.get_ylim())):
            low, high = sorted((low, high))
            for tick in axis.get_major_ticks():
                ticks.add(tick.label1)
                if low - 1e-9 <= tick.get_loc() <= high + 1e-9:
                    drawn.append(tick.label1)
    drawn += [t for t in figure.findobj(Text) if t not in ticks]
    return [t for t in drawn if t.get_visible() and t.get_text().strip()]


def _overlaps(a, b) -> bool:
    """Two boxes share area (touching edges do not count)."""
    return min(a.x1, b.x1) - max(a.x0, b.x0) > 0.5 and min(a.y1, b.y1) - max(a.y0, b.y0) > 0.5


@pytest.mark.parametrize("width", ["column", "page"])
@pytest.mark.parametrize("kind", ["curves", "heatmap"])
def test_no_two_labels_overlap_and_all_stay_in_the_figure(width, kind):
    title = "sample-cam + sample-sal (saliency-rule) on PASCAL VOC 2012, train"  # a long one
    if kind == "curves":
        figure = figures.curves_figure(_similar_runs(), "threshold", "miou", title, width)
    else:
        chosen = {"threshold": 0.05, "sal_threshold": 0.2}
        figure = figures.heatmap_figure(_grid(), title, "miou", chosen, "recommended", width)
    texts = _texts(figure)
    renderer = figure.canvas.get_renderer()
    boxes = [t.get_window_extent(renderer) for t in texts]
    whole = figure.bbox
    for text, box in zip(texts, boxes, strict=True):
        assert box.x0 >= -0.5 and box.y0 >= -0.5, text.get_text()
        assert box.x1 <= whole.x1 + 0.5 and box.y1 <= whole.y1 + 0.5, text.get_text()
    for (a, box_a), (b, box_b) in itertools.combinations(zip(texts, boxes, strict=True), 2):
        assert not _overlaps(box_a, box_b), (a.get_text(), b.get_text())
    (legend,) = figure.legends
    axes = figure.axes[0].get_window_extent(renderer)
    assert not _overlaps(legend.get_window_extent(renderer), axes)  # never on the data
    assert min(t.get_fontsize() for t in legend.get_texts()) >= 7  # readable in print
    assert figure.get_size_inches()[0] == figures.WIDTHS[width]


def _legend(figure) -> list[str]:
    (legend,) = figure.legends
    return [t.get_text() for t in legend.get_texts()]


def test_each_meaning_is_once_in_the_legend_and_the_best_stays_visible():
    runs = _similar_runs()
    figure = figures.curves_figure(runs, "threshold", "miou")
    labels = _legend(figure)
    for meaning in ("best point", "recommended point", "within 1 point of best"):
        assert labels.count(meaning) == 1
    assert len(labels) == len(runs) + 3
    stars = [m for m in figure.axes[0].get_lines() if m.get_marker() == "*"]
    diamonds = [m for m in figure.axes[0].get_lines() if m.get_marker() == "D"]
    assert len(stars) == len(diamonds) == len(runs)  # every best point stays marked
    for curve, star in zip(runs, stars, strict=True):
        best = curve.rows.loc[curve.rows.miou.idxmax()]
        assert star.get_xdata()[0] == best.threshold
        assert star.get_ydata()[0] == pytest.approx(100 * best.miou)
    # the heatmap: a star for the best; no second "best" entry when the best is shown
    best = {"threshold": 0.1, "sal_threshold": 0.3}
    labels = _legend(figures.heatmap_figure(_grid(), "t", "miou", best, "best"))
    assert len(labels) == 1 and labels[0].startswith("best point")
    other = {"threshold": 0.0, "sal_threshold": 0.1}
    labels = _legend(figures.heatmap_figure(_grid(), "t", "miou", other, "recommended"))
    assert [label.split(":")[0] for label in labels] == ["best point", "recommended point"]
    grid = _grid()
    assert labels[0] == f"best point: {100 * grid.miou.max():.1f}"


def test_one_run_names_its_values_in_the_legend():
    (curve,) = _similar_runs()[:1]
    figure = figures.curves_figure([curve], "threshold", "miou")
    best = curve.rows.loc[curve.rows.miou.idxmax()]
    at = curve.rows.set_index("threshold").miou[0.25]
    expected = (f"{curve.label}: best {100 * best.miou:.1f} at {best.threshold:g}; "
                f"recommended {100 * at:.1f} at 0.25")  # fmt: skip
    assert _legend(figure)[0].replace("\n", " ") == expected


def test_plateau_grammar():
    assert figures.points_text(1) == "1 point"
    assert figures.points_text(0.5) == "0.5 points"
    assert figures.points_text(2) == "2 points"


@pytest.mark.parametrize("width", ["column", "page"])
def test_sizes_dpi_and_formats(tmp_path, width):
    options = figures.FigureOptions(width, dpi=150, formats=("png", "svg", "pdf"))
    figure = figures.curves_figure(_similar_runs(), "threshold", "miou", "t", width)
    paths = figures.save(figure, tmp_path / "curves", options)
    assert [p.name for p in paths] == ["curves.png", "curves.svg", "curves.pdf"]
    inches = figures.WIDTHS[width], figures.HEIGHTS[width]
    with Image.open(paths[0]) as png:
        assert png.size == (round(inches[0] * 150), round(inches[1] * 150))
    svg = paths[1].read_text()
    assert re.search(rf'width="{inches[0] * 72:g}pt"', svg)
    pdf = paths[2].read_bytes()
    assert pdf.startswith(b"%PDF")
    media = re.search(rb"/MediaBox \[\s*0 0 ([\d.]+) ([\d.]+)\s*\]", pdf)
    assert (float(media[1]), float(media[2])) == pytest.approx((72 * inches[0], 72 * inches[1]))
    assert b"CreationDate" not in pdf  # deterministic bytes
    again = figures.save(figures.curves_figure(_similar_runs(), "threshold", "miou", "t", width),
                         tmp_path / "again", options)  # fmt: skip
    assert again[2].read_bytes() == pdf and again[1].read_text() == svg


def test_bad_figure_options_are_refused():
    with pytest.raises(InputError, match="column or page"):
        figures.FigureOptions("a4")
    with pytest.raises(InputError, match="png, svg, pdf"):
        figures.FigureOptions(formats=("jpg",))
    with pytest.raises(InputError, match="dpi"):
        figures.FigureOptions(dpi=5)
