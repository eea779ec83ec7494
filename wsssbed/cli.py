"""The `wsssbed` command line: parse, call the library, render with rich. No logic here."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import typer
from rich.console import Console
from rich.markup import escape
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
from wsssbed.eval.tables import AXIS_COLUMNS
from wsssbed.grids import DEFAULT_ALPHAS, DEFAULT_SAL_THRESHOLDS, DEFAULT_THRESHOLDS, parse_grid
from wsssbed.manifest import PipelineSpec
from wsssbed.methods import check_digest, resolve_method
from wsssbed.pipeline import STAGES, RunSummary, run_and_store
from wsssbed.registry import all_manifests, local_folder, resolve
from wsssbed.results import METRIC_COLUMNS, best_points, read_table
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
results_app = typer.Typer(help="Query the Parquet results.", no_args_is_help=True)
app.add_typer(results_app, name="results")
out = Console()
err = Console(stderr=True)

# options several commands share
DEVICE_OPTION = typer.Option("auto", help="auto, cpu or cuda.")
WORKERS_OPTION = typer.Option(
    None, help="Decoding processes (default: 0 for small splits, else up to 4)."
)
RESULTS_OPTION = typer.Option(Path("wsssbed-results"), "--out", help="Results folder.")
JSON_SUMMARY_OPTION = typer.Option(False, "--json", help="Print a JSON summary on stdout.")
JSON_OPTION = typer.Option(False, "--json", help="Print JSON.")
BACKEND_OPTION = typer.Option("local", help="local, or ray (shard images into Ray tasks).")
ADDRESS_OPTION = typer.Option(
    None, help="Ray cluster: auto, HOST:PORT; default: start a local one (--backend ray)."
)
LABELS_OPTION = typer.Option(
    "masks", help="Image-level labels: `masks` or a label-list file (`image_id c1 c2 ...`)."
)
SAM_CHECKPOINT_OPTION = typer.Option(None, help="SAM weights (.pth); never downloaded.")
SAM_MODEL_OPTION = typer.Option(
    "auto", help="auto (read off the checkpoint), or vit_b, vit_l, vit_h to insist on one."
)
POINTS_PER_SIDE_OPTION = typer.Option(32, help="SAM automatic masks: prompt grid per side.")
PRED_IOU_OPTION = typer.Option(0.88, help="SAM automatic masks: predicted-IoU filter.")
STABILITY_OPTION = typer.Option(0.95, help="SAM automatic masks: stability-score filter.")
CLIP_WEIGHTS_OPTION = typer.Option(
    None, help="open_clip weights file (.bin, .pt, .safetensors); never downloaded."
)
CLIP_MODEL_OPTION = typer.Option(None, help="open_clip architecture, e.g. ViT-B-16.")
CLIP_CONFIG_OPTION = typer.Option(None, help="open_clip model config (JSON), for other ViTs.")
CLIP_TEMPLATE_OPTION = typer.Option("a photo of a {}.", help="Prompt template, one {}.")


@contextmanager
def reported_errors() -> Iterator[None]:
    """Turn a `WsssbedError` into one red line on stderr and exit code 2."""
    try:
        yield
    except WsssbedError as error:
        err.print(f"[bold red]error:[/] {escape(str(error))}", highlight=False, soft_wrap=True)
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
def datasets_list(ctx: typer.Context, as_json: bool = JSON_OPTION) -> None:
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
        help="A pinned method: a pipeline or activation manifest (`wsssbed manifests`). "
        "Its maps are verified against their digests; its pipeline sets the generator "
        "and grid unless given here.",
    ),
    dataset: str = typer.Option("voc2012", help="Dataset name or spec .toml."),
    data_root: Path = typer.Option(None, help="Dataset folder (default: the embedded sample)."),
    split: str = typer.Option(None, help="Split (default: the dataset's default)."),
    activation: Path = typer.Option(None, help="Folder of activation maps."),
    activation_format: str = typer.Option("irn-npy", help="irn-npy, png-per-class or npz."),
    generator: str = typer.Option(None, help="bg-threshold (default), power-bg or saliency-rule."),
    thresholds: str = typer.Option(
        None,
        help=f"Activation thresholds: start:stop:step (stop included) or a comma list "
        f"[default: {DEFAULT_THRESHOLDS}].",
    ),
    alphas: str = typer.Option(None, help=f"power-bg exponents [default: {DEFAULT_ALPHAS}]."),
    saliency: str = typer.Option(
        None, help="Folder of saliency PNGs; with --method, a saliency manifest name."
    ),
    sal_thresholds: str = typer.Option(
        None, help=f"Saliency thresholds (saliency-rule) [default: {DEFAULT_SAL_THRESHOLDS}]."
    ),
    ignore_label: bool = typer.Option(
        None, "--ignore-label/--no-ignore-label", help="Salient background becomes 255 (WSSS-BED)."
    ),
    without_saliency: bool = typer.Option(
        None, "--without-saliency", help="Saliency rule without saliency maps."
    ),
    boundary: bool = typer.Option(True, help="Compute boundary F at every point (1-D sweeps)."),
    boundary_tolerance: str = typer.Option(
        str(DEFAULT_TOLERANCE), help="Fraction of the image diagonal, or pixels as `2px`."
    ),
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
    with reported_errors():
        extra: dict = {}
        settings = PipelineSpec(activation="")
        if method is not None:
            if data_root is None:
                raise WsssbedError("--method needs --data-root (the dataset's ground truth)")
            if activation is not None:
                raise WsssbedError("give --method or --activation, not both")
            with progress_bar("verifying digests", not as_json) as update:
                resolved = resolve_method(method, saliency, verify, update)
            if not verify:
                err.print(
                    "[bold yellow]warning:[/] --no-verify: the maps are NOT checked against "
                    "their manifests' digests; this run is recorded as unverified",
                    soft_wrap=True,
                )
            dataset = resolved.dataset
            split = split or resolved.split
            allow_extra_maps = allow_extra_maps or split != resolved.split
            activation = resolved.activation.folder
            activation_format = resolved.activation.manifest.content.format
            saliency = None if resolved.saliency is None else str(resolved.saliency.folder)
            settings = resolved.pipeline or settings
            extra = resolved.provenance()
        elif data_root is None:
            dataset, data_root, split = _default_to_sample(dataset, data_root, split)
            allow_extra_maps = True  # the sample's maps cover train and val
            activation = activation or data_root / "activation" / METHOD / activation_format
            if generator == "saliency-rule" and not without_saliency:
                saliency = saliency or str(data_root / "saliency" / SALIENCY)
        if activation is None:
            raise WsssbedError("give --activation (the folder of activation maps) or --method")
        spec = get_dataset(dataset)
        local = LocalDataset(spec, data_root, split or spec.default_split)
        with_saliency = settings.with_saliency if without_saliency is None else not without_saliency
        rule = make_rule(
            generator or settings.generator,
            thresholds=parse_grid(thresholds or settings.thresholds, name="--thresholds"),
            alphas=parse_grid(alphas or settings.alphas, name="--alphas"),
            sal_thresholds=parse_grid(
                sal_thresholds or settings.sal_thresholds, name="--sal-thresholds"
            ),
            ignore_label=settings.ignore_label if ignore_label is None else ignore_label,
            with_saliency=with_saliency,
        )
        job = SweepJob(
            local,
            rule,
            activation=activation,
            activation_format=activation_format,
            saliency=Path(saliency) if rule.needs_saliency and saliency else None,
            boundary=Tolerance.parse(boundary_tolerance)
            if boundary and rule.supports_boundary
            else None,
            labels=labels,
            allow_extra=allow_extra_maps,
            device=device,
            workers=_default_workers(len(local.ids)) if workers is None else workers,
            per_image=per_image,
        )
        with progress_bar(f"sweeping {spec.name}/{local.split}", not as_json) as update:
            summary = run_and_store(
                job,
                results,
                stage="activation",
                progress=update,
                extra=extra,
                backend=backend,
                address=address,
            )
    title = f"best point of {method or rule.name} on {spec.name}/{local.split}"
    _finish(summary, results, as_json, title)


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
    device: str = DEVICE_OPTION,
    backend: str = BACKEND_OPTION,
    address: str = ADDRESS_OPTION,
    workers: int = WORKERS_OPTION,
    results: Path = RESULTS_OPTION,
    as_json: bool = JSON_SUMMARY_OPTION,
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
            summary = run_and_store(
                job, results, stage=stage, progress=update, backend=backend, address=address
            )
    _finish(summary, results, as_json, f"{pred} on {spec.name}/{local.split}")


@app.command("pseudo-labels")
def pseudo_labels(
    out_dir: Path = typer.Option(..., "--out", help="Folder of the pseudo-labels."),
    dataset: str = typer.Option("voc2012", help="Dataset name or spec .toml."),
    data_root: Path = typer.Option(None, help="Dataset folder (default: the embedded sample)."),
    split: str = typer.Option(None, help="Split (default: the dataset's default)."),
    generator: str = typer.Option(
        ..., help="bg-threshold, power-bg, saliency-rule, sam-refine or sam-box."
    ),
    base: str = typer.Option(
        "bg-threshold", help="sam-refine / sam-box: the classic generator of the CAM label."
    ),
    activation: Path = typer.Option(None, help="Folder of activation maps."),
    activation_format: str = typer.Option("irn-npy", help="irn-npy, png-per-class or npz."),
    threshold: float = typer.Option(None, help="bg-threshold: background score."),
    alpha: float = typer.Option(None, help="power-bg: exponent."),
    saliency: Path = typer.Option(None, help="saliency-rule: folder of saliency PNGs."),
    sal_threshold: float = typer.Option(0.2, help="saliency-rule: saliency threshold."),
    atm_threshold: float = typer.Option(0.1, help="saliency-rule: activation threshold."),
    ignore_label: bool = typer.Option(
        True, help="saliency-rule: salient background becomes 255 (ignore)."
    ),
    without_saliency: bool = typer.Option(False, help="saliency-rule without saliency maps."),
    boxes: Path = typer.Option(
        None, help="sam-box: a detector's boxes (JSON: id -> [{box, label, score}])."
    ),
    min_box_pixels: int = typer.Option(16, help="sam-box: smallest CAM region giving a box."),
    sam_checkpoint: Path = SAM_CHECKPOINT_OPTION,
    sam_model: str = SAM_MODEL_OPTION,
    points_per_side: int = POINTS_PER_SIDE_OPTION,
    pred_iou_thresh: float = PRED_IOU_OPTION,
    stability_thresh: float = STABILITY_OPTION,
    clip_weights: Path = CLIP_WEIGHTS_OPTION,
    clip_model: str = CLIP_MODEL_OPTION,
    clip_config: Path = CLIP_CONFIG_OPTION,
    clip_template: str = CLIP_TEMPLATE_OPTION,
    labels: str = LABELS_OPTION,
    device: str = DEVICE_OPTION,
    backend: str = BACKEND_OPTION,
    address: str = ADDRESS_OPTION,
) -> None:
    """Write pseudo-labels (palette PNGs, 255 = ignore); resumable, never half-written."""
    from wsssbed.pseudo.foundation import FOUNDATION, SamBoxGenerator, SamRefineGenerator
    from wsssbed.pseudo.generators import CLASSIC, make_generator

    with reported_errors():
        uses_cams = not (generator == "sam-box" and boxes is not None)
        if data_root is None:
            dataset, data_root, split = _default_to_sample(dataset, data_root, split)
            if uses_cams:
                activation = activation or data_root / "activation" / METHOD / activation_format
            if "saliency-rule" in (generator, base) and not without_saliency:
                saliency = saliency or data_root / "saliency" / SALIENCY
        if generator not in CLASSIC + FOUNDATION:
            raise WsssbedError(
                f"--generator {generator!r}: use one of {', '.join(CLASSIC + FOUNDATION)}"
            )
        classic = None
        if uses_cams:
            classic = make_generator(
                generator if generator in CLASSIC else base,
                threshold=threshold,
                alpha=alpha,
                sal_threshold=sal_threshold,
                atm_threshold=atm_threshold,
                ignore_label=ignore_label,
                without_saliency=without_saliency,
            )
        made = classic
        if generator == "sam-refine":
            made = SamRefineGenerator(classic, _sam_options(
                generator, sam_checkpoint, sam_model, points_per_side, pred_iou_thresh,
                stability_thresh))  # fmt: skip
        elif generator == "sam-box":
            sam = _sam_options(generator, sam_checkpoint, sam_model, points_per_side,
                               pred_iou_thresh, stability_thresh)  # fmt: skip
            clip = _clip_options(clip_weights, clip_model, clip_config, clip_template, None)
            made = SamBoxGenerator(sam, boxes, None if boxes else classic, clip, min_box_pixels)
        if made.rule.needs_maps and activation is None:
            raise WsssbedError("give --activation (the folder of activation maps)")
        if made.rule.needs_saliency and saliency is None:
            raise WsssbedError("saliency-rule needs --saliency (or --without-saliency)")
        job = _generation_job(
            made, dataset, data_root, split, out_dir, labels, device,
            activation=activation if made.rule.needs_maps else None,
            activation_format=activation_format,
            saliency=saliency if made.rule.needs_saliency else None,
        )  # fmt: skip
        _run_generation(job, backend, address, "pseudo-labels", "label maps")


@app.command("clip-activations")
def clip_activations(
    out_dir: Path = typer.Option(..., "--out", help="Folder of the activation maps (npz)."),
    clip_weights: Path = CLIP_WEIGHTS_OPTION,
    clip_model: str = CLIP_MODEL_OPTION,
    clip_config: Path = CLIP_CONFIG_OPTION,
    clip_template: str = CLIP_TEMPLATE_OPTION,
    dataset: str = typer.Option("voc2012", help="Dataset name or spec .toml."),
    data_root: Path = typer.Option(None, help="Dataset folder (default: the embedded sample)."),
    split: str = typer.Option(None, help="Split (default: the dataset's default)."),
    labels: str = LABELS_OPTION,
    device: str = DEVICE_OPTION,
    backend: str = BACKEND_OPTION,
    address: str = ADDRESS_OPTION,
) -> None:
    """CLIP Grad-CAM activation maps of each image's labels, as npz for `sweep`."""
    from wsssbed.pseudo.foundation import ClipCamGenerator

    with reported_errors():
        clip = _clip_options(clip_weights, clip_model, clip_config, clip_template, "clip-cam")
        job = _generation_job(ClipCamGenerator(clip), dataset, data_root, split, out_dir,
                              labels, device)  # fmt: skip
        _run_generation(job, backend, address, "CLIP activations", "activation maps")


