"""What the ground-truth fingerprint costs a sweep, side by side in one run.

Runs the same 100-threshold sweep (no boundary F: the cheapest sweep, so the hashing
share is the largest) with the fingerprint as shipped and with the per-image hash
replaced by a no-op, alternating the two `--repeats` times, and reports the median
ratio. Also times `image_hash` alone on the decoded masks.

Usage: python benchmarks/bench_fingerprint.py --data-root ../shared/data/VOC2012 [--split val]
"""

from __future__ import annotations

import statistics
import time

import torch
from synth import benchmark_parser, ensure_maps, threshold_job, voc_subset

import wsssbed.eval.inputs
from wsssbed.datasets.fingerprint import image_hash
from wsssbed.eval.loop import run_sweep


def main() -> None:
    parser = benchmark_parser(__doc__)
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--format", default="irn-npy")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    folder, _ = ensure_maps(args.data_root, args.split, args.format, args.limit)
    dataset = voc_subset(args.data_root, args.split, args.limit)
    thresholds = [round(i / 100, 2) for i in range(100)]
    job = threshold_job(dataset, folder, args.format, thresholds, args.workers)
    run_sweep(job)  # warm the page cache
    walls: dict[str, list[float]] = {"with fingerprint": [], "without": []}
    for _ in range(args.repeats):
        state, wall, _ = run_sweep(job)
        assert state.gt_digest is not None
        walls["with fingerprint"].append(wall)
        wsssbed.eval.inputs.image_hash = lambda gt: b""  # workers fork after this
        state, wall, _ = run_sweep(job)
        assert state.gt_digest is None
        walls["without"].append(wall)
        wsssbed.eval.inputs.image_hash = image_hash
    masks = [dataset.read_gt(i) for i in dataset.ids]
    started = time.perf_counter()
    for mask in masks:
        image_hash(mask)
    hashing = time.perf_counter() - started
    n = len(dataset.ids)
    print(f"{n} images of VOC2012 {args.split}, format {args.format}, {args.workers} workers")
    for name, values in walls.items():
        print(f"  sweep-100 {name:17s} median {statistics.median(values):6.2f} s  ({values})")
    ratios = [a / b for a, b in zip(walls["with fingerprint"], walls["without"], strict=True)]
    print(f"  with / without, per pair: {', '.join(f'{r:.3f}' for r in ratios)}")
    print(f"  median ratio (goal <= 1.05): {statistics.median(ratios):.3f}")
    print(f"  image_hash alone: {1000 * hashing / n:.3f} ms per mask, {hashing:.2f} s in all")


if __name__ == "__main__":
    main()
