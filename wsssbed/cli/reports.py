"""`wsssbed results show`, `sensitivity` and `leaderboard`: reports over stored results."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.table import Table

from wsssbed.cli.app import app, kept_on_interrupt, reported_errors, results_app
from wsssbed.cli.common import (
    JSON_OPTION,
    RESULTS_IN_OPTION,
    err,
    fitted_table,
    fraction,
    in_points,
    interval,
    out,
    percent,
    progress_bar,
)
from wsssbed.eval.summary import MIOU_CONVENTIONS


@results_app.command("repair")
def results_repair(results: Path = RESULTS_IN_OPTION) -> None:
    """Remove rows of runs that never committed (an append killed between its renames)."""
    from wsssbed.results.store import repair

    kept_on_interrupt("tables already repaired stay repaired, the others are as they were")
    with reported_errors():
        removed = repair(results)
    total = sum(removed.values())
    details = ", ".join(f"{n} from {name}" for name, n in removed.items() if n)
    out.print(f"removed {total:,} rows of uncommitted runs" + (f" ({details})" if total else ""))


@results_app.command("show")
def results_show(
    results: Path = RESULTS_IN_OPTION,
    method: str = typer.Option(None, help="Only runs of this method."),
    dataset: str = typer.Option(None, help="Only runs on this dataset."),
    as_json: bool = JSON_OPTION,
) -> None:
    """The best point of every stored run, and per-class IoU at those points."""
    import pandas as pd

    from wsssbed.datasets.fingerprint import short, with_subsets
    from wsssbed.eval.axes import AXIS_COLUMNS
    from wsssbed.results.store import METRIC_COLUMNS, best_points, read_table

    with reported_errors():
        best = with_subsets(best_points(results, method, dataset))
        per_class = read_table(results, "per_class")
    if best.empty:
        err.print("no runs match")
        raise typer.Exit(1)
    keyed = per_class.merge(best[["run_id", "point"]], on=["run_id", "point"])
    if as_json:
        rows = []
        for _, run in best.iterrows():
            classes = keyed[(keyed.run_id == run.run_id) & (keyed.union > 0)]
            rows.append(
                {
                    "run_id": run.run_id,
                    "method": None if pd.isna(run.method) else run.method,
                    "dataset": run.dataset,
                    "split": run.split,
                    "split_official": None
                    if pd.isna(run.split_official)
                    else bool(run.split_official),
                    "gt_void_ratio": fraction(run.gt_void_ratio),
                    "generator": run.generator,
                    "stage": run.stage,
                    "gt_digest": None if pd.isna(run.gt_digest) else run.gt_digest,
                    "split_digest": None if pd.isna(run.split_digest) else run.split_digest,
                    "best_point": {a: float(run[a]) for a in AXIS_COLUMNS if pd.notna(run[a])},
                    **{m: fraction(run[m]) for m in METRIC_COLUMNS},
                    "per_class_iou": dict(zip(classes.class_name, classes.iou.astype(float))),
                }
            )
        print(json.dumps(rows, indent=2))
        return
    headers = ["run", "method", "dataset/split", "ground truth", "generator", "point", "mIoU",
               "BF"]  # fmt: skip
    rows = [
        [
            run.run_id,
            "-" if pd.isna(run.method) else str(run.method),
            f"{run.dataset}/{run.subset}",
            short(run.gt_digest),
            run.generator,
            ", ".join(f"{a}={run[a]:g}" for a in AXIS_COLUMNS if pd.notna(run[a])),
            percent(run.miou),
            percent(run.bf_f),
        ]
        for _, run in best.iterrows()
    ]
    table = fitted_table(
        f"best points in {results}",
        headers,
        rows,
        optional=("generator", "BF", "method", "ground truth"),
        shorten={"run": lambda v: v[-8:]},
        right=("mIoU", "BF"),
    )
    out.print(table)
    _warn_mixed_ground_truth(best)
    classes = Table(title="per-class IoU at the best points")
    classes.add_column("class")
    runs = best.run_id.tolist()
    for run_id in runs:
        classes.add_column(run_id[-8:], justify="right")
    by_class = keyed.pivot_table(index=["class_id", "class_name"], columns="run_id", values="iou")
    unions = keyed.pivot_table(index=["class_id", "class_name"], columns="run_id", values="union")
    for (_, class_name), row in by_class.iterrows():
        cells = [
            percent(row.get(r)) if unions.loc[(_, class_name)].get(r, 0) > 0 else "-" for r in runs
        ]
        classes.add_row(class_name, *cells)
    out.print(classes)


@results_app.command("export")
def results_export(
    results: Path = RESULTS_IN_OPTION,
    method: list[str] = typer.Option(
        None,
        help="Runs to tabulate, one row each, in this order: a method name, a run label or a "
        "run id; repeatable (default: every run).",
    ),
    dataset: str = typer.Option(None, help="Only runs on this dataset."),
    table_format: str = typer.Option(
        "latex", "--format", help="latex (booktabs tabular), markdown (GitHub) or csv."
    ),
    convention: str = typer.Option(
        "miou",
        help=f"The mIoU column to report and to pick each run's best point by: "
        f"{', '.join(MIOU_CONVENTIONS)} (`wsssbed sweep --help` defines each).",
    ),
    digits: int = typer.Option(1, help="Decimal places of the percentages."),
    classes: bool = typer.Option(
        True, "--classes/--no-classes", help="Add the per-class IoU columns (the wide table)."
    ),
) -> None:
    """Print a table for a paper: each run's best point, mIoU, BF and per-class IoU (%).

    The best value of each score column is bold (LaTeX, Markdown). Redirect it into a
    file: `wsssbed results export > table.tex`.
    """
    from wsssbed.report.export import ExportOptions, paper_table, render

    with reported_errors():
        options = ExportOptions(method or [], dataset, convention, digits, classes)
        table = paper_table(results, options)
        text = render(table, table_format)
        runs = table.runs
    _warn_mixed_ground_truth(runs)
    print(text, end="")


def _warn_mixed_ground_truth(runs) -> None:
    """A yellow line for each subset whose runs scored different ground truth."""
    from wsssbed.datasets.fingerprint import mixed_ground_truth

    for (dataset, subset), found in mixed_ground_truth(runs).items():
        err.print(
            f"runs on {dataset}/{subset} were scored on {len(found)} different ground "
            f"truths ({', '.join(found)}): their numbers are not comparable",
            style="yellow",
            highlight=False,
        )


FIGURE_WIDTH_OPTION = typer.Option(
    "page",
    help="Figure width: column (3.3 in, one column of a two-column paper) or page "
    "(6.9 in, both columns).",
)
DPI_OPTION = typer.Option(200, help="Resolution of the PNG figures (dots per inch).")
FIGURE_FORMAT_OPTION = typer.Option(
    None,
    "--figure-format",
    help="png, svg or pdf; repeat for several \\[default: all three].",
)
NAME_WIDTH = 22  # run labels are cut to this many characters when a table is too wide


def _cut(text: str) -> str:
    """`text` in at most `NAME_WIDTH` characters: its start and its end (where a repeated
    method's run id is) around an ellipsis."""
    if len(text) <= NAME_WIDTH:
        return text
    tail = (NAME_WIDTH - 1) // 2
    return f"{text[: NAME_WIDTH - 1 - tail]}\u2026{text[-tail:]}"


@app.command()
def sensitivity(
    results: Path = RESULTS_IN_OPTION,
    method: list[str] = typer.Option(None, help="Methods (or run ids) to study; repeatable."),
    dataset: str = typer.Option(None, help="Only runs on this dataset."),
    recommended: str = typer.Option(
        None,
        help="Score every run at this point, e.g. threshold=0.1,sal_threshold=0.2 "
        "(default: the pipeline manifest's recommended point).",
    ),
    compare: list[str] = typer.Option(
        None, help="Two methods (or run ids) for a paired bootstrap; give it twice."
    ),
    halves: int = typer.Option(20, help="Random split-half repeats (needs --per-image runs)."),
    draws: int = typer.Option(1000, help="Bootstrap resamples."),
    seed: int = typer.Option(0, help="Seed of the random halves and resamples."),
    figure_width: str = FIGURE_WIDTH_OPTION,
    dpi: int = DPI_OPTION,
    figure_format: list[str] = FIGURE_FORMAT_OPTION,
    out_dir: Path = typer.Option(
        Path("wsssbed-sensitivity"),
        "--out",
        help="Study folder: new, empty, or a study written before (only its own files change).",
    ),
) -> None:
    """Threshold sensitivity: curves, heatmaps, plateau and AUC, transfer, intervals."""
    from wsssbed.report.figures import FORMATS, FigureOptions
    from wsssbed.report.study import StudyOptions, parse_point, run_study

    with reported_errors():
        options = StudyOptions(
            methods=method or [],
            dataset=dataset,
            recommended=parse_point(recommended) if recommended else {},
            compare=compare or [],
            halves=halves,
            draws=draws,
            seed=seed,
            figures=FigureOptions(figure_width, dpi, tuple(figure_format or FORMATS)),
        )
        study = run_study(results, out_dir, options)
    _print_study(study)
    for note in study.notes:
        err.print(f"note: {note}", style="yellow", highlight=False, soft_wrap=True)
    out.print(f"{len(study.files)} files written to {out_dir}")


def _print_study(study) -> None:
    """The study's tables, each fitted to the terminal (cells never wrap; run labels are
    cut in the middle when it is narrow)."""
    import pandas as pd

    from wsssbed.report.sensitivity import PLATEAU_TOLERANCE, distinct_labels

    stats = study.stats
    labels = dict(zip(stats.run_id, distinct_labels(list(stats.label), list(stats.run_id),
                                                    list(stats.subset))))  # fmt: skip
    shorten = {"run": _cut}
    rows = []
    for _, row in stats.iterrows():
        point = "no grid" if pd.isna(row.axis) else f"{row.best_threshold:g}"
        if pd.notna(row.best_sal_threshold):
            point = f"{row.best_sal_threshold:g} / {point}"
        plateau = "-" if pd.isna(row.plateau_width) else f"{row.plateau_width:g}"
        rows.append([labels[row.run_id], row.subset, in_points(row.best_miou), point,
                     in_points(row.at_recommended_miou), plateau, in_points(row.auc)])  # fmt: skip
    headers = ["run", "split", "best", "best at", "at rec.", "plateau", "AUC"]
    numbers = ("best", "at rec.", "plateau", "AUC")
    table = fitted_table("threshold sensitivity (mIoU %)", headers, rows, shorten=shorten,
                         right=numbers)  # fmt: skip
    table.caption = (
        "best at: the threshold (alpha for power-bg; saliency / activation threshold on 2-D "
        f"grids); plateau: the threshold range within {100 * PLATEAU_TOLERANCE:g} point of "
        "the best; AUC: the mean mIoU over the grid"
    )
    out.print(table)
    if stats.ci_low.notna().any():
        rows = []
        for _, row in stats.iterrows():
            held, gap = row.get("half_held_out_miou"), row.get("half_gap_to_oracle")
            rows.append([labels[row.run_id], row.subset, interval(row.ci_low, row.ci_high),
                         in_points(held), in_points(gap)])  # fmt: skip
        headers = ["run", "split", "95% CI", "held-out", "gap"]
        table = fitted_table("over images (mIoU %)", headers, rows, shorten=shorten,
                             right=headers[2:])  # fmt: skip
        table.caption = (
            "95% CI: bootstrap over images at the best point; held-out: the point chosen on a "
            "random half, scored on the other half; gap: to that half's own best (means over "
            "the repeats)"
        )
        out.print(table)
    else:
        out.print("no per-image counts: sweep with --per-image for intervals and split halves")
    if not study.transfer.empty:
        rows = [[labels[row.chosen_run], row.chosen_on, row.scored_on,
                 in_points(row.transferred_miou), in_points(row.oracle_miou),
                 in_points(row.gap_to_oracle)] for _, row in study.transfer.iterrows()]  # fmt: skip
        headers = ["run", "chosen on", "scored on", "scored", "oracle", "gap"]
        table = fitted_table("transfer (mIoU %)", headers, rows, shorten=shorten,
                             right=headers[3:])  # fmt: skip
        table.caption = "the best point of one split, scored on another; gap: to its own best"
        out.print(table)
    for _, row in study.comparison.iterrows():
        out.print(
            f"{row['first']} - {row['second']}: {100 * row.difference:+.1f} mIoU points, 95% CI "
            f"[{100 * row.ci_low:+.1f}, {100 * row.ci_high:+.1f}] on {row.images} images",
            soft_wrap=True,
        )


@app.command()
def leaderboard(
    results: Path = RESULTS_IN_OPTION,
    out_dir: Path = typer.Option(
        Path("wsssbed-leaderboard"),
        "--out",
        help="Site folder: new, empty, or a site rendered before (only its own files change).",
    ),
    reported: Path = typer.Option(
        None, help="TOML file of numbers reported in papers (`\\[\\[reported]]` tables)."
    ),
    gallery: int = typer.Option(4, help="Gallery images per run (0: none)."),
    draws: int = typer.Option(1000, help="Bootstrap resamples for the intervals."),
    show_paths: bool = typer.Option(
        False,
        "--show-paths",
        help="Show local paths (data root, maps, command line) whole; by default the site "
        "shows only their last component. The results tables always keep them.",
    ),
    paths_relative_to: Path = typer.Option(
        None, help="Show local paths below this folder relative to it (others shortened)."
    ),
) -> None:
    """Render the static leaderboard (self-contained, works from file://)."""
    from wsssbed.errors import WsssbedError
    from wsssbed.report.leaderboard import render_site
    from wsssbed.report.paths import PathDisplay

    with reported_errors(), progress_bar("rendering the leaderboard"):
        if show_paths and paths_relative_to is not None:
            raise WsssbedError("give --show-paths or --paths-relative-to, not both")
        paths = PathDisplay(show_paths, paths_relative_to)
        files = render_site(results, out_dir, reported, gallery, draws, paths)
    out.print(f"{len(files)} files; open {out_dir / 'index.html'}")
