"""The sweep loop: stream images, reduce each to integer counts, add them up.

Decoding and (on the CPU) the per-image reduction run in `workers` processes; on CUDA the
workers decode and the reduction runs on the GPU. Either way each image becomes a small
`ImageResult` of integer counts, so memory does not grow with the number of images and
the totals are identical on every device and under any sharding.
"""

from __future__ import annotations

import functools
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader

from wsssbed.datasets.spec import DatasetSpec
from wsssbed.errors import InputError
from wsssbed.eval.boundary import Tolerance
from wsssbed.eval.confusion import class_counts, sparse_rows
from wsssbed.eval.inputs import SweepInputs
from wsssbed.eval.job import SweepJob, resolve_device
from wsssbed.eval.reduce import ImageResult, SweepState, reduce_batch
from wsssbed.eval.rules import Rule
from wsssbed.eval.sample import EvalSample

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
DEVICE_BATCH = 32  # images reduced together on a GPU


def _worker_init(_: int, parent: int) -> None:
    start_worker(parent, 1)


def start_worker(parent: int, threads: int) -> None:
    """A worker process's start: `threads` torch threads, and death with its parent."""
    torch.set_num_threads(threads)
    die_with_parent(parent)


def die_with_parent(parent: int) -> None:
    """Ask Linux to kill this worker when `parent` (the process that started it) dies, so
    a killed sweep (even by SIGKILL) leaves no decoding workers behind. A no-op elsewhere."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes
    import signal

    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the parent died before the request took effect
        os._exit(1)


def shard_ranges(count: int, shard_images: int) -> list[tuple[int, int]]:
    """Contiguous [start, stop) ranges of at most `shard_images` images."""
    size = max(1, shard_images)
    return [(start, min(start + size, count)) for start in range(0, count, size)]


def iterate_results(job: SweepJob) -> Iterator[ImageResult]:
    """Yield each image's `ImageResult` in split order (raises the first `InputError`)."""
    device = resolve_device(job.device)
    on_cpu = device.type == "cpu"
    inputs = SweepInputs(job, reduce_on_load=on_cpu)
    if job.workers > 0:
        loader = DataLoader(
            inputs,
            batch_size=None,
            shuffle=False,
            num_workers=job.workers,
            worker_init_fn=functools.partial(_worker_init, parent=os.getpid()),
            prefetch_factor=4,
            pin_memory=not on_cpu,
        )
        items = iter(loader)
    else:
        items = (inputs[i] for i in range(len(inputs)))
    checked = (_raise_errors(item) for item in items)
    if on_cpu:  # reduced as they were loaded
        yield from checked
    else:
        yield from reduce_batches(checked, job.rule, job.dataset.spec, job.boundary, device)


def _raise_errors(item: object) -> object:
    if isinstance(item, InputError):
        raise item
    return item


def reduce_batches(
    samples: Iterable[EvalSample],
    rule: Rule,
    spec: DatasetSpec,
    boundary: Tolerance | None,
    device: torch.device,
) -> Iterator[ImageResult]:
    """`reduce_batch` over `samples` in order: batches of `DEVICE_BATCH` on a GPU (fewer
    kernel launches), one image at a time on the CPU (the fastest there)."""
    size = 1 if device.type == "cpu" else DEVICE_BATCH
    batch: list[EvalSample] = []
    for sample in samples:
        batch.append(sample.to(device))
        if len(batch) == size:
            yield from reduce_batch(batch, rule, spec, boundary)
            batch = []
    if batch:
        yield from reduce_batch(batch, rule, spec, boundary)


def accumulate(
    samples: Iterable[EvalSample],
    rule: Rule,
    spec: DatasetSpec,
    boundary: Tolerance | None = None,
    device: str = "cpu",
) -> SweepState:
    """Sweep in-memory samples (the Python API; no files involved)."""
    check_boundary(rule, boundary)
    state = SweepState(rule.bucket_shape, int(np.prod(rule.shape)), boundary is not None)
    for result in reduce_batches(samples, rule, spec, boundary, resolve_device(device)):
        state.add(result)
    return state


def check_boundary(rule: Rule, boundary: Tolerance | None) -> None:
    """Refuse boundary F on a grid it is not defined for."""
    if boundary is not None and not rule.supports_boundary:
        raise InputError(
            "boundary F is computed for 1-D sweeps (one saliency threshold and "
            "no ignore label for the saliency rule); drop --boundary or fix the "
            "grid"
        )


def run_sweep(
    job: SweepJob,
    progress: Callable[[int, int], None] | None = None,
    shard: bool = False,
) -> tuple[SweepState, float, str]:
    """Run a whole sweep.

    Args:
        progress: called as `progress(done, total)` after each image.
        shard: this is one shard of a distributed run (its state keeps per-image
            boundary scores for `SweepState.merge`).

    Returns:
        the summed state, wall time in seconds, and the device name used.
    """
    check_boundary(job.rule, job.boundary)
    device = resolve_device(job.device)
    state = SweepState(
        job.rule.bucket_shape,
        int(np.prod(job.rule.shape)),
        job.boundary is not None,
        keep_image_scores=shard,
    )
    spec = job.dataset.spec
    started = time.perf_counter()
    total = len(job.dataset.ids)
    for done, result in enumerate(iterate_results(job), start=1):
        state.add(result)
        if job.per_image:
            counts = class_counts(result.pairs, job.rule, spec.num_classes, spec.has_background)
            state.per_image.append((result.image_id, sparse_rows(counts)))
        if progress is not None:
            progress(done, total)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    return state, time.perf_counter() - started, name
