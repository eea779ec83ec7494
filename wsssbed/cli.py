"""The `wsssbed` command line: parse, call the library, render with rich. No logic here."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from wsssbed import __version__
from wsssbed.datasets import builtin_datasets, get_dataset
from wsssbed.datasets.check import check_dataset
from wsssbed.datasets.local import LocalDataset
from wsssbed.errors import WsssbedError
from wsssbed.eval.boundary import DEFAULT_TOLERANCE, Tolerance
from wsssbed.eval.engine import SweepJob
from wsssbed.eval.rules import Axis, HardLabels, make_rule
from wsssbed.grids import parse_grid
from wsssbed.pipeline import STAGES, RunSummary, run_and_store
from wsssbed.results import METRIC_COLUMNS
from wsssbed.sample import METHOD, SALIENCY, ensure_sample

app = typer.Typer(
    help="wsssbed: a reproducible testbed for weakly-supervised semantic segmentation.",
    no_args_is_help=True,
    add_completion=False,
)
datasets_app = typer.Typer(
    help="List the datasets, check a local copy, convert COCO.", invoke_without_command=True
)
app.add_typer(datasets_app, name="datasets")
out = Console()
err = Console(stderr=True)


@contextmanager
def reported_errors() -> Iterator[None]:
    """Turn a `WsssbedError` into one red line on stderr and exit code 2."""
    try:
        yield
    except WsssbedError as error:
        err.print(f"[bold red]error:[/] {error}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None


@contextmanager
def progress_bar(label: str, enabled: bool = True) -> Iterator[Callable[[int, int], None]]:
    """A rich progress bar on stderr, fed by `callback(done, total)`."""
    if not enabled:
        yield lambda done, total: None
        return
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=err, transient=True) as progress:
        task = progress.add_task(label, total=None)

        def update(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        yield update


def _version(value: bool) -> None:
    if value:
        out.print(f"wsssbed {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Show the version and exit."
    ),
) -> None:
    """wsssbed: pinned maps, exact single-pass threshold sweeps, Parquet results."""


# ----------------------------------------------------------------------------- datasets


@datasets_app.callback()
def datasets_list(
    ctx: typer.Context, as_json: bool = typer.Option(False, "--json", help="Print JSON.")
) -> None:
    """List the built-in datasets with their class counts and split sizes."""
    if ctx.invoked_subcommand is not None:
        return
    specs = builtin_datasets()
    if as_json:
        rows = [
            {
                "name": s.name,
                "title": s.title,
                "num_classes": s.num_classes,
                "has_background": s.has_background,
                "ignore_index": s.ignore_index,
                "splits": s.splits,
            }
            for s in specs
        ]
        print(json.dumps(rows, indent=2))
        return
    table = Table(title="Built-in datasets")
    for column in ("name", "title", "classes", "background", "splits"):
        table.add_column(column)
    for s in specs:
        splits = ", ".join(f"{k} {v:,}" for k, v in s.splits.items())
        table.add_row(
            s.name, s.title, str(s.num_classes), "yes" if s.has_background else "no", splits
        )
    out.print(table)


@datasets_app.command("check")
def datasets_check(
    dataset: str = typer.Option(..., help="Dataset name or spec .toml."),
    data_root: Path = typer.Option(..., help="Folder holding the dataset."),
    split: str = typer.Option(None, help="Split (any id list in the split folder)."),
    threads: int = typer.Option(4, help="Decoding threads."),
) -> None:
    """Decode every mask of a split and report counts, unreadable files, unknown labels."""
    with reported_errors():
        spec = get_dataset(dataset)
        local = LocalDataset(spec, data_root, split or spec.default_split)
        with progress_bar(f"checking {spec.name}/{local.split}") as update:
            report = check_dataset(local, threads, update)
    size_note = ""
    if report.expected is not None and report.expected != report.total:
        size_note = f" [yellow](the published split has {report.expected:,})[/]"
    out.print(
        f"{spec.title} {report.split}: {report.total:,} images listed{size_note}, "
        f"{report.valid_masks:,} valid masks, {report.images_checked:,} images checked",
        soft_wrap=True,
    )
    if report.ok:
        out.print("[green]ok[/]")
        return
    for path, problem in report.problems[:50]:
        err.print(f"[red]bad:[/] {path}: {problem}", highlight=False, soft_wrap=True)
    if len(report.problems) > 50:
        err.print(f"... and {len(report.problems) - 50} more problems")
    raise typer.Exit(1)


@datasets_app.command("convert-coco")
def datasets_convert_coco(
    annotations: Path = typer.Option(..., help="COCO 2014 instances_<split>2014.json."),
    out_dir: Path = typer.Option(..., "--out", help="Data root to write the masks into."),
    split: str = typer.Option("train", help="Split name: train or val."),
) -> None:
    """Convert COCO instance annotations into the 81-class WSSS masks."""
    from wsssbed.datasets.coco import convert_coco

    with reported_errors(), progress_bar("converting") as update:
        count = convert_coco(annotations, out_dir, split, get_dataset("coco2014"), update)
    out.print(f"wrote {count:,} masks below {out_dir}")


# ----------------------------------------------------------------------------- sample


@app.command()
def sample(
    path: Path = typer.Option(None, help="Where to render it (default: the cache)."),
) -> None:
    """Render the embedded sample dataset (once) and print where it is."""
    with reported_errors():
        root = ensure_sample(path)
    out.print(str(root))


# ----------------------------------------------------------------------------- sweep


def _default_workers(images: int) -> int:
    return 0 if images < 200 else min(4, os.cpu_count() or 1)


def _print_best(summary: RunSummary, title: str) -> None:
    best = summary.best
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for axis in ("sal_threshold", "threshold", "alpha"):
        if axis in best and best[axis] is not None and str(best[axis]) != "<NA>":
            table.add_row(axis, f"{float(best[axis]):g}")
    for name in METRIC_COLUMNS:
        value = best[name]
        if value is None or str(value) in ("<NA>", "nan"):
            continue
        table.add_row(name, f"{100 * float(value):.2f}%")
    out.print(table)
    classes = summary.per_class[summary.per_class.point == best.point]
    row = Table(title="per-class IoU at the best point", show_header=True)
    row.add_column("class")
    row.add_column("IoU", justify="right")
    for _, c in classes[classes.union > 0].iterrows():
        row.add_row(c.class_name, f"{100 * c.iou:.2f}%")
    out.print(row)


def _finish(summary: RunSummary, results: Path, as_json: bool, title: str) -> None:
    if as_json:
        print(json.dumps(summary.as_json(results), indent=2))
        return
    _print_best(summary, title)
    run = summary.run.iloc[0]
    out.print(
        f"{int(run.n_images):,} images, {len(summary.sweeps)} grid points, "
        f"{run.wall_time_s:.2f} s on {run.device}; run {summary.run_id} appended to "
        f"{results}",
        soft_wrap=True,
    )


@app.command()
def sweep(
    method: str = typer.Option(
        None,
        help="A pinned method (manifest name); see `wsssbed "
        "fetch`. Not available yet: give --activation.",
    ),
    dataset: str = typer.Option("voc2012", help="Dataset name or spec .toml."),
    data_root: Path = typer.Option(None, help="Dataset folder (default: the embedded sample)."),
    split: str = typer.Option(None, help="Split (default: the dataset's default)."),
    activation: Path = typer.Option(None, help="Folder of activation maps."),
    activation_format: str = typer.Option("irn-npy", help="irn-npy, png-per-class or npz."),
    generator: str = typer.Option("bg-threshold", help="bg-threshold, power-bg or saliency-rule."),
    thresholds: str = typer.Option(
        "0:0.6:0.01", help="Activation thresholds: start:stop:step (stop included) or a comma list."
    ),
    alphas: str = typer.Option("1:32:1", help="power-bg exponents."),
    saliency: Path = typer.Option(None, help="Folder of saliency PNGs (saliency-rule)."),
    sal_thresholds: str = typer.Option("0.2", help="Saliency thresholds (saliency-rule)."),
    ignore_label: bool = typer.Option(False, help="Salient background becomes 255 (WSSS-BED)."),
    without_saliency: bool = typer.Option(False, help="Saliency rule without saliency maps."),
    boundary: bool = typer.Option(True, help="Compute boundary F at every point (1-D sweeps)."),
    boundary_tolerance: str = typer.Option(
        str(DEFAULT_TOLERANCE), help="Fraction of the image diagonal, or pixels as `2px`."
    ),
    labels: str = typer.Option(
        "masks", help="Image-level labels: `masks` or a label-list file (`image_id c1 c2 ...`)."
    ),
    allow_extra_maps: bool = typer.Option(False, help="Allow maps of images outside the split."),
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
    workers: int = typer.Option(
        None, help="Decoding processes (default: 0 for small splits, else up to 4)."
    ),
    results: Path = typer.Option(Path("wsssbed-results"), "--out", help="Results folder."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON summary on stdout."),
) -> None:
    """Sweep a pseudo-label generator over a threshold grid in one pass; store every point."""
    with reported_errors():
        if method is not None:
            raise WsssbedError(
                "--method needs the manifest catalogue, which is not in this "
                "release yet; give --activation (and --saliency) instead"
            )
        if data_root is None:
            root = ensure_sample()
            data_root = root
            dataset, split = "voc2012", split or "train"
            allow_extra_maps = True  # the sample's maps cover train and val
            activation = activation or root / "activation" / METHOD / activation_format
            if generator == "saliency-rule" and not without_saliency:
                saliency = saliency or root / "saliency" / SALIENCY
        if activation is None:
            raise WsssbedError("give --activation (the folder of activation maps)")
        spec = get_dataset(dataset)
        local = LocalDataset(spec, data_root, split or spec.default_split)
        rule = make_rule(
            generator,
            thresholds=parse_grid(thresholds, name="--thresholds"),
            alphas=parse_grid(alphas, name="--alphas"),
            sal_thresholds=parse_grid(sal_thresholds, name="--sal-thresholds"),
            ignore_label=ignore_label,
            with_saliency=not without_saliency,
        )
        job = SweepJob(
            local,
            rule,
            activation=activation,
            activation_format=activation_format,
            saliency=saliency if rule.needs_saliency else None,
            boundary=Tolerance.parse(boundary_tolerance)
            if boundary and rule.supports_boundary
            else None,
            labels=labels,
            allow_extra=allow_extra_maps,
            device=device,
            workers=_default_workers(len(local.ids)) if workers is None else workers,
        )
        with progress_bar(f"sweeping {spec.name}/{local.split}", not as_json) as update:
            summary = run_and_store(job, results, stage="activation", progress=update)
    _finish(summary, results, as_json, f"best point of {rule.name} on {spec.name}/{local.split}")


@app.command()
def evaluate(
    pred: Path = typer.Option(..., help="Folder of label maps `<id>.png` (255 = unlabelled)."),
    dataset: str = typer.Option("voc2012", help="Dataset name or spec .toml."),
    data_root: Path = typer.Option(..., help="Dataset folder."),
    split: str = typer.Option(None, help="Split (default: the dataset's default)."),
    stage: str = typer.Option("pseudo-label", help=f"What the maps are: {', '.join(STAGES)}."),
    boundary: bool = typer.Option(True, help="Compute boundary F."),
    boundary_tolerance: str = typer.Option(
        str(DEFAULT_TOLERANCE), help="Fraction of the image diagonal, or pixels as `2px`."
    ),
    allow_extra_maps: bool = typer.Option(False, help="Allow maps of images outside the split."),
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
    workers: int = typer.Option(None, help="Decoding processes."),
    results: Path = typer.Option(Path("wsssbed-results"), "--out", help="Results folder."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON summary on stdout."),
) -> None:
    """Score hard label maps (pseudo-labels or a segmenter's output) with the same metrics."""
    with reported_errors():
        if stage not in STAGES:
            raise WsssbedError(f"--stage {stage!r}: use one of {', '.join(STAGES)}")
        spec = get_dataset(dataset)
        local = LocalDataset(spec, data_root, split or spec.default_split)
        rule = HardLabels("hard-labels", (Axis("point", (0.0,)),))
        job = SweepJob(
            local,
            rule,
            predictions=pred,
            boundary=Tolerance.parse(boundary_tolerance) if boundary else None,
            allow_extra=allow_extra_maps,
            device=device,
            workers=_default_workers(len(local.ids)) if workers is None else workers,
        )
        with progress_bar(f"evaluating {spec.name}/{local.split}", not as_json) as update:
            summary = run_and_store(job, results, stage=stage, progress=update)
    _finish(summary, results, as_json, f"{pred} on {spec.name}/{local.split}")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
