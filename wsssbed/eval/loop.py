"""The sweep loop: stream images, reduce each to integer counts, add them up.

Decoding and (on the CPU) the per-image reduction run in `workers` processes (by default
as many as the measured cost of the first images says pay: `_items`); on CUDA the
workers decode and the reduction runs on the GPU. Either way each image becomes a small
`ImageResult` of integer counts, so memory does not grow with the number of images and
the totals are identical on every device and under any sharding.
"""

from __future__ import annotations

import functools
import multiprocessing
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING

import numpy as np

from wsssbed.datasets.spec import DatasetSpec
from wsssbed.errors import InputError
from wsssbed.eval.boundary import Tolerance
from wsssbed.eval.confusion import class_counts, sparse_rows
from wsssbed.eval.fused import FusedImage
from wsssbed.eval.inputs import SweepInputs
from wsssbed.eval.job import SweepJob, default_workers, on_cpu, resolve_device
from wsssbed.eval.reduce import ImageResult, SweepState, reduce_batch
from wsssbed.eval.rules import Rule
from wsssbed.eval.sample import EvalSample

if TYPE_CHECKING:
    import torch

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
DEVICE_BATCH = 32  # images reduced together on a GPU


def _worker_init(_: int, parent: int) -> None:
    start_worker(parent, 1)


def start_worker(parent: int, threads: int) -> None:
    """A worker process's start: `threads` torch threads, and death with its parent."""
    import torch

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


PROBE_IMAGES = 8  # images done in this process to measure what one costs
# Work left (seconds in this process) above which a pool of worker processes (about 0.1 s
# to start, then up to one core each) and the compiled kernels (0.6-1 s to load, then
# about 30% less per image) pay for themselves; measured on 2 cores (BENCHMARKS.md,
# "Sweep against the read floor").
POOL_WORTH_S = 0.5
JIT_WORTH_S = 3.0


def iterate_results(
    job: SweepJob, report: Callable[[int], None] | None = None
) -> Iterator[ImageResult]:
    """Yield each image's `ImageResult` in split order (raises the first `InputError`).

    Args:
        report: called once with the number of worker processes used.
    """
    cpu = on_cpu(job.device)
    inputs = SweepInputs(job, reduce_on_load=cpu)
    checked = (_checked(item) for item in _items(inputs, job.workers, report))
    if cpu:  # reduced as they were loaded
        yield from checked
    else:
        device = resolve_device(job.device)
        yield from reduce_batches(checked, job.rule, job.dataset.spec, job.boundary, device)


def _items(
    inputs: SweepInputs, workers: int | None, report: Callable[[int], None] | None
) -> Iterator[object]:
    """Each image's item (`SweepInputs[i]`) in split order.

    `workers` None chooses by measured cost: the first `PROBE_IMAGES` images are done in
    this process and timed, and the rest go to a pool of processes only when they would
    take more than `POOL_WORTH_S` here. On the fused path the same measure decides whether
    to load the compiled kernels (`JIT_WORTH_S`; then a second probe times them), also
    with `workers` 0; asking for workers loads them at once. Counts are integers, so
    where an image is done changes nothing.
    """
    count, done = len(inputs), 0
    fused = inputs.fused
    if workers is None or (workers == 0 and fused is not None):
        for _ in range(2 if fused is not None and fused.jit is None else 1):
            costs = []
            for index in range(done, min(done + PROBE_IMAGES, count)):
                started = time.perf_counter()
                item = inputs[index]
                costs.append(time.perf_counter() - started)
                yield item
            done += len(costs)
            left = float(np.median(costs)) * (count - done) if costs else 0.0
            if fused is None or fused.jit is not None or left < JIT_WORTH_S:
                break
            if not fused.use_jit():  # numba is not installed
                break
        if workers is None:
            workers = default_workers() if left >= POOL_WORTH_S else 0
    elif fused is not None:
        fused.use_jit()  # workers asked for: a run worth loading the kernels
    if report is not None:
        report(workers)
    if done == count:
        return
    if workers == 0:
        yield from (inputs[i] for i in range(done, count))
    elif fused is not None and "fork" in multiprocessing.get_all_start_methods():
        yield from _pooled(inputs, workers, done)
    else:
        from torch.utils.data import DataLoader

        yield from DataLoader(
            inputs,
            batch_size=None,
            sampler=range(done, count),
            num_workers=workers,
            worker_init_fn=functools.partial(_worker_init, parent=os.getpid()),
            prefetch_factor=4,
            pin_memory=not inputs.reduce_on_load,  # decoded for the GPU
        )


_POOL_INPUTS: SweepInputs | None = None  # the pool's inputs, inherited by its forked workers


def _fused_worker(parent: int) -> None:
    """A fused pool worker's start: one thread for torch (used only for boundary F
    without numba), and death with its parent."""
    os.environ["OMP_NUM_THREADS"] = "1"  # a torch imported here
    if "torch" in sys.modules:  # inherited from the parent
        sys.modules["torch"].set_num_threads(1)
    die_with_parent(parent)


def _pool_item(index: int) -> FusedImage | InputError:
    return _POOL_INPUTS[index]


def _pooled(inputs: SweepInputs, workers: int, start: int) -> Iterator[FusedImage | InputError]:
    """Images `start`.. of the fused path, by `workers` forked processes, in split order.

    Results travel as `FusedImage`s (a few small numpy arrays), not as torch tensors in
    shared memory; the job, its plan and the compiled kernels are inherited by the fork
    (where there is none, torch's DataLoader carries the same items). The inputs travel
    through a module global: one pooled sweep at a time per process.
    """
    global _POOL_INPUTS
    _POOL_INPUTS = inputs
    chunk = max(1, min(8, (len(inputs) - start) // (workers * 16)))
    context = multiprocessing.get_context("fork")
    try:
        with context.Pool(workers, _fused_worker, (os.getpid(),)) as pool:
            yield from pool.imap(_pool_item, range(start, len(inputs)), chunksize=chunk)
    finally:
        _POOL_INPUTS = None


def _checked(item: object) -> object:
    """An item of `_items`: an error raised, a fused image as its `ImageResult`."""
    if isinstance(item, InputError):
        raise item
    return item.result() if isinstance(item, FusedImage) else item


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
    device = "cpu" if on_cpu(job.device) else resolve_device(job.device)
    state = SweepState(
        job.rule.bucket_shape,
        int(np.prod(job.rule.shape)),
        job.boundary is not None,
        keep_image_scores=shard,
    )
    spec = job.dataset.spec
    started = time.perf_counter()
    total = len(job.dataset.ids)

    def chosen(workers: int) -> None:
        state.workers = workers

    for done, result in enumerate(iterate_results(job, chosen), start=1):
        state.add(result)
        if job.per_image:
            counts = class_counts(result.pairs, job.rule, spec.num_classes, spec.has_background)
            state.per_image.append((result.image_id, sparse_rows(counts)))
        if progress is not None:
            progress(done, total)
    if device == "cpu":
        return state, time.perf_counter() - started, "cpu"
    import torch

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    return state, time.perf_counter() - started, name
