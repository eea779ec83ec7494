"""The Python API: `sweep`, `evaluate` and `read_results`, the library behind the CLI.

Keyword names are the CLI's options with underscores; paths may be `str` or `Path`;
grids may be strings (`0:0.6:0.01`, `0.1,0.2`) or sequences of numbers. A value left
at None takes the pipeline manifest's setting (with `method`), else the default:
generator `bg-threshold`, thresholds `0:0.6:0.01`, saliency thresholds `0.2`, alphas
`1:32:1`, no ignore label. Without `data_root` the embedded sample is used (VOC 2012
layout, split train), as a bare `wsssbed sweep` does.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd

from wsssbed.embedded.sample import default_to_sample, sample_activation, sample_saliency
from wsssbed.errors import InputError
from wsssbed.eval.axes import edge_warnings
from wsssbed.io.names import CONTROL
from wsssbed.protocol import (
    DEFAULT_TOLERANCE,
    HARD_LABELS,
    Protocol,
    build_protocol,
    check_flag,
    check_text,
    checked_tolerance,
)
from wsssbed.results.runs import Progress, SweepResult, compute_run
from wsssbed.results.store import results_folder

PathLike = str | Path
Grid = str | Sequence[float]


def sweep(
    dataset: str | None = None,
    data_root: PathLike | None = None,
    split: str | None = None,
    activation: PathLike | None = None,
    activation_format: str = "auto",
    generator: str | None = None,
    thresholds: Grid | None = None,
    saliency: PathLike | None = None,
    sal_thresholds: Grid | None = None,
    alphas: Grid | None = None,
    ignore_label: bool | None = None,
    boundary: bool = True,
    device: str = "auto",
    workers: int | None = None,
    method: str | None = None,
    out: PathLike | None = None,
    *,
    name: str | None = None,
    without_saliency: bool | None = None,
    boundary_tolerance: str | None = None,
    labels: PathLike = "masks",
    allow_extra_maps: bool = False,
    verify: bool = True,
    per_image: bool = False,
    backend: str = "local",
    address: str | None = None,
    progress: Progress | None = None,
) -> SweepResult:
    """Sweep a generator over its grid in one pass and return every point.

    Args:
        dataset: built-in name (`voc2012`, `coco2014`, ...) or a spec `.toml` path.
        data_root: the dataset's folder; None: the embedded sample (voc2012 only).
        split: split name (None: the dataset's default, or the method's split).
        activation: folder of activation maps in `activation_format` (`auto`: the format
            the files hold, recorded with the run; or `irn-npy`, `seam-npy`,
            `puzzlecam-npy`, `clip-es-npy`, `png-per-class`, `npz`).
        generator: a registered rule (`bg-threshold`, `power-bg`, `saliency-rule`).
        saliency: folder of saliency PNGs; with `method`, a saliency manifest name.
        boundary: boundary F at every point (1-D grids; silently off for 2-D grids
            unless `boundary_tolerance` is given).
        device: `auto`, `cpu` or `cuda`; workers: decoding processes (None: as many as the
            measured cost pays for).
        method: a pipeline or activation manifest (`wsssbed manifests`), verified
            against its digest; its pipeline sets generator and grids unless given.
        name: the method name stored with the run (`runs.method`) for maps given by
            `activation` (a `method` run is named by its manifest); None: no name.
        out: a results folder to append the run to (None: nothing is written).
        labels: image-level labels, `masks` or a label-list file.
        progress: called as `progress(done, total)` after each image.

    Raises:
        InputError: bad parameters or bad input files (the message names the file).
    """
    _check_workers(workers)
    for value, flag in ((allow_extra_maps, "allow_extra_maps"), (verify, "verify"),
                        (per_image, "per_image")):  # fmt: skip
        check_flag(value, flag)
    check_flag(without_saliency, "without_saliency", optional=True)
    check_text(method, "method", optional=True)
    _check_name(name)
    check_text(activation_format, "activation_format")
    data_root, activation, out = (_path(data_root, "data_root"), _path(activation, "activation"),
                                  _path(out, "out"))  # fmt: skip
    if method is None:
        saliency = _path(saliency, "saliency")
    labels = labels if labels == "masks" else _path(labels, "labels")
    pipeline, extra = None, {}
    if name is not None:
        if method is not None:
            raise InputError(
                "give `name` or `method`, not both: a pinned method is named by its manifest"
            )
        extra = {"method": name}
    if method is not None:
        if data_root is None:
            raise InputError("`method` needs `data_root` (the dataset's ground truth)")
        if activation is not None:
            raise InputError("give `method` or `activation`, not both")
        from wsssbed.catalogue.methods import resolve_method

        resolved = resolve_method(method, None if saliency is None else str(saliency), verify)
        if not verify:
            warnings.warn(
                "verify=False: the maps are NOT checked against their manifests' digests; "
                "this run is recorded as unverified",
                stacklevel=2,
            )
        if dataset not in (None, resolved.dataset):
            raise InputError(f"method {method} is for {resolved.dataset}, not {dataset}")
        subset = resolved.activation.manifest.subset
        if split is None and subset is not None:
            raise InputError(
                f"{resolved.activation.manifest.ref} covers part of {resolved.dataset}/"
                f"{resolved.split}: the {subset.images:,} images listed in {subset.name} "
                f"(split digest {subset.split_digest}); give that id-list file as `split`"
            )
        dataset, split = resolved.dataset, split or resolved.split
        allow_extra_maps = allow_extra_maps or split != resolved.split
        activation = resolved.activation.folder
        activation_format = resolved.activation.manifest.content.format
        saliency = None if resolved.saliency is None else resolved.saliency.folder
        pipeline, extra = resolved.pipeline, resolved.provenance()
    on_sample = data_root is None
    dataset, data_root, split = default_to_sample(dataset, data_root, split)
    if out is not None:
        results_folder(Path(out))  # before any work
    protocol = build_protocol(
        dataset=dataset,
        split=split,
        generator=generator,
        thresholds=thresholds,
        sal_thresholds=sal_thresholds,
        alphas=alphas,
        ignore_label=ignore_label,
        with_saliency=None if without_saliency is None else not without_saliency,
        boundary=boundary,
        boundary_tolerance=boundary_tolerance,
        labels=str(labels),
        pipeline=pipeline,
    )
    if on_sample:
        allow_extra_maps = True  # the sample's maps cover train and val
        activation = activation or sample_activation(data_root, activation_format)
        if protocol.rule.needs_saliency:
            saliency = saliency or sample_saliency(data_root)
    rule = protocol.rule
    if rule.needs_maps and activation is None:
        raise InputError("give `activation` (the folder of activation maps) or `method`")
    if rule.needs_saliency and saliency is None:
        raise InputError(
            f"{rule.name} needs `saliency` (a folder of saliency PNGs), or `without_saliency`"
        )
    job, protocol = _job(
        protocol,
        data_root,
        activation=None if activation is None else Path(activation),
        activation_format=activation_format,
        saliency=Path(saliency) if rule.needs_saliency else None,
        allow_extra=allow_extra_maps,
        device=device,
        workers=workers,
        per_image=per_image,
    )
    result = compute_run(job, stage="activation", progress=progress, extra=extra,
                         backend=backend, address=address)  # fmt: skip
    best = {name: float(result.best[name]) for name, _ in protocol.grids}
    for message in edge_warnings(protocol.grids, best):
        warnings.warn(message, stacklevel=2)
    if out is not None:
        result.save(out)
    return result


def evaluate(
    pred: PathLike,
    dataset: str | None = None,
    data_root: PathLike | None = None,
    split: str | None = None,
    *,
    stage: str = "pseudo-label",
    name: str | None = None,
    boundary: bool = True,
    boundary_tolerance: str | None = None,
    allow_extra_maps: bool = False,
    device: str = "auto",
    workers: int | None = None,
    backend: str = "local",
    address: str | None = None,
    out: PathLike | None = None,
    progress: Progress | None = None,
) -> SweepResult:
    """Score hard label maps (`<id>.png`, 255 = unlabelled) with the sweep's metrics.

    Args:
        pred: folder of label maps (pseudo-labels or a segmenter's output).
        stage: `pseudo-label` or `final` (or `activation`).
        name: the method name stored with the run (default: the folder's name).
        The others as in `sweep`.
    """
    _check_workers(workers)
    check_flag(allow_extra_maps, "allow_extra_maps")
    check_text(name, "name", optional=True)
    pred, data_root, out = _path(pred, "pred"), _path(data_root, "data_root"), _path(out, "out")
    if pred is None:
        raise InputError("`pred` must be a path (str or pathlib.Path), got None")
    dataset, data_root, split = default_to_sample(dataset, data_root, split)
    check_text(dataset, "dataset")
    check_text(split, "split", optional=True)
    _check_name(name)
    check_flag(boundary, "boundary")
    boundary_tolerance = checked_tolerance(boundary_tolerance)
    if out is not None:
        results_folder(Path(out))  # before any work
    protocol = Protocol(
        dataset=dataset,
        split=split,
        generator=HARD_LABELS,
        boundary_tolerance=(boundary_tolerance or DEFAULT_TOLERANCE) if boundary else None,
    )
    protocol.tolerance  # noqa: B018  (a bad tolerance fails before any work)
    job, _ = _job(
        protocol,
        data_root,
        predictions=Path(pred),
        allow_extra=allow_extra_maps,
        device=device,
        workers=workers,
    )
    extra = {"method": name or Path(pred).name}
    result = compute_run(
        job, stage=stage, progress=progress, extra=extra, backend=backend, address=address
    )
    if out is not None:
        result.save(out)
    return result


@dataclass
class Results:
    """The tables of a results folder, committed rows only (see docs/results.md)."""

    runs: pd.DataFrame
    sweeps: pd.DataFrame
    per_class: pd.DataFrame
    per_image: pd.DataFrame


def read_results(folder: PathLike) -> Results:
    """Read a results folder's tables as DataFrames."""
    from wsssbed.results.store import read_table

    path = _path(folder, "folder")
    if path is None:
        raise InputError("`folder` must be a path (str or pathlib.Path), got None")
    return Results(*(read_table(path, t) for t in ("runs", "sweeps", "per_class", "per_image")))


def _check_name(name: object) -> None:
    """Refuse a method name that is not a string (or None) or holds a control character:
    it is printed in tables and exported as rows (a newline split a Markdown row)."""
    check_text(name, "name", optional=True)
    if name is not None and CONTROL.search(name):
        raise InputError(f"`name` {name!r:.40} holds a control character")


def _check_workers(workers: object) -> None:
    if workers is not None and (
        isinstance(workers, bool) or not isinstance(workers, int) or workers < 0
    ):
        raise InputError(
            "`workers` must be a non-negative integer (0: decode in this process) or None, "
            f"got {type(workers).__name__} {workers!r:.30}"
        )


def _path(value: PathLike | None, name: str) -> Path | None:
    """A path argument as a `Path` (None stays None), or an InputError naming it."""
    if value is None:
        return None
    if not isinstance(value, str | os.PathLike):
        raise InputError(f"`{name}` must be a path (str or pathlib.Path), got "
                         f"{type(value).__name__} {value!r:.30}")  # fmt: skip
    return Path(value)


def _job(protocol: Protocol, data_root: PathLike, *, workers: int | None, **inputs):
    """The job of `protocol` on the split below `data_root`; the protocol with its split."""
    from wsssbed.datasets import get_dataset
    from wsssbed.datasets.local import LocalDataset
    from wsssbed.eval.job import SweepJob

    spec = get_dataset(protocol.dataset)
    local = LocalDataset(spec, Path(data_root), protocol.split or spec.default_split)
    protocol = replace(protocol, split=local.split)
    return SweepJob.from_protocol(protocol, local, workers=workers, **inputs), protocol
