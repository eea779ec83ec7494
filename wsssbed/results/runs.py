"""Run a sweep job and turn its state into rows: the `SweepResult` behind the API and CLI."""

from __future__ import annotations

import hashlib
import json
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from wsssbed import __version__
from wsssbed.datasets import recorded_spec
from wsssbed.datasets.fingerprint import split_digest
from wsssbed.datasets.local import LocalDataset, read_label_list
from wsssbed.datasets.sanity import void_warning
from wsssbed.errors import GroundTruthWarning, InputError, UnofficialSplitWarning
from wsssbed.eval.axes import AXIS_COLUMNS
from wsssbed.eval.job import SweepJob
from wsssbed.eval.loop import run_sweep
from wsssbed.eval.reduce import SweepState
from wsssbed.eval.tables import per_image_table, sweep_tables
from wsssbed.io.digest import file_sha256
from wsssbed.io.provenance import git_commit, new_run_id, package_versions, utc_now
from wsssbed.results.store import SCHEMA_VERSION, append_run, best_row, results_folder

STAGES = ("activation", "pseudo-label", "final")
BACKENDS = ("local", "ray")
Progress = Callable[[int, int], None]


@dataclass
class SweepResult:
    """One computed run: its grid points, per-class counts and provenance.

    Attributes:
        run_id: the run's id (also in every row).
        points: one row per grid point, the columns of `sweeps.parquet`.
        per_class: one row per (grid point, class), the columns of `per_class.parquet`.
        per_image: non-zero per-image counts (empty unless the run kept them).
        runs: the one-row provenance table (`runs.parquet`'s columns).
    """

    run_id: str
    points: pd.DataFrame
    per_class: pd.DataFrame
    per_image: pd.DataFrame
    runs: pd.DataFrame
    saved_to: list[Path] = field(default_factory=list, repr=False)

    @property
    def run(self) -> pd.Series:
        """The provenance row."""
        return self.runs.iloc[0]

    @property
    def best(self) -> pd.Series:
        """The grid point with the highest mIoU (the first on ties)."""
        return best_row(self.points)

    def save(self, out: str | Path) -> Path:
        """Append this run to the results folder `out` (atomically), as the CLI does.

        Raises:
            InputError: `out` is a file, or this run is already stored there.
        """
        folder = Path(out)
        results_folder(folder)
        if folder.resolve() in self.saved_to:
            raise InputError(f"run {self.run_id} is already stored here", folder)
        tables = {
            "runs": self.runs,
            "sweeps": self.points,
            "per_class": self.per_class,
            "per_image": self.per_image,
        }
        append_run(folder, tables)
        self.saved_to.append(folder.resolve())
        return folder

    def as_json(self) -> dict:
        """Machine-readable summary (scores as fractions in [0, 1])."""
        best = self.best
        run = self.run
        point = {c: float(best[c]) for c in AXIS_COLUMNS if pd.notna(best[c])}
        metrics = {
            c: (None if pd.isna(best[c]) else float(best[c]))
            for c in self.points.columns
            if c not in ("run_id", "point", "n_images", *AXIS_COLUMNS)
        }
        return {
            "run_id": self.run_id,
            "dataset": run.dataset,
            "split": run.split,
            "generator": run.generator,
            "stage": run.stage,
            "n_images": int(run.n_images),
            "gt_void_ratio": None if pd.isna(run.gt_void_ratio) else float(run.gt_void_ratio),
            "split_official": None if pd.isna(run.split_official) else bool(run.split_official),
            "grid_points": len(self.points),
            "best_point": point,
            "best": metrics,
            "wall_time_s": float(run.wall_time_s),
            "device": run.device,
            "results": [str(p) for p in self.saved_to],
        }


def execute(
    job: SweepJob,
    progress: Progress | None = None,
    backend: str = "local",
    address: str | None = None,
) -> tuple[SweepState, float, str]:
    """Run `job` on this machine or on a Ray cluster (same integers either way)."""
    if backend == "local":
        return run_sweep(job, progress)
    if backend == "ray":
        from wsssbed.distributed import run_sweep_ray

        return run_sweep_ray(job, address, progress)
    raise InputError(f"backend {backend!r}: use one of {', '.join(BACKENDS)}")