@app.command("saliency")
def saliency_maps(
    out_dir: Path = typer.Option(..., "--out", help="Folder of the saliency PNGs."),
    generator: str = typer.Option("sam-clip", help="sam-clip (SAM masks x CLIP objectness)."),
    sam_checkpoint: Path = SAM_CHECKPOINT_OPTION,
    sam_model: str = SAM_MODEL_OPTION,
    points_per_side: int = POINTS_PER_SIDE_OPTION,
    pred_iou_thresh: float = PRED_IOU_OPTION,
    stability_thresh: float = STABILITY_OPTION,
    clip_weights: Path = CLIP_WEIGHTS_OPTION,
    clip_model: str = CLIP_MODEL_OPTION,
    clip_config: Path = CLIP_CONFIG_OPTION,
    clip_template: str = CLIP_TEMPLATE_OPTION,
    dataset: str = typer.Option("voc2012", help="Dataset name or spec .toml."),
    data_root: Path = typer.Option(None, help="Dataset folder (default: the embedded sample)."),
    split: str = typer.Option(None, help="Split (default: the dataset's default)."),
    device: str = DEVICE_OPTION,
    backend: str = BACKEND_OPTION,
    address: str = ADDRESS_OPTION,
) -> None:
    """Training-free saliency maps (8-bit PNGs) to pair with any activation method."""
    from wsssbed.saliency.sam_clip import SamClipSaliency

    with reported_errors():
        if generator != "sam-clip":
            raise WsssbedError(f"--generator {generator!r}: use sam-clip")
        sam = _sam_options(generator, sam_checkpoint, sam_model, points_per_side,
                           pred_iou_thresh, stability_thresh)  # fmt: skip
        clip = _clip_options(clip_weights, clip_model, clip_config, clip_template, generator)
        job = _generation_job(SamClipSaliency(sam, clip), dataset, data_root, split, out_dir,
                              "masks", device)  # fmt: skip
        _run_generation(job, backend, address, "saliency", "saliency maps")


