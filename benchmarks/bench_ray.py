"""Ray backend throughput with 1 and 2 workers, and its overhead per shard.

On VOC 2012 val (real masks, synthesised irn-npy maps), a 100-threshold sweep with
boundary F, side by side in one run:
  local-1    the local backend in one process (the work one Ray worker does)
  ray-1      a local Ray cluster with 1 CPU, 64 images per shard
  ray-2      the same with 2 CPUs
  ray-1/16   1 CPU, 16 images per shard (4x the shards)
Overhead per shard = (ray-1/16 - ray-1) / (extra shards): what each task costs beyond
its images, which bounds how finely a large cluster can usefully shard. Ray start-up is
excluded (a cluster is started once and reused).

Usage: python benchmarks/bench_ray.py [--split val] [--limit N]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import ray
import torch
from synth import ensure_maps

from wsssbed.datasets import get_dataset
from wsssbed.datasets.local import LocalDataset
from wsssbed.distributed import run_sweep_ray, shard_ranges
from wsssbed.eval.boundary import Tolerance
from wsssbed.eval.engine import SweepJob, run_sweep
from wsssbed.eval.rules import make_rule


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data-root", type=Path, default=Path("../shared/data/VOC2012"))
    parser.add_argument("--split", default="val")
    parser.add_argument("--limit", type=int)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(1)
    folder, ids = ensure_maps(args.data_root, args.split, "irn-npy", args.limit)
    dataset = LocalDataset(get_dataset("voc2012"), args.data_root, args.split).subset(ids)
    rule = make_rule("bg-threshold", thresholds=[i / 100 for i in range(100)])
    job = SweepJob(dataset, rule, activation=folder, activation_format="irn-npy",
                   boundary=Tolerance(0.0075), allow_extra=True, device="cpu")  # fmt: skip
    timings = {}
    started = time.perf_counter()
    run_sweep(job)
    timings["local-1"] = time.perf_counter() - started
    for cpus in (1, 2):
        ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False)
        run_sweep_ray(job, shard_images=len(ids))  # warm the workers' imports
        _, timings[f"ray-{cpus}"], _ = run_sweep_ray(job, shard_images=64)
        if cpus == 1:
            _, timings["ray-1/16"], _ = run_sweep_ray(job, shard_images=16)
        ray.shutdown()
    n = len(ids)
    extra_shards = len(shard_ranges(n, 16)) - len(shard_ranges(n, 64))
    overhead = (timings["ray-1/16"] - timings["ray-1"]) / extra_shards
    print(f"{n} images of VOC2012 {args.split}, 100 thresholds + boundary F")
    for name, seconds in timings.items():
        print(f"  {name:9s} {seconds:7.2f} s  {n / seconds:6.1f} images/s")
    print(f"  ray-1 / local-1            {timings['ray-1'] / timings['local-1']:5.2f}")
    print(f"  speed-up ray-2 over ray-1  {timings['ray-1'] / timings['ray-2']:5.2f}")
    print(f"  overhead per shard         {1000 * overhead:5.1f} ms "
          f"({extra_shards} extra shards of 16 images)")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps({"images": n, "timings_s": timings,
                                         "overhead_per_shard_s": overhead}, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
