"""`wsssbed sensitivity`: statistics, transfer, intervals and figures for stored runs."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from wsssbed.datasets import dataset_title, spec_of_run
from wsssbed.datasets.fingerprint import with_subsets
from wsssbed.errors import InputError
from wsssbed.eval.axes import AXIS_COLUMNS, scale_error
from wsssbed.io.imageio import write_atomic
from wsssbed.io.names import check_id
from wsssbed.io.outputs import inside
from wsssbed.io.ownership import OutputFolder
from wsssbed.report import figures
from wsssbed.report.sensitivity import (
    MAX_HALVES,
    PerImage,
    activation_axis,
    bootstrap_interval,
    check_draws,
    curve_stats,
    distinct_labels,
    is_2d,
    paired_comparison,
    recommended_point,
    run_label,
    split_half_transfer,
    split_transfer,
)
from wsssbed.results.store import best_row, read_table


@dataclass
class StudyOptions:
    """What to study and how.

    Attributes:
        methods: keep runs of these methods (manifest names); empty: every run.
        dataset: keep runs on this dataset.
        recommended: a point to score every run at (overrides pipeline manifests).
        compare: two method names (or run ids) for a paired comparison.
        halves: random split-half repeats (0: none).
        draws: bootstrap resamples.
        seed: seed of every random draw (recorded in the outputs).
        figures: size, resolution and formats of the figures.
    """

    methods: list[str] = field(default_factory=list)
    dataset: str | None = None
    recommended: dict[str, float] = field(default_factory=dict)
    compare: list[str] = field(default_factory=list)
    halves: int = 20
    draws: int = 1000
    seed: int = 0
    figures: figures.FigureOptions = field(default_factory=figures.FigureOptions)

    def __post_init__(self) -> None:
        """Raises InputError naming `--draws` or `--halves` when out of range."""
        self.draws = check_draws(self.draws)
        halves = self.halves
        if isinstance(halves, bool) or not isinstance(halves, int) or not 0 <= halves <= MAX_HALVES:
            raise InputError(f"--halves {halves!r:.30}: split-half repeats must be an integer "
                             f"from 0 (none) to {MAX_HALVES:,}")  # fmt: skip


@dataclass
class Study:
    """The study's tables (scores are fractions), the files written, and notes for the
    reader (runs left out of the curves, and why)."""

    stats: pd.DataFrame
    transfer: pd.DataFrame
    comparison: pd.DataFrame
    files: list[Path]
    notes: list[str] = field(default_factory=list)


def parse_point(text: str) -> dict[str, float]:
    """`threshold=0.1,sal_threshold=0.2` -> a point."""
    point = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, _, value = part.partition("=")
        if name not in ("threshold", "alpha", "sal_threshold") or not value:
            raise InputError(f"--recommended {text!r}: use threshold=0.1[,sal_threshold=0.2]")
        if name in point:
            raise InputError(f"--recommended {text!r}: {name} is given twice")
        try:
            point[name] = float(value)
        except ValueError:
            raise InputError(f"--recommended {text!r}: {name}={value!r} is not a number") from None
        problem = scale_error(name, [point[name]], "recommended")
        if problem:
            raise InputError(problem)
    return point


def _file_part(name: str) -> str:
    """`name` (a dataset or subset name, from data) as part of a file name in the study
    folder: characters other than letters, digits and `._@+-` become `_`."""
    return re.sub(r"[^A-Za-z0-9._@+-]", "_", name).lstrip(".") or "_"


def _select_runs(results: Path, options: StudyOptions) -> pd.DataFrame:
    runs = read_table(results, "runs")
    if options.dataset is not None:
        runs = runs[runs.dataset == options.dataset]
    if options.methods:
        runs = runs[runs.method.isin(options.methods) | runs.run_id.isin(options.methods)]
    if runs.empty:
        raise InputError("no stored runs match the selection", results)
    runs = with_subsets(runs)
    return runs.sort_values(["dataset", "subset", "started_at", "run_id"]).reset_index(drop=True)


def _per_image(results: Path, run: pd.Series, sweeps: pd.DataFrame) -> PerImage | None:
    rows = read_table(results, "per_image")
    rows = rows[rows.run_id == run.run_id]
    if rows.empty:
        return None
    return PerImage.from_rows(rows, len(sweeps), spec_of_run(run).num_classes)


def _run_for(name: str, runs: pd.DataFrame) -> pd.Series:
    matches = runs[(runs.method == name) | (runs.run_id == name)]
    if matches.empty:
        raise InputError(f"--compare {name!r}: no selected run has that method or run id")
    return matches.iloc[-1]


def _output(staging: Path, name: str, results: Path) -> Path:
    """A study file named after a run's fields (run id, dataset, split), checked to be
    one file name below the study folder."""
    return inside(staging, check_id(name, "file name", results / "runs.parquet"))


def run_study(results: Path, out: Path, options: StudyOptions) -> Study:
    """Compute every statistic for the selected runs and write tables and figures.

    `out` is claimed before any work (`wsssbed.io.ownership`): a new or empty folder or
    a study written here before, whose files are replaced as a whole; anything else is
    refused. The files are written to a staging folder and committed at the end, so a
    failure writes nothing. Runs without a grid (label maps scored by `evaluate`: one
    point) are in the statistics table as single points and nowhere else; `Study.notes`
    says so.
    """
    study = OutputFolder.claim(out, "sensitivity", "study folder")
    with study.staging() as staging:
        found = _study(results, staging, options)
        found.files = study.commit(staging)
    return found


def _study(results: Path, out: Path, options: StudyOptions) -> Study:
    """`run_study`, writing into the staging folder `out`."""
    runs = _select_runs(results, options)
    sweeps = read_table(results, "sweeps")
    sweeps = sweeps[sweeps.run_id.isin(runs.run_id)]
    stats_rows, files, notes = [], [], []
    per_images: dict[str, PerImage] = {}
    lines: dict[tuple[str, str, str], list[tuple[str, str, pd.DataFrame, dict]]] = {}
    places: dict[tuple[str, str, str], tuple[str, str]] = {}  # line -> (title, file part)
    style = options.figures
    gridded = []
    for _, run in runs.iterrows():
        rows = sweeps[sweeps.run_id == run.run_id].sort_values("point")
        label = run_label(run)
        point = options.recommended or recommended_point(run)
        stats = {"run_id": run.run_id, "label": label, "method": run.method,
                 "dataset": run.dataset, "split": run.split, "subset": run.subset,
                 "split_digest": run.split_digest, "stage": run.stage,
                 "generator": run.generator, **curve_stats(rows, point)}  # fmt: skip
        per_image = _per_image(results, run, rows)
        stats["ci_low"] = stats["ci_high"] = None
        if per_image is not None:
            per_images[run.run_id] = per_image
            best = int(best_row(rows).point)
            low, high = bootstrap_interval(per_image, best, options.draws, options.seed)
            stats["ci_low"], stats["ci_high"] = low, high
            if options.halves:
                half = split_half_transfer(per_image, options.halves, options.seed)
                stats.update({f"half_{k}": v for k, v in half.items()})
        stats_rows.append(stats)
        if stats["axis"] is None:
            notes.append(
                f"{label} ({run.dataset}/{run.subset}, run {run.run_id}) has no grid "
                f"({run.generator}: one point, mIoU {100 * stats['best_miou']:.2f}): it is "
                "in the statistics as a single point, not on the curves or in transfers"
            )
            continue
        gridded.append(run.run_id)
        axis = activation_axis(rows)
        best = best_row(rows)
        shown = point or {a: float(best[a]) for a in AXIS_COLUMNS if pd.notna(best[a])}
        kind = "recommended" if point else "best"
        where = f"{dataset_title(run)}, {run.subset}"
        if is_2d(rows):
            heatmap = figures.heatmap_figure(rows, f"{label} on {where}", "miou", shown, kind,
                                             style.width)  # fmt: skip
            stem = _output(out, f"heatmap_{run.run_id}", results)
            files += figures.save(heatmap, stem, style)
            saliency = shown.get("sal_threshold", best_row(rows).sal_threshold)
            rows = rows[np.isclose(rows.sal_threshold, saliency)]
            label = f"{label} (saliency {saliency:g})"
        line = (run.dataset, run.subset_key, axis)
        places.setdefault(line, (where, f"{_file_part(run.dataset)}_{_file_part(run.subset)}"))
        lines.setdefault(line, []).append(
            (label, run.run_id, rows, {"chosen": shown.get(axis), "chosen_by": kind})
        )
    for line, group in sorted(lines.items()):
        title, place = places[line]
        axis = line[2]
        labels = distinct_labels([g[0] for g in group], [g[1] for g in group])
        curves = [figures.Curve(label, rows, **marks)
                  for label, (_, _, rows, marks) in zip(labels, group, strict=True)]  # fmt: skip
        for metric in ("miou", "bf_f"):
            if metric == "bf_f" and all(c.rows.bf_f.isna().all() for c in curves):
                continue
            figure = figures.curves_figure(curves, axis, metric, title, style.width)
            stem = _output(out, f"curves_{metric}_{place}_{axis}", results)
            files += figures.save(figure, stem, style)
    stats = pd.DataFrame(stats_rows)
    stats["seed"] = options.seed
    transfer = split_transfer(runs[runs.run_id.isin(gridded)], sweeps)
    comparison = pd.DataFrame()
    if options.compare:
        comparison = _compare(runs, sweeps, per_images, options)
    for name, table in (("stats", stats), ("transfer", transfer), ("comparison", comparison)):
        if table.empty and name != "stats":
            continue
        path = _output(out, f"{name}.parquet", results)
        write_atomic(path, lambda f, t=table: t.to_parquet(f, index=False))
        files.append(path)
    return Study(stats, transfer, comparison, files, notes)


def _compare(
    runs: pd.DataFrame,
    sweeps: pd.DataFrame,
    per_images: dict[str, PerImage],
    options: StudyOptions,
) -> pd.DataFrame:
    if len(options.compare) != 2:
        raise InputError("--compare takes exactly two methods (or run ids)")
    chosen = []
    for name in options.compare:
        run = _run_for(name, runs)
        if run.run_id not in per_images:
            raise InputError(
                f"{name}: run {run.run_id} has no per-image counts; sweep it with --per-image"
            )
        rows = sweeps[sweeps.run_id == run.run_id]
        chosen.append((run, int(best_row(rows).point)))
    (a, a_point), (b, b_point) = chosen
    if a.run_id == b.run_id:
        first, second = options.compare
        raise InputError(f"--compare {first!r} and --compare {second!r} select the same run "
                         f"({a.run_id}): give two different methods or run ids")  # fmt: skip
    result = paired_comparison(
        per_images[a.run_id], a_point, per_images[b.run_id], b_point, options.draws, options.seed
    )
    return pd.DataFrame(
        [
            {
                "first": run_label(a),
                "second": run_label(b),
                "first_run": a.run_id,
                "second_run": b.run_id,
                **result,
                "seed": options.seed,
                "points": json.dumps([a_point, b_point]),
            }
        ]
    )