def _sam_options(
    generator: str, checkpoint: Path | None, model_type: str, points_per_side: int,
    pred_iou_thresh: float, stability_thresh: float,
):  # fmt: skip
    from wsssbed.foundation.sam import SAM_MODEL_CHOICES, MaskSettings
    from wsssbed.pseudo.foundation import SamOptions

    if checkpoint is None:
        raise WsssbedError(f"{generator} needs --sam-checkpoint (a local SAM .pth file)")
    if model_type not in SAM_MODEL_CHOICES:
        raise WsssbedError(f"--sam-model {model_type!r}: use one of {', '.join(SAM_MODEL_CHOICES)}")
    if points_per_side < 1:
        raise WsssbedError("--points-per-side must be at least 1")
    return SamOptions(
        checkpoint, model_type, MaskSettings(points_per_side, pred_iou_thresh, stability_thresh)
    )


def _clip_options(
    weights: Path | None, model: str | None, config: Path | None, template: str,
    needed_by: str | None,
):  # fmt: skip
    """CLIP options, or None when no weights are given and nothing needs them."""
    from wsssbed.pseudo.foundation import ClipOptions

    if weights is None:
        if needed_by is not None:
            raise WsssbedError(f"{needed_by} needs --clip-weights (a local open_clip file)")
        if model is not None or config is not None:
            raise WsssbedError("--clip-model / --clip-config need --clip-weights")
        return None
    return ClipOptions(weights, model, config, template)


