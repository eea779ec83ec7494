"""Run a sweep or an evaluation end to end and store it: the library behind the CLI."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

import wsssbed
from wsssbed.errors import InputError
from wsssbed.eval.engine import SweepJob, SweepState, run_sweep
from wsssbed.eval.tables import AXIS_COLUMNS, per_image_table, sweep_tables
from wsssbed.provenance import git_commit, new_run_id, package_versions, utc_now
from wsssbed.results import SCHEMA_VERSION, append_run, best_row

STAGES = ("activation", "pseudo-label", "final")


@dataclass
class RunSummary:
    """A stored run: its id, its tables and its best grid point."""

    run_id: str
    run: pd.DataFrame
    sweeps: pd.DataFrame
    per_class: pd.DataFrame
    per_image: pd.DataFrame

    @property
    def best(self) -> pd.Series:
        """The grid point with the highest mIoU (first on ties)."""
        return best_row(self.sweeps)

    def as_json(self, results: Path) -> dict:
        """Machine-readable summary (scores as fractions in [0, 1])."""
        best = self.best
        run = self.run.iloc[0]
        point = {c: float(best[c]) for c in AXIS_COLUMNS if pd.notna(best[c])}
        metrics = {
            c: (None if pd.isna(best[c]) else float(best[c]))
            for c in self.sweeps.columns
            if c not in ("run_id", "point", "n_images", *AXIS_COLUMNS)
        }
        return {
            "run_id": self.run_id,
            "dataset": run.dataset,
            "split": run.split,
            "generator": run.generator,
            "stage": run.stage,
            "n_images": int(run.n_images),
            "grid_points": len(self.sweeps),
            "best_point": point,
            "best": metrics,
            "wall_time_s": float(run.wall_time_s),
            "device": run.device,
            "results": str(results),
        }


BACKENDS = ("local", "ray")


def execute(
    job: SweepJob,
    progress: Callable[[int, int], None] | None = None,
    backend: str = "local",
    address: str | None = None,
) -> tuple[SweepState, float, str]:
    """Run `job` on this machine or on a Ray cluster (same integers either way)."""
    if backend == "local":
        return run_sweep(job, progress)
    if backend == "ray":
        from wsssbed.distributed import run_sweep_ray

        return run_sweep_ray(job, address, progress)
    raise InputError(f"--backend {backend!r}: use one of {', '.join(BACKENDS)}")


def compute_run(
    job: SweepJob,
    *,
    stage: str = "activation",
    progress: Callable[[int, int], None] | None = None,
    extra: dict | None = None,
    backend: str = "local",
    address: str | None = None,
) -> RunSummary:
    """Run `job` and build its rows (nothing is written).

    Args:
        extra: further `runs` columns (the method and manifests a run used).
        backend: `local` or `ray` (`address`: the cluster; None starts a local one).
    """
    state, wall_time, device = execute(job, progress, backend, address)
    run_id = new_run_id()
    spec = job.dataset.spec
    sweeps, per_class = sweep_tables(state, job.rule, spec, run_id)
    per_image = per_image_table(state, run_id)
    grid = {a.name: list(a.values) for a in job.rule.axes}
    record = {
        "run_id": run_id,
        "schema_version": SCHEMA_VERSION,
        "stage": stage,
        "dataset": spec.name,
        "split": job.dataset.split,
        "data_root": str(job.dataset.data_root),
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
        "workers": job.workers,
        "wall_time_s": wall_time,
        "started_at": utc_now(),
        "wsssbed_version": wsssbed.__version__,
        "git_commit": git_commit(),
        "packages": package_versions(),
        "command": json.dumps(sys.argv),
        **(extra or {}),
    }
    return RunSummary(run_id, pd.DataFrame([record]), sweeps, per_class, per_image)


def store_run(summary: RunSummary, out: Path) -> None:
    """Append a computed run to the results store in `out` (atomically)."""
    tables = {
        "runs": summary.run,
        "sweeps": summary.sweeps,
        "per_class": summary.per_class,
        "per_image": summary.per_image,
    }
    append_run(out, tables)


def run_and_store(
    job: SweepJob,
    out: Path,
    *,
    stage: str = "activation",
    progress: Callable[[int, int], None] | None = None,
    extra: dict | None = None,
    backend: str = "local",
    address: str | None = None,
) -> RunSummary:
    """Run `job`, then append its rows to the store in `out` (nothing is written on error)."""
    summary = compute_run(
        job, stage=stage, progress=progress, extra=extra, backend=backend, address=address
    )
    store_run(summary, out)
    return summary
