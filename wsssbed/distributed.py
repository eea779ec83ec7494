"""Ray backend: a run's images sharded into Ray tasks; the driver sums their integer states
(sweeps) or their counts of written files (pseudo-labels, written atomically by the tasks).

Each task runs the ordinary local sweep on a contiguous range of the split's images and
returns its additive state (`SweepState`): integer histograms and boundary counts, and
per-image boundary-F scores, which the driver adds in split order. The result is the
local backend's, bit for bit, whatever the number of machines or the order in which
shards finish.

- Workers read the same paths as the driver: data must be on a file system every node
  mounts at the same place (see docs/ray.md).
- A task requests a GPU when the cluster has GPUs and the device is not `cpu`.
- A worker that dies mid-task is retried by Ray (`max_retries`); a shard's state is
  only counted once it is complete, so counts stay exact.
- A validation error in a shard comes back as a value and stops the run with the
  file's name; an interrupted run cancels its tasks and stores nothing.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import replace

import numpy as np

from wsssbed.errors import InputError, WsssbedError
from wsssbed.eval.inputs import SweepInputs
from wsssbed.eval.job import SweepJob, resolve_device
from wsssbed.eval.loop import check_boundary, run_sweep, shard_ranges
from wsssbed.eval.reduce import SweepState
from wsssbed.generators.writer import GenerationJob, generate_shard

DEFAULT_SHARD_IMAGES = 64
MAX_RETRIES = 3


def _ray():
    try:
        import ray
    except ImportError as exc:
        raise WsssbedError(
            "--backend ray needs Ray: pip install 'wsssbed[ray]' (or pip install ray)"
        ) from exc
    return ray


def connect(address: str | None) -> None:
    """Join the Ray cluster at `address` (`auto`, `HOST:PORT`), or start a local one
    (`start_local`)."""
    ray = _ray()
    if ray.is_initialized():
        return
    try:
        if address is None:
            start_local()
        else:  # a named cluster is the user's, with the user's network settings
            ray.init(address=address, include_dashboard=False, log_to_driver=False)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise WsssbedError(f"cannot reach the Ray cluster at {address!r}: {exc}") from exc


def start_local(**options) -> None:
    """Start a one-machine Ray cluster that listens on loopback only.

    Ray binds its servers (GCS, raylet, object manager, workers, runtime-env agent) to
    the node's address, and turns a `127.0.0.1` given as `_node_ip_address` back into
    the machine's network address. Its switch for single-machine clusters (the
    `RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER` constant, off on Windows and macOS) makes the
    node address loopback instead; it is set while the cluster starts, for this process
    and the processes Ray spawns, and restored afterwards.

    Args:
        options: more `ray.init` keywords (`num_cpus`, ...).
    """
    ray = _ray()
    from ray._private import ray_constants

    saved_env = os.environ.get(ray_constants.ENABLE_RAY_CLUSTERS_ENV_VAR)
    saved = ray_constants.ENABLE_RAY_CLUSTER
    os.environ[ray_constants.ENABLE_RAY_CLUSTERS_ENV_VAR] = "0"
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        ray.init(include_dashboard=False, log_to_driver=False, **options)
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = saved
        if saved_env is None:
            os.environ.pop(ray_constants.ENABLE_RAY_CLUSTERS_ENV_VAR, None)
        else:
            os.environ[ray_constants.ENABLE_RAY_CLUSTERS_ENV_VAR] = saved_env


def _sweep_shard(job: SweepJob, ids: list[str]):
    """One Ray task: the local sweep of `ids`; an `InputError` is returned, not raised."""
    shard = replace(job, dataset=job.dataset.subset(ids), allow_extra=True, workers=0)
    try:
        state, _, device = run_sweep(shard, shard=True)
    except InputError as error:
        return error
    return state, device


def _run_tasks(
    function: Callable,
    first: object,
    ids: list[str],
    shard_images: int,
    address: str | None,
    gpus: bool,
    progress: Callable[[int, int], None] | None,
) -> list:
    """`function(first, shard_ids)` as Ray tasks over contiguous shards.

    Returns the tasks' results in shard order. A returned `InputError` stops the run;
    an interruption or failure cancels the outstanding tasks.
    """
    ray = _ray()
    connect(address)
    use_gpu = gpus and ray.cluster_resources().get("GPU", 0) > 0
    task = ray.remote(max_retries=MAX_RETRIES, num_cpus=1, num_gpus=1 if use_gpu else 0)(function)
    ranges = shard_ranges(len(ids), shard_images)
    pending = {task.remote(first, ids[a:b]): index for index, (a, b) in enumerate(ranges)}
    results: dict[int, object] = {}
    try:
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            index = pending.pop(ready[0])
            try:
                outcome = ray.get(ready[0])
            except ray.exceptions.RayError as exc:
                raise WsssbedError(
                    f"shard {index} (images {ranges[index][0]}-{ranges[index][1] - 1}) failed "
                    f"after {MAX_RETRIES} retries: {exc}"
                ) from exc
            if isinstance(outcome, InputError):
                raise outcome
            results[index] = outcome
            if progress is not None:
                progress(sum(ranges[i][1] - ranges[i][0] for i in results), len(ids))
    except BaseException:
        for ref in pending:
            ray.cancel(ref, force=True)
        raise
    return [results[index] for index in range(len(ranges))]


def run_sweep_ray(
    job: SweepJob,
    address: str | None = None,
    progress: Callable[[int, int], None] | None = None,
    shard_images: int = DEFAULT_SHARD_IMAGES,
) -> tuple[SweepState, float, str]:
    """`run_sweep` on a Ray cluster; same return value, same integers.

    Args:
        address: `auto` (a running cluster), `HOST:PORT`, or None (start a local one).
        shard_images: images per task (smaller: better balance, more overhead per image).
    """
    check_boundary(job.rule, job.boundary)
    resolve_device(job.device)  # refuse `cuda` on a driver without one early
    SweepInputs(job, reduce_on_load=False)  # id-set checks once, on the driver
    started = time.perf_counter()
    shards = _run_tasks(_sweep_shard, job, job.dataset.ids, shard_images, address,
                        job.device != "cpu", progress)  # fmt: skip
    state = SweepState(
        job.rule.bucket_shape, int(np.prod(job.rule.shape)), job.boundary is not None
    )
    for shard, _ in shards:  # split order: the local run's order of float sums
        state.merge(shard)
    devices = sorted({device for _, device in shards})
    return state, time.perf_counter() - started, "ray: " + ", ".join(devices)


def generate_ray(
    job: GenerationJob,
    address: str | None = None,
    progress: Callable[[int, int], None] | None = None,
    shard_images: int = DEFAULT_SHARD_IMAGES,
) -> tuple[int, int]:
    """`generators.writer.generate` over the whole split on a Ray cluster: (written, skipped)."""
    counts = _run_tasks(generate_shard, job, job.dataset.ids, shard_images, address,
                        job.device != "cpu", progress)  # fmt: skip
    return sum(w for w, _ in counts), sum(s for _, s in counts)