def _default_to_sample(
    dataset: str, data_root: Path | None, split: str | None
) -> tuple[str, Path, str | None]:
    """(dataset, data root, split); without --data-root, the embedded sample (VOC 2012,
    split train unless one is given)."""
    if data_root is None:
        return "voc2012", ensure_sample(), split or "train"
    return dataset, data_root, split


def _generation_job(
    generator, dataset: str, data_root: Path | None, split: str | None, out_dir: Path,
    labels: str, device: str, **inputs,
):  # fmt: skip
    from wsssbed.pseudo.writer import GenerationJob

    dataset, data_root, split = _default_to_sample(dataset, data_root, split)
    spec = get_dataset(dataset)
    local = LocalDataset(spec, data_root, split or spec.default_split)
    return GenerationJob(local, generator, out_dir, labels=labels, device=device, **inputs)


def _run_generation(job, backend: str, address: str | None, what: str, files: str) -> None:
    """Check everything, generate with a progress bar (locally or on Ray), seal the folder."""
    from wsssbed.pseudo.writer import finish, generate, start

    if backend not in ("local", "ray"):
        raise WsssbedError(f"--backend {backend!r}: use local or ray")
    start(job)
    local = job.dataset
    with progress_bar(f"{what} {local.spec.name}/{local.split}") as update:
        if backend == "ray":
            from wsssbed.distributed import generate_ray

            written, skipped = generate_ray(job, address, update)
        else:
            written, skipped = generate(job, local.ids, update)
    record = finish(job)
    out.print(
        f"{written:,} written, {skipped:,} already there; {record['files']:,} {files} in "
        f"{job.out} ({record['digest']})",
        soft_wrap=True,
    )


