"""`wsssbed results export`: the best points of chosen runs as a table for a paper.

One row per run (its method's name, made unique when a method has several runs on one
subset), the columns a WSSS paper prints: the subset and stage when the runs differ in
them, the best grid point (each axis a column), mIoU under a named convention, boundary F
when any run has it, and the per-class IoU at that point in the dataset's class order (the
wide table of VOC papers; a class absent from every run's images has no column). Scores
are percentages, rounded to `digits` places; the unit is in the header, never in a cell.
The best value of each score column is bold (every run that ties it at the shown
precision).

Rendering uses pandas' `Styler.to_latex` (booktabs rules: `\\toprule`, `\\midrule`,
`\\bottomrule`; needs `\\usepackage{booktabs}`), `tabulate` (GitHub Markdown) and
`DataFrame.to_csv`.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from wsssbed.datasets import spec_of_run
from wsssbed.datasets.fingerprint import with_subsets
from wsssbed.errors import InputError
from wsssbed.eval.axes import DISPLAY_ORDER
from wsssbed.eval.summary import GLOSSARY, MIOU_CONVENTIONS
from wsssbed.report.sensitivity import distinct_labels, run_label
from wsssbed.results.store import best_row, read_table

FORMATS = ("latex", "markdown", "csv")
AXIS_HEADERS = {"sal_threshold": "Saliency thr.", "threshold": "Threshold", "alpha": "Alpha"}
CLASS_GROUP = "IoU per class (%)"
TEXT_COLUMNS = (("", "Method"), ("", "Split"), ("", "Stage"))
MISSING = {"latex": "--", "markdown": "–", "csv": ""}  # an en dash in each


@dataclass
class ExportOptions:
    """Which runs and how.

    Attributes:
        methods: method names, run labels or run ids, in the order of the rows; empty:
            every run (in the order they were made).
        dataset: keep runs on this dataset (required when runs span several).
        convention: the mIoU column (`MIOU_CONVENTIONS`) that picks each run's best point
            and fills the mIoU column.
        digits: decimal places of the percentages.
        classes: add the per-class IoU columns.
    """

    methods: list[str] = field(default_factory=list)
    dataset: str | None = None
    convention: str = "miou"
    digits: int = 1
    classes: bool = True


@dataclass
class PaperTable:
    """The table before rendering.

    Attributes:
        frame: one row per run; columns a two-level index (group, header); scores are
            percentages (not rounded), text columns strings.
        scores: the score columns (rounded, compared and made bold).
        digits: decimal places of the scores.
        note: what the mIoU column means (the convention, in one sentence).
        runs: the runs tabulated (`runs` rows with `with_subsets`' columns), row by row.
    """

    frame: pd.DataFrame
    scores: list[tuple[str, str]]
    digits: int
    note: str
    runs: pd.DataFrame


def _select(runs: pd.DataFrame, options: ExportOptions, results: Path) -> pd.DataFrame:
    if options.dataset is not None:
        runs = runs[runs.dataset == options.dataset]
    labels = runs.apply(run_label, axis=1) if not runs.empty else pd.Series(dtype=str)
    if options.methods:
        chosen = []
        for order, name in enumerate(options.methods):
            found = runs[(runs.method == name) | (runs.run_id == name) | (labels == name)]
            if found.empty:
                raise InputError(f"--method {name!r}: no stored run has that method, label or id")
            chosen.append(found.assign(order=order))
        runs = pd.concat(chosen).drop_duplicates("run_id")
    else:
        runs = runs.assign(order=0)
    if runs.empty:
        raise InputError("no stored runs match the selection", results)
    datasets = sorted(set(runs.dataset))
    if len(datasets) > 1:
        raise InputError(
            f"the runs are on {len(datasets)} datasets ({', '.join(datasets)}), whose classes "
            "differ: choose one with --dataset"
        )
    return runs.sort_values(["order", "started_at"], kind="stable")  # then as appended


def paper_table(results: Path, options: ExportOptions) -> PaperTable:
    """The best point of each selected run (by `options.convention`) and its per-class IoU.

    Raises:
        InputError: an unknown convention, a name no run has, runs on several datasets.
    """
    if options.convention not in MIOU_CONVENTIONS:
        raise InputError(
            f"--convention {options.convention!r}: use one of {', '.join(MIOU_CONVENTIONS)}"
        )
    if not 0 <= options.digits <= 6:
        raise InputError(f"--digits {options.digits}: use 0 to 6")
    runs = with_subsets(_select(read_table(results, "runs"), options, results))
    sweeps = read_table(results, "sweeps")
    per_class = read_table(results, "per_class")
    best = [best_row(sweeps[sweeps.run_id == r], options.convention) for r in runs.run_id]
    labels = distinct_labels(
        [run_label(r) for _, r in runs.iterrows()], list(runs.run_id), list(runs.subset_key)
    )
    columns: dict[tuple[str, str], list] = {("", "Method"): labels}
    for name, header in (("subset", "Split"), ("stage", "Stage")):
        if runs[name].nunique() > 1:
            columns[("", header)] = list(runs[name])
    for axis in DISPLAY_ORDER:
        values = [row[axis] for row in best]
        if any(pd.notna(v) for v in values):
            columns[("", AXIS_HEADERS[axis])] = [_axis_text(v) for v in values]
    mean = "mIoU (%)" if options.convention == "miou" else f"mIoU [{options.convention}] (%)"
    scores = [("", mean)]
    columns[scores[0]] = [100 * float(row[options.convention]) for row in best]
    if any(pd.notna(row.bf_f) for row in best):
        scores.append(("", "BF (%)"))
        columns[scores[-1]] = [100 * float(row.bf_f) for row in best]
    if options.classes:
        spec = spec_of_run(runs.iloc[0])
        for class_id, name in enumerate(spec.classes):
            values = [_class_iou(per_class, r, int(b.point), class_id)
                      for r, b in zip(runs.run_id, best, strict=True)]  # fmt: skip
            if not np.isnan(values).all():  # a class no run's images hold: no column
                columns[(CLASS_GROUP, name)] = values
                scores.append((CLASS_GROUP, name))
    frame = pd.DataFrame(columns)
    frame.columns = pd.MultiIndex.from_tuples(columns)
    note = GLOSSARY.get(options.convention, options.convention)
    return PaperTable(frame, scores, options.digits, f"{mean}: {note}", runs)


def _axis_text(value: object) -> str | None:
    return None if value is None or pd.isna(value) else f"{float(value):g}"


def _class_iou(per_class: pd.DataFrame, run_id: str, point: int, class_id: int) -> float:
    """IoU (%) of one class at one point; NaN where its union is empty (undefined)."""
    row = per_class[
        (per_class.run_id == run_id) & (per_class.point == point) & (per_class.class_id == class_id)
    ]
    if row.empty or int(row.union.iloc[0]) == 0:
        return float("nan")
    return 100 * float(row.iou.iloc[0])


def _shown(values: pd.Series, digits: int) -> pd.Series:
    """The values as the table prints them (so ties at that precision tie)."""
    return values.map(lambda v: float(f"{v:.{digits}f}") if pd.notna(v) else np.nan)


def _best(table: PaperTable) -> pd.DataFrame:
    """True where a score is its column's highest at the shown precision."""
    marks = pd.DataFrame(False, index=table.frame.index, columns=table.frame.columns)
    for column in table.scores:
        shown = _shown(table.frame[column], table.digits)
        if shown.notna().any():
            marks[column] = shown == shown.max()
    return marks


def render(table: PaperTable, fmt: str) -> str:
    """The table as LaTeX (a booktabs `tabular`), GitHub Markdown or CSV text."""
    if fmt == "latex":
        return _latex(table)
    if fmt == "markdown":
        return _markdown(table)
    if fmt == "csv":
        return _csv(table)
    raise InputError(f"--format {fmt!r}: use one of {', '.join(FORMATS)}")


def _latex(table: PaperTable) -> str:
    frame, marks, scores = table.frame, _best(table), table.scores
    if CLASS_GROUP not in frame.columns.get_level_values(0):  # one header row suffices
        frame, marks = frame.droplevel(0, axis=1), marks.droplevel(0, axis=1)
        scores = [name for _, name in scores]
    styler = (
        frame.style.hide(axis="index")
        .format(precision=table.digits, na_rep=MISSING["latex"], escape="latex")
        .format_index(escape="latex", axis=1)
        .apply(lambda c: np.where(marks[c.name], "textbf:--rwrap;", ""), subset=scores)
    )
    align = "".join("l" if _is_text(c) else "r" for c in table.frame.columns)
    body = styler.to_latex(hrules=True, column_format=align, multicol_align="c")
    return f"% wsssbed results export; needs \\usepackage{{booktabs}}\n% {table.note}\n{body}"


def _is_text(column: tuple[str, str]) -> bool:
    """Columns of words (left-aligned); the others hold numbers."""
    return column in TEXT_COLUMNS


def _flat(frame: pd.DataFrame) -> list[str]:
    """One header per column: a class's IoU as `aeroplane IoU (%)`."""
    return [f"{name} IoU (%)" if group == CLASS_GROUP else name for group, name in frame.columns]


def _markdown(table: PaperTable) -> str:
    from tabulate import tabulate

    frame, marks = table.frame, _best(table)
    cells = []
    for index, row in frame.iterrows():
        line = []
        for column in frame.columns:
            value = row[column]
            if pd.isna(value):
                line.append(MISSING["markdown"])
            elif column in table.scores:
                text = f"{value:.{table.digits}f}"
                line.append(f"**{text}**" if marks.at[index, column] else text)
            else:
                line.append(str(value))
        cells.append(line)
    align = ["left" if _is_text(c) else "right" for c in frame.columns]
    body = tabulate(cells, _flat(frame), tablefmt="github", colalign=align, disable_numparse=True)
    return f"{body}\n\n{table.note}\n"


def _csv(table: PaperTable) -> str:
    frame = table.frame.copy()
    for column in table.scores:
        frame[column] = _shown(frame[column], table.digits)
    frame.columns = _flat(frame)
    buffer = io.StringIO()
    frame.to_csv(buffer, index=False, float_format=f"%.{table.digits}f")
    return buffer.getvalue()