def ground_truth_record(dataset: LocalDataset, state: SweepState, gt_pixels: np.ndarray) -> dict:
    """The run's fingerprint columns: which masks, from where, over which ids, how much of
    them is void, whether the ids are the official list, and a user's dataset spec as
    text (so reports can render runs on it anywhere).

    Args:
        gt_pixels: (K,) labelled ground-truth pixels per class over the run.
    """
    id_file = dataset.id_file
    spec_text = recorded_spec(dataset.spec)
    return {
        "gt_void_ratio": void_ratio(state, gt_pixels),
        "split_official": dataset.split_check.official,
        "dataset_spec": spec_text,
        "dataset_spec_sha256": None
        if spec_text is None
        else hashlib.sha256(spec_text.encode("utf-8")).hexdigest(),
        "gt_digest": state.gt_digest,
        "gt_source": dataset.gt_folder.relative_to(dataset.data_root).as_posix(),
        "split_digest": split_digest(dataset.ids),
        "split_file": None if id_file is None else str(id_file),
        "split_file_sha256": None if id_file is None else file_sha256(id_file),
    }


def void_ratio(state: SweepState, gt_pixels: np.ndarray) -> float | None:
    """Share of the scored masks' pixels that are void (255); None without images."""
    return 1.0 - float(gt_pixels.sum()) / state.pixels if state.pixels else None


def ground_truth_warnings(job: SweepJob, state: SweepState, gt_pixels: np.ndarray) -> None:
    """Warn (`GroundTruthWarning`) when a class never occurs in the ground truth while the
    void looks like it (`wsssbed.datasets.sanity.void_warning`): the run's image-level
    labels, when they come from a label-list file, say which classes should occur."""
    ratio = void_ratio(state, gt_pixels)
    if ratio is None:
        return
    labelled: frozenset[int] = frozenset()
    if job.labels != "masks" and ratio > 0:  # read (and checked) by the sweep already
        lists = read_label_list(Path(job.labels), job.dataset.spec)
        labelled = frozenset(k for i in job.dataset.ids for k in lists.get(i, ()))
    message = void_warning(job.dataset.spec, gt_pixels, ratio, labelled)
    if message:
        warnings.warn(message, GroundTruthWarning, stacklevel=3)


def compute_run(
    job: SweepJob,
    *,
    stage: str = "activation",
    progress: Progress | None = None,
    extra: dict | None = None,
    backend: str = "local",
    address: str | None = None,
) -> SweepResult:
    """Run `job` and build its rows (nothing is written).

    Args:
        extra: further `runs` columns (the method and manifests a run used).
        backend: `local` or `ray` (`address`: the cluster; None starts a local one).
    """
    if stage not in STAGES:
        raise InputError(f"stage {stage!r}: use one of {', '.join(STAGES)}")
    message = job.dataset.split_check.message
    if message:
        warnings.warn(message, UnofficialSplitWarning, stacklevel=2)
    state, wall_time, device = execute(job, progress, backend, address)
    run_id = new_run_id()
    spec = job.dataset.spec
    sweeps, per_class = sweep_tables(state, job.rule, spec, run_id)
    gt_pixels = per_class.gt_pixels.to_numpy()[: spec.num_classes]  # point 0, class order
    ground_truth_warnings(job, state, gt_pixels)
    per_image = per_image_table(state, run_id)
    grid = {a.name: list(a.values) for a in job.rule.axes}
    record = {
        "run_id": run_id,
        "schema_version": SCHEMA_VERSION,
        "stage": stage,
        "dataset": spec.name,
        "split": job.dataset.split_name,
        "data_root": str(job.dataset.data_root),
        **ground_truth_record(job.dataset, state, gt_pixels),
        "n_images": state.images,
        "generator": job.rule.name,
        "ignore_label": job.rule.ignore_label,
        "grid": json.dumps(grid),
        "activation": None if job.activation is None else str(job.activation),
        "activation_format": job.activation_format if job.rule.needs_maps else None,
        "saliency": None if job.saliency is None else str(job.saliency),
        "predictions": None if job.predictions is None else str(job.predictions),
        "labels": job.labels,
        "boundary_tolerance": None if job.boundary is None else str(job.boundary),
        "device": device,
        "workers": state.workers if job.workers is None else job.workers,
        "wall_time_s": wall_time,
        "started_at": utc_now(),
        "wsssbed_version": __version__,
        "git_commit": git_commit(),
        "packages": package_versions(),
        "command": json.dumps(sys.argv),
        "protocol": None if job.protocol is None else job.protocol.to_json(),
        **(extra or {}),
    }
    return SweepResult(run_id, sweeps, per_class, per_image, pd.DataFrame([record]))