# ----------------------------------------------------------------------------- manifests


@app.command()
def manifests(
    kind: str = typer.Option(None, help="activation, saliency or pipeline."),
    dataset: str = typer.Option(None, help="Only this dataset."),
    as_json: bool = JSON_OPTION,
) -> None:
    """List the manifests: the catalogue and your own (submitted or registered)."""
    with reported_errors():
        found = [
            m
            for m in all_manifests().values()
            if (kind is None or m.kind == kind) and (dataset is None or m.dataset == dataset)
        ]
    if as_json:
        rows = [
            {
                "name": m.name,
                "version": m.version,
                "kind": m.kind,
                "dataset": m.dataset,
                "split": m.split,
                "digest": m.content.digest or None,
                "local_copy": m.source.path or None,
                "file": str(m.path),
            }
            for m in found
        ]
        print(json.dumps(rows, indent=2))
        return
    table = Table(title=f"{len(found)} manifests")
    for column in ("name", "version", "kind", "dataset/split", "pinned", "local copy"):
        table.add_column(column, overflow="fold")
    for m in found:
        pinned = "-" if m.kind == "pipeline" else ("yes" if m.content.digest else "not yet")
        table.add_row(
            m.name, m.version, m.kind, f"{m.dataset}/{m.split}", pinned, m.source.path or "-"
        )
    out.print(table)


