"""`wsssbed sensitivity`: statistics, transfer, intervals and figures for stored runs."""

from __future__ import annotations

import io
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from wsssbed.datasets import spec_of_run
from wsssbed.errors import InputError
from wsssbed.eval.axes import AXIS_COLUMNS
from wsssbed.io.outputs import check_output_folder, follow_umask
from wsssbed.report import figures
from wsssbed.report.sensitivity import (
    PerImage,
    activation_axis,
    bootstrap_interval,
    curve_stats,
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
    """

    methods: list[str] = field(default_factory=list)
    dataset: str | None = None
    recommended: dict[str, float] = field(default_factory=dict)
    compare: list[str] = field(default_factory=list)
    halves: int = 20
    draws: int = 1000
    seed: int = 0


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
        point[name] = float(value)
    return point


def _select_runs(results: Path, options: StudyOptions) -> pd.DataFrame:
    runs = read_table(results, "runs")
    if options.dataset is not None:
        runs = runs[runs.dataset == options.dataset]
    if options.methods:
        runs = runs[runs.method.isin(options.methods) | runs.run_id.isin(options.methods)]
    if runs.empty:
        raise InputError("no stored runs match the selection", results)
    return runs.sort_values(["dataset", "split", "started_at", "run_id"]).reset_index(drop=True)


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


def run_study(results: Path, out: Path, options: StudyOptions) -> Study:
    """Compute every statistic for the selected runs and write tables and figures.

    Runs without a grid (label maps scored by `evaluate`: one point) are in the
    statistics table as single points and nowhere else; `Study.notes` says so. Every
    file is computed before the first is written, so a failure writes nothing.
    """
    check_output_folder(out, "study folder")
    runs = _select_runs(results, options)
    sweeps = read_table(results, "sweeps")
    sweeps = sweeps[sweeps.run_id.isin(runs.run_id)]
    stats_rows, payloads, notes = [], {}, []
    per_images: dict[str, PerImage] = {}
    lines: dict[tuple[str, str, str], list[tuple[str, str, pd.DataFrame, dict]]] = {}
    gridded = []
    for _, run in runs.iterrows():
        rows = sweeps[sweeps.run_id == run.run_id].sort_values("point")
        label = run_label(run)
        point = options.recommended or recommended_point(run)
        stats = {"run_id": run.run_id, "label": label, "method": run.method,
                 "dataset": run.dataset, "split": run.split, "stage": run.stage,
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
                f"{label} ({run.dataset}/{run.split}, run {run.run_id}) has no grid "
                f"({run.generator}: one point, mIoU {100 * stats['best_miou']:.2f}): it is "
                "in the statistics as a single point, not on the curves or in transfers"
            )
            continue
        gridded.append(run.run_id)
        axis = activation_axis(rows)
        best = best_row(rows)
        shown = point or {a: float(best[a]) for a in AXIS_COLUMNS if pd.notna(best[a])}
        kind = "recommended" if point else "best"
        if is_2d(rows):
            title = f"{label} on {run.dataset}/{run.split}"
            heatmap = figures.heatmap_figure(rows, title, "miou", shown, kind)
            payloads.update(figures.encoded(heatmap, f"heatmap_{run.run_id}"))
            saliency = shown.get("sal_threshold", best_row(rows).sal_threshold)
            rows = rows[np.isclose(rows.sal_threshold, saliency)]
            label = f"{label} (saliency {saliency:g})"
        lines.setdefault((run.dataset, run.split, axis), []).append(
            (label, run.run_id, rows, {"chosen": shown.get(axis), "chosen_by": kind})
        )
    for (dataset, split, axis), group in sorted(lines.items()):
        labels = figures.distinct_labels([g[0] for g in group], [g[1] for g in group])
        curves = [figures.Curve(label, rows, **marks)
                  for label, (_, _, rows, marks) in zip(labels, group, strict=True)]  # fmt: skip
        for metric in ("miou", "bf_f"):
            if metric == "bf_f" and all(c.rows.bf_f.isna().all() for c in curves):
                continue
            title = f"{dataset}/{split}: {figures.METRIC_TITLES[metric]}"
            figure = figures.curves_figure(curves, axis, metric, title)
            payloads.update(figures.encoded(figure, f"curves_{metric}_{dataset}_{split}_{axis}"))
    stats = pd.DataFrame(stats_rows)
    stats["seed"] = options.seed
    transfer = split_transfer(runs[runs.run_id.isin(gridded)], sweeps)
    comparison = pd.DataFrame()
    if options.compare:
        comparison = _compare(runs, sweeps, per_images, options)
    for name, table in (("stats", stats), ("transfer", transfer), ("comparison", comparison)):
        if table.empty and name != "stats":
            continue
        buffer = io.BytesIO()
        table.to_parquet(buffer, index=False)
        payloads[f"{name}.parquet"] = buffer.getvalue()
    return Study(stats, transfer, comparison, _write_all(out, payloads), notes)


def _write_all(out: Path, payloads: dict[str, bytes]) -> list[Path]:
    """Write every file into a staging folder beside `out`, then move each into `out`
    (renames within one file system): a full disk or an interruption while writing
    leaves `out` as it was."""
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}."))
    try:
        for name, payload in payloads.items():
            (staging / name).write_bytes(payload)
            follow_umask(staging / name)
        out.mkdir(exist_ok=True)
        for name in payloads:
            os.replace(staging / name, out / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return [out / name for name in payloads]


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
