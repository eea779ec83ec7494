"""`wsssbed sweep` and `wsssbed evaluate`: build the call, run the library, print the best point."""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from wsssbed.cli.app import app, as_options, reported_errors
from wsssbed.cli.common import (
    ADDRESS_OPTION,
    BACKEND_OPTION,
    DATA_ROOT_OPTION,
    DATASET_OPTION,
    DEVICE_OPTION,
    FORMAT_OPTION,
    JSON_SUMMARY_OPTION,
    LABELS_OPTION,
    RESULTS_OPTION,
    SPLIT_OPTION,
    TOLERANCE_OPTION,
    WORKERS_OPTION,
    err,
    out,
    percent,
    picked_format,
    progress_bar,
)
from wsssbed.datasets.fingerprint import subset_of
from wsssbed.errors import GroundTruthWarning
from wsssbed.eval.axes import AXES, DISPLAY_ORDER
from wsssbed.eval.summary import GLOSSARY

STAGES = ("activation", "pseudo-label", "final")


def _grid_help(axis: str, what: str) -> str:
    default = AXES[axis].default
    return f"{what}: start:stop:step (stop included) or a comma list \\[default: {default}]."


def print_best(result, title: str) -> None:
    """The best point's metrics and per-class IoU, as two tables."""
    from wsssbed.results.store import METRIC_COLUMNS

    best = result.best
    table = Table(title=title, min_width=len(title) + 4)  # the title on one line
    table.add_column("metric")
    table.add_column("value", justify="right")
    for axis in DISPLAY_ORDER:
        if axis in best and best[axis] is not None and str(best[axis]) != "<NA>":
            table.add_row(axis, f"{float(best[axis]):g}")
    for name in METRIC_COLUMNS:
        value = best[name]
        if value is None or str(value) in ("<NA>", "nan"):
            continue
        table.add_row(name, percent(value))
    out.print(table)
    classes = result.per_class[result.per_class.point == best.point]
    caption = "per-class IoU at the best point"
    row = Table(title=caption, min_width=len(caption) + 4, show_header=True)
    row.add_column("class")
    row.add_column("IoU", justify="right")
    for _, c in classes[classes.union > 0].iterrows():
        row.add_row(c.class_name, percent(c.iou))
    out.print(row)


@contextmanager
def held_warnings() -> Iterator[list[str]]:
    """Hold back `GroundTruthWarning`s, to print after the results where they are seen
    (dropped if the block fails: its error comes first); other warnings pass on to
    `reported_errors`."""
    held: list[str] = []
    caught: list[warnings.WarningMessage] = []
    failed = True
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield held
            failed = False
    finally:
        for warning in caught:
            if not issubclass(warning.category, GroundTruthWarning):
                warnings.warn_explicit(
                    warning.message, warning.category, warning.filename, warning.lineno
                )
            elif not failed:
                held.append(str(warning.message))


def finish(result, results: Path, as_json: bool, title: str, held: Sequence[str] = ()) -> None:
    """Print a stored run: JSON, or the best point and a one-line summary; then the held
    ground-truth warnings, in bold, last."""
    import pandas as pd

    if as_json:
        print(json.dumps(result.as_json(), indent=2))
    else:
        print_best(result, title)
        run = result.run
        points = (
            "label maps" if run.generator == "hard-labels" else f"{len(result.points)} grid points"
        )
        void = (
            "" if pd.isna(run.gt_void_ratio) else f" ({run.gt_void_ratio:.1%} of mask pixels void)"
        )
        out.print(
            f"{int(run.n_images):,} images{void}, {points}, {run.wall_time_s:.2f} s on "
            f"{run.device}; run {result.run_id} appended to {results}",
            soft_wrap=True,
        )
    for message in held:
        err.print(
            f"[bold red]warning:[/] [bold]{escape(as_options(message))}[/]",
            highlight=False,
            soft_wrap=True,
        )


METRICS_EPILOG = "Metrics stored for every grid point:\n\n" + "\n\n".join(
    f"[bold]{name}[/]: {text}" for name, text in GLOSSARY.items()
)