@app.command()
def fetch(
    name: str = typer.Argument(..., help="Manifest name (a pipeline fetches its sources)."),
    path: Path = typer.Option(
        None, help="Register this local folder instead of downloading (verified or pinned)."
    ),
) -> None:
    """Download a manifest's maps and verify them, or register a local copy with --path."""
    from wsssbed.fetch import fetch as fetch_maps

    with reported_errors(), progress_bar(f"fetching {name}") as update:
        registered = fetch_maps(name, path, update)
    for m in registered:
        out.print(
            f"{m.ref}: {m.content.files:,} files, {m.content.digest}, registered at {m.path}",
            soft_wrap=True,
        )


@app.command()
def verify(
    name: str = typer.Argument(None, help="Manifest name."),
    all_: bool = typer.Option(False, "--all", help="Every manifest with a local copy."),
) -> None:
    """Recompute the digests of local copies and report drift (exit 1 on any)."""
    with reported_errors():
        if (name is None) == (not all_):
            raise WsssbedError("give a manifest NAME or --all")
        targets = [resolve(name)] if name else list(all_manifests().values())
        table = Table(title="digest check")
        for column in ("manifest", "files", "status"):
            table.add_column(column)
        failed = 0
        for m in targets:
            if m.kind == "pipeline":
                continue
            folder = local_folder(m)
            if folder is None:
                if name is not None:
                    raise WsssbedError(f"{m.ref} has no local copy; `wsssbed fetch {m.name}`")
                continue
            try:
                with progress_bar(f"digesting {m.name}") as update:
                    check_digest(m, folder, update)
                status = "[green]ok[/]"
            except WsssbedError as error:
                failed += 1
                status = f"[red]{error}[/]"
            table.add_row(m.ref, f"{m.content.files:,}", status)
    out.print(table)
    if failed:
        raise typer.Exit(1)


@app.command()
def submit(
    maps: Path = typer.Argument(..., help="Folder of activation maps, or a .zip / .tar.gz."),
    dataset: str = typer.Option(..., help="Dataset name."),
    data_root: Path = typer.Option(..., help="Dataset folder (ground truth)."),
    split: str = typer.Option(..., help="The split the maps cover, exactly."),
    fmt: str = typer.Option(..., "--format", help="irn-npy, png-per-class or npz."),
    name: str = typer.Option(..., help="Manifest name for the method (lower-case, no spaces)."),
    version: str = typer.Option("1.0.0", help="Semver; above the existing one to update."),
    paper: str = typer.Option("", help="Paper link."),
    code: str = typer.Option("", help="Code link."),
    license_: str = typer.Option("", "--license", help="License of the maps."),
    note: str = typer.Option("submitted", help="Changelog note for this version."),
    device: str = DEVICE_OPTION,
    workers: int = WORKERS_OPTION,
    results: Path = RESULTS_OPTION,
    as_json: bool = JSON_SUMMARY_OPTION,
) -> None:
    """Validate precomputed maps, pin them in a new manifest and run the default sweep."""
    from wsssbed.submit import Submission
    from wsssbed.submit import submit as submit_maps

    with reported_errors():
        spec = get_dataset(dataset)
        local = LocalDataset(spec, data_root, split)
        rule = make_rule("bg-threshold", thresholds=parse_grid(DEFAULT_THRESHOLDS))
        job = SweepJob(
            local,
            rule,
            boundary=Tolerance(DEFAULT_TOLERANCE),
            device=device,
            workers=_default_workers(len(local.ids)) if workers is None else workers,
        )
        entry = Submission(name, fmt, version, paper, code, license_, note=note)
        with progress_bar(f"validating and sweeping {name}", not as_json) as update:
            manifest, summary = submit_maps(maps, job, entry, results, update)
    if not as_json:
        out.print(
            f"[green]pinned[/] {manifest.ref}: {manifest.content.files:,} files, "
            f"{manifest.content.digest} -> {manifest.path}",
            soft_wrap=True,
        )
    _finish(summary, results, as_json, f"best point of {name} on {spec.name}/{split}")


