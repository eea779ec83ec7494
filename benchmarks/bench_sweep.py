"""Sweep speed, side by side in one run on real VOC masks with synthesised maps.

Compares, on the same files and the same cores:
  decode     read + decode every input once (the floor any evaluator pays)
  sweep-1    the engine with one threshold
  sweep-100  the engine with 100 thresholds
  sweep-100+bf  the same with boundary F at every threshold
  naive-61   the peers' loop: for each of 61 thresholds re-read every map and score it
             (run on a subset, in a 2-process pool over thresholds, and compared with
             the engine's 61-threshold sweep on the same subset)

Usage: python benchmarks/bench_sweep.py [--split val] [--limit N] [--workers 2]
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch
from synth import benchmark_parser, ensure_maps, threshold_job, voc_subset

from wsssbed.activation import read_activation
from wsssbed.datasets import get_dataset
from wsssbed.eval.inputs import SweepInputs
from wsssbed.eval.job import SweepJob
from wsssbed.eval.loop import run_sweep

SPEC = get_dataset("voc2012")


def time_decode(job: SweepJob) -> float:
    """Read and decode every input once, through the same loader as the sweep."""
    from torch.utils.data import DataLoader

    inputs = SweepInputs(job, reduce_on_load=False)
    started = time.perf_counter()
    if job.workers:
        for _ in DataLoader(
            inputs,
            batch_size=None,
            num_workers=job.workers,
            prefetch_factor=4,
            worker_init_fn=lambda _: torch.set_num_threads(1),
        ):
            pass
    else:
        for i in range(len(inputs)):
            inputs[i]
    return time.perf_counter() - started


def _naive_threshold(args) -> np.ndarray:
    """One threshold of the peers' loop: re-read every map and ground truth, score."""
    root, split, limit, folder, fmt, threshold = args
    torch.set_num_threads(1)
    dataset = voc_subset(Path(root), split, limit)
    total = np.zeros((21, 22), dtype=np.int64)
    for image_id in dataset.ids:
        gt = dataset.read_gt(image_id)
        maps = read_activation(Path(folder), image_id, fmt, SPEC)
        padded = np.pad(maps.cams, ((1, 0), (0, 0), (0, 0)), constant_values=threshold)
        keys = np.concatenate([[0], maps.class_ids])
        pred = keys[np.argmax(padded, axis=0)]
        valid = gt != 255
        total += np.bincount(
            gt[valid].astype(np.int64) * 22 + pred[valid], minlength=21 * 22
        ).reshape(21, 22)
    return total


def time_naive(root, split, limit, folder, fmt, thresholds, workers) -> float:
    started = time.perf_counter()
    jobs = [(str(root), split, limit, str(folder), fmt, np.float32(t)) for t in thresholds]
    with ProcessPoolExecutor(workers) as pool:
        list(pool.map(_naive_threshold, jobs))
    return time.perf_counter() - started


def main() -> None:
    parser = benchmark_parser(__doc__)
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--naive-limit", type=int, default=100)
    parser.add_argument("--format", default="irn-npy")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(1)
    folder, _ = ensure_maps(args.data_root, args.split, args.format, args.limit)
    dataset = voc_subset(args.data_root, args.split, args.limit)
    t100 = [round(i / 100, 2) for i in range(100)]
    t61 = [round(i / 100, 2) for i in range(61)]
    timings = {}
    decode_job = threshold_job(dataset, folder, args.format, [0.1], args.workers)
    time_decode(decode_job)  # warm the page cache
    timings["decode"] = time_decode(decode_job)
    for name, thresholds, boundary in (
        ("sweep-1", [0.15], False),
        ("sweep-100", t100, False),
        ("sweep-100+bf", t100, True),
    ):
        _, wall, _ = run_sweep(
            threshold_job(dataset, folder, args.format, thresholds, args.workers, boundary)
        )
        timings[name] = wall
    subset = voc_subset(args.data_root, args.split, args.naive_limit)
    _, timings["sweep-61-subset"], _ = run_sweep(
        threshold_job(subset, folder, args.format, t61, args.workers)
    )
    timings["naive-61-subset"] = time_naive(
        args.data_root, args.split, args.naive_limit, folder, args.format, t61, args.workers
    )
    n = len(dataset.ids)
    ratios = {
        "sweep-100 / sweep-1 (goal <= 1.25)": timings["sweep-100"] / timings["sweep-1"],
        "sweep-100 / decode (goal <= 1.5)": timings["sweep-100"] / timings["decode"],
        "sweep-100+bf / sweep-100 (goal <= 3)": timings["sweep-100+bf"] / timings["sweep-100"],
        "naive-61 / sweep-61 (goal >= 30)": timings["naive-61-subset"] / timings["sweep-61-subset"],
    }
    print(
        f"{n} images of VOC2012 {args.split}, format {args.format}, "
        f"{args.workers} workers; naive loop on the first {args.naive_limit}"
    )
    for name, seconds in timings.items():
        count = args.naive_limit if "subset" in name else n
        print(f"  {name:18s} {seconds:8.2f} s  {count / seconds:7.1f} images/s")
    for name, value in ratios.items():
        print(f"  {name:40s} {value:6.2f}")
    if args.json:
        args.json.write_text(
            json.dumps({"images": n, "timings_s": timings, "ratios": ratios}, indent=2)
        )


if __name__ == "__main__":
    main()