@app.command(epilog=METRICS_EPILOG)
def sweep(
    method: str = typer.Option(
        None,
        help="A pinned method: a pipeline or activation manifest (`wsssbed manifests`). "
        "Its maps are verified against their digests; its pipeline sets the generator "
        "and grid unless given here.",
    ),
    dataset: str = DATASET_OPTION,
    data_root: Path = DATA_ROOT_OPTION,
    split: str = SPLIT_OPTION,
    activation: Path = typer.Option(None, help="Folder of activation maps."),
    activation_format: str = FORMAT_OPTION,
    name: str = typer.Option(
        None, help="Method name stored with the run (not with --method: its manifest names it)."
    ),
    generator: str = typer.Option(None, help="bg-threshold (default), power-bg or saliency-rule."),
    thresholds: str = typer.Option(None, help=_grid_help("threshold", "Activation thresholds")),
    alphas: str = typer.Option(None, help=_grid_help("alpha", "power-bg exponents")),
    saliency: str = typer.Option(
        None, help="Folder of saliency PNGs; with --method, a saliency manifest name."
    ),
    sal_thresholds: str = typer.Option(
        None, help=_grid_help("sal_threshold", "Saliency thresholds (saliency-rule)")
    ),
    ignore_label: bool = typer.Option(
        None,
        "--ignore-label/--no-ignore-label",
        help="saliency-rule: salient background becomes 255 (ignored) \\[default: the --method "
        "pipeline's setting, else off, as WSSS-BED's run.py defaults it: salient background "
        "is scored as background]. pseudo-labels defaults it on, as WSSS-BED's released "
        "scripts run run.py: give both commands the same choice to write the labels you swept.",
        show_default=False,
    ),
    without_saliency: bool = typer.Option(
        None, "--without-saliency", help="Saliency rule without saliency maps."
    ),
    boundary: bool = typer.Option(True, help="Compute boundary F at every point (1-D sweeps)."),
    boundary_tolerance: str = TOLERANCE_OPTION,
    labels: str = LABELS_OPTION,
    allow_extra_maps: bool = typer.Option(False, help="Allow maps of images outside the split."),
    verify: bool = typer.Option(
        True, help="Verify --method maps against their digests (--no-verify is recorded)."
    ),
    per_image: bool = typer.Option(
        False, help="Also store per-image counts (bootstrap intervals, split-half studies)."
    ),
    backend: str = BACKEND_OPTION,
    address: str = ADDRESS_OPTION,
    device: str = DEVICE_OPTION,
    workers: int = WORKERS_OPTION,
    results: Path = RESULTS_OPTION,
    as_json: bool = JSON_SUMMARY_OPTION,
) -> None:
    """Sweep a pseudo-label generator over a threshold grid in one pass; store every point."""
    from wsssbed.api import sweep as run

    with reported_errors():
        from wsssbed.results.store import results_folder

        results_folder(results)  # before any work (the format's recognition), as the API does
        activation_format = picked_format(activation, activation_format)
    with (
        reported_errors(),
        progress_bar("sweeping", not as_json) as update,
        held_warnings() as held,
    ):
        result = run(
            dataset=dataset,
            data_root=data_root,
            split=split,
            activation=activation,
            activation_format=activation_format,
            generator=generator,
            thresholds=thresholds,
            saliency=saliency,
            sal_thresholds=sal_thresholds,
            alphas=alphas,
            ignore_label=ignore_label,
            boundary=boundary,
            device=device,
            workers=workers,
            method=method,
            out=results,
            name=name,
            without_saliency=without_saliency,
            boundary_tolerance=boundary_tolerance,
            labels=labels,
            allow_extra_maps=allow_extra_maps,
            verify=verify,
            per_image=per_image,
            backend=backend,
            address=address,
            progress=update,
        )
    run_row = result.run
    if data_root is None:
        err.print(
            "no --data-root: this scored wsssbed's embedded synthetic sample (rendered "
            f"pictures, not a real dataset) at {run_row.data_root}",
            style="yellow",
            soft_wrap=True,
            highlight=False,
        )
    where = f"{run_row.dataset}/{subset_of(run_row).name}"
    title = f"best point of {method or name or run_row.generator} on {where}"
    finish(result, results, as_json, title, held)


@app.command()
def evaluate(
    pred: Path = typer.Option(..., help="Folder of label maps `<id>.png` (255 = unlabelled)."),
    dataset: str = DATASET_OPTION,
    data_root: Path = typer.Option(..., help="Dataset folder."),
    split: str = SPLIT_OPTION,
    stage: str = typer.Option("pseudo-label", help=f"What the maps are: {', '.join(STAGES)}."),
    name: str = typer.Option(None, help="Method name stored with the run (default: the folder)."),
    boundary: bool = typer.Option(True, help="Compute boundary F."),
    boundary_tolerance: str = TOLERANCE_OPTION,
    allow_extra_maps: bool = typer.Option(False, help="Allow maps of images outside the split."),
    device: str = DEVICE_OPTION,
    backend: str = BACKEND_OPTION,
    address: str = ADDRESS_OPTION,
    workers: int = WORKERS_OPTION,
    results: Path = RESULTS_OPTION,
    as_json: bool = JSON_SUMMARY_OPTION,
) -> None:
    """Score hard label maps (pseudo-labels or a segmenter's output) with the same metrics."""
    from wsssbed.api import evaluate as run

    with (
        reported_errors(),
        progress_bar("evaluating", not as_json) as update,
        held_warnings() as held,
    ):
        result = run(
            pred,
            dataset,
            data_root,
            split,
            stage=stage,
            name=name,
            boundary=boundary,
            boundary_tolerance=boundary_tolerance,
            allow_extra_maps=allow_extra_maps,
            device=device,
            workers=workers,
            backend=backend,
            address=address,
            out=results,
            progress=update,
        )
    where = f"{result.run.dataset}/{subset_of(result.run).name}"
    finish(result, results, as_json, f"{pred} on {where}", held)
