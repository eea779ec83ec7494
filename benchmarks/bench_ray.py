"""Ray backend throughput with 1 and 2 workers, and its overhead per shard.

On VOC 2012 val (real masks, synthesised irn-npy maps), side by side in one run:

Throughput, a 100-threshold sweep with boundary F, best of `--repeats`:
  local-1    the local backend in one process (the work one Ray worker does)
  ray-1      a local Ray cluster with 1 CPU, 64 images per shard
  ray-2      the same with 2 CPUs
Overhead per shard, on cheap work (1 threshold, no boundary F, first 200 images, 1 CPU)
where it dominates: (time with 200 one-image shards - time with one 200-image shard)
/ 199. It bounds how finely a large cluster can usefully shard. Ray start-up is
excluded (a cluster is started once and reused), and every file is read once before
the timings so that none of them pays for a cold page cache.

Usage: python benchmarks/bench_ray.py [--split val] [--limit N] [--repeats 2]
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path

import ray
import torch
from synth import benchmark_parser, ensure_maps

from wsssbed.datasets import get_dataset
from wsssbed.datasets.local import LocalDataset
from wsssbed.distributed import run_sweep_ray
from wsssbed.eval.boundary import Tolerance
from wsssbed.eval.job import SweepJob
from wsssbed.eval.loop import run_sweep
from wsssbed.eval.rules import make_rule


def _best(repeats: int, run) -> float:
    """Shortest wall time of `repeats` calls of `run()` (seconds)."""
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    parser = benchmark_parser(__doc__)
    parser.add_argument("--limit", type=int)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(1)
    folder, ids = ensure_maps(args.data_root, args.split, "irn-npy", args.limit)
    dataset = LocalDataset(get_dataset("voc2012"), args.data_root, args.split).subset(ids)
    rule = make_rule("bg-threshold", {"threshold": [i / 100 for i in range(100)]})
    job = SweepJob(dataset, rule, activation=folder, activation_format="irn-npy",
                   boundary=Tolerance(0.0075), allow_extra=True, device="cpu")  # fmt: skip
    cheap = replace(job, rule=make_rule("bg-threshold", {"threshold": [0.2]}), boundary=None,
                    dataset=dataset.subset(ids[:200]))  # fmt: skip
    run_sweep(replace(job, boundary=None))  # read every file once: a warm page cache for all
    timings = {"local-1": _best(args.repeats, lambda: run_sweep(job))}
    for cpus in (1, 2):
        ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False)
        run_sweep_ray(cheap, shard_images=1)  # start the workers, warm their imports
        timings[f"ray-{cpus}"] = _best(args.repeats, lambda: run_sweep_ray(job, shard_images=64))
        if cpus == 1:
            few = _best(args.repeats, lambda: run_sweep_ray(cheap, shard_images=200))
            many = _best(args.repeats, lambda: run_sweep_ray(cheap, shard_images=1))
        ray.shutdown()
    overhead = (many - few) / 199
    n = len(ids)
    print(f"{n} images of VOC2012 {args.split}, 100 thresholds + boundary F, best of "
          f"{args.repeats}")  # fmt: skip
    for name, seconds in timings.items():
        print(f"  {name:9s} {seconds:7.2f} s  {n / seconds:6.1f} images/s")
    print(f"  ray-1 / local-1            {timings['ray-1'] / timings['local-1']:5.2f}")
    print(f"  speed-up ray-2 over ray-1  {timings['ray-1'] / timings['ray-2']:5.2f}")
    print(f"  overhead per shard         {1000 * overhead:5.1f} ms "
          f"(200 images, cheap sweep: 1 shard {few:.2f} s, 200 shards {many:.2f} s)")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps({"images": n, "timings_s": timings, "one_shard_s": few,
                                         "per_image_shards_s": many,
                                         "overhead_per_shard_s": overhead}, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
