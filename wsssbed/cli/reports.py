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
    out,
    percent,
    progress_bar,
)


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

    from wsssbed.datasets.fingerprint import mixed_ground_truth, short
    from wsssbed.eval.axes import AXIS_COLUMNS
    from wsssbed.results.store import METRIC_COLUMNS, best_points, read_table

    with reported_errors():
        best = best_points(results, method, dataset)
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
            f"{run.dataset}/{run.split}",
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
    for (dataset_name, split), found in mixed_ground_truth(best).items():
        err.print(
            f"runs on {dataset_name}/{split} were scored on {len(found)} different ground "
            f"truths ({', '.join(found)}): their numbers are not comparable",
            style="yellow",
            highlight=False,
        )
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
    out_dir: Path = typer.Option(Path("wsssbed-sensitivity"), "--out", help="Output folder."),
) -> None:
    """Threshold sensitivity: curves, heatmaps, plateau and AUC, transfer, intervals."""
    import pandas as pd

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
        )
        study = run_study(results, out_dir, options)
    table = Table(title="threshold sensitivity (mIoU %)")
    for column in ("run", "dataset/split", "best", "at", "rec.", "plateau", "AUC", "95% CI"):
        table.add_column(column, overflow="fold")
    for _, row in study.stats.iterrows():
        point = "no grid" if pd.isna(row.axis) else f"{row.axis} {row.best_threshold:g}"
        if pd.notna(row.best_sal_threshold):
            point += f", sal {row.best_sal_threshold:g}"
        interval = "-" if pd.isna(row.ci_low) else f"{100 * row.ci_low:.2f}-{100 * row.ci_high:.2f}"
        table.add_row(
            row.label,
            f"{row.dataset}/{row.split}",
            percent(row.best_miou),
            point,
            percent(row.at_recommended_miou),
            "-" if pd.isna(row.plateau_width) else f"{row.plateau_width:g}",
            percent(row.auc),
            interval,
        )
    out.print(table)
    for note in study.notes:
        err.print(f"note: {note}", style="yellow", highlight=False, soft_wrap=True)
    for _, row in study.transfer.iterrows():
        out.print(
            f"transfer {row.label}: chosen on {row.chosen_on}, scored on {row.scored_on}: "
            f"{percent(row.transferred_miou)} (oracle {percent(row.oracle_miou)}, "
            f"gap {100 * row.gap_to_oracle:.2f})",
            soft_wrap=True,
        )
    for _, row in study.comparison.iterrows():
        out.print(
            f"{row['first']} - {row['second']}: {100 * row.difference:+.2f} mIoU, 95% CI "
            f"[{100 * row.ci_low:+.2f}, {100 * row.ci_high:+.2f}] on {row.images} images",
            soft_wrap=True,
        )
    out.print(f"{len(study.files)} files written to {out_dir}")


@app.command()
def leaderboard(
    results: Path = RESULTS_IN_OPTION,
    out_dir: Path = typer.Option(
        Path("wsssbed-leaderboard"), "--out", help="Site folder (replaced as a whole)."
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