@results_app.command("show")
def results_show(
    results: Path = typer.Option(Path("wsssbed-results"), "--results", help="Results folder."),
    method: str = typer.Option(None, help="Only runs of this method."),
    dataset: str = typer.Option(None, help="Only runs on this dataset."),
    as_json: bool = JSON_OPTION,
) -> None:
    """The best point of every stored run, and per-class IoU at those points."""
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
                    "best_point": {a: float(run[a]) for a in AXIS_COLUMNS if pd.notna(run[a])},
                    **{m: _fraction(run[m]) for m in METRIC_COLUMNS},
                    "per_class_iou": dict(zip(classes.class_name, classes.iou.astype(float))),
                }
            )
        print(json.dumps(rows, indent=2))
        return
    table = Table(title=f"best points in {results}")
    for column in ("run", "method", "dataset/split", "generator", "point", "mIoU", "BF"):
        justify = "right" if column in ("mIoU", "BF") else "left"
        table.add_column(column, justify=justify, overflow="fold")
    for _, run in best.iterrows():
        point = ", ".join(f"{a}={run[a]:g}" for a in AXIS_COLUMNS if pd.notna(run[a]))
        table.add_row(
            run.run_id,
            "-" if pd.isna(run.method) else str(run.method),
            f"{run.dataset}/{run.split}",
            run.generator,
            point,
            _percent(run.miou),
            _percent(run.bf_f),
        )
    out.print(table)
    classes = Table(title="per-class IoU at the best points")
    classes.add_column("class")
    runs = best.run_id.tolist()
    for run_id in runs:
        classes.add_column(run_id[-8:], justify="right")
    by_class = keyed.pivot_table(index=["class_id", "class_name"], columns="run_id", values="iou")
    unions = keyed.pivot_table(index=["class_id", "class_name"], columns="run_id", values="union")
    for (_, class_name), row in by_class.iterrows():
        cells = [
            _percent(row.get(r)) if unions.loc[(_, class_name)].get(r, 0) > 0 else "-" for r in runs
        ]
        classes.add_row(class_name, *cells)
    out.print(classes)


@app.command()
def sensitivity(
    results: Path = typer.Option(Path("wsssbed-results"), "--results", help="Results folder."),
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
        point = f"{row.axis} {row.best_threshold:g}"
        if pd.notna(row.best_sal_threshold):
            point += f", sal {row.best_sal_threshold:g}"
        interval = "-" if pd.isna(row.ci_low) else f"{100 * row.ci_low:.2f}-{100 * row.ci_high:.2f}"
        table.add_row(
            row.label,
            f"{row.dataset}/{row.split}",
            _percent(row.best_miou),
            point,
            _percent(row.at_recommended_miou),
            f"{row.plateau_width:g}",
            _percent(row.auc),
            interval,
        )
    out.print(table)
    for _, row in study.transfer.iterrows():
        out.print(
            f"transfer {row.label}: chosen on {row.chosen_on}, scored on {row.scored_on}: "
            f"{_percent(row.transferred_miou)} (oracle {_percent(row.oracle_miou)}, "
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
    results: Path = typer.Option(Path("wsssbed-results"), "--results", help="Results folder."),
    out_dir: Path = typer.Option(Path("leaderboard/site"), "--out", help="Site folder."),
    reported: Path = typer.Option(
        None, help="TOML file of numbers reported in papers (`[[reported]]` tables)."
    ),
    gallery: int = typer.Option(4, help="Gallery images per run (0: none)."),
    draws: int = typer.Option(1000, help="Bootstrap resamples for the intervals."),
) -> None:
    """Render the static leaderboard (self-contained, works from file://)."""
    from wsssbed.report.leaderboard import render_site

    with reported_errors(), progress_bar("rendering the leaderboard"):
        files = render_site(results, out_dir, reported, gallery, draws)
    out.print(f"{len(files)} files; open {out_dir / 'index.html'}")


def _fraction(value) -> float | None:
    return None if value is None or pd.isna(value) else float(value)


def _percent(value) -> str:
    return "-" if value is None or pd.isna(value) else f"{100 * float(value):.2f}%"


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
