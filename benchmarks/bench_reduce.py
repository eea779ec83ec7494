"""The engine's whole per-image step (`reduce_image`: pixel states, pair histogram, boundary
counts, boundary scores) on preloaded VOC val images, one thread, best of N passes.

To compare two versions of wsssbed, run it alternately in two checkouts with the same
benchmark cache (`benchmarks/.cache`), e.g. for an older commit in a git worktree:

    git worktree add /tmp/old OLD && ln -s $PWD/benchmarks/.cache /tmp/old/benchmarks/
    (cd /tmp/old && PYTHONPATH=/tmp/old python $OLDPWD/benchmarks/bench_reduce.py --label old)
    python benchmarks/bench_reduce.py --label new

Usage: python benchmarks/bench_reduce.py [--limit 200] [--repeats 5] [--no-boundary]
"""

from __future__ import annotations

import time

import torch
from synth import benchmark_parser, ensure_maps, preload, threshold_job, voc_subset

from wsssbed.datasets import get_dataset
from wsssbed.eval.boundary import DEFAULT_TOLERANCE, Tolerance
from wsssbed.eval.reduce import reduce_image


def main() -> None:
    parser = benchmark_parser(__doc__)
    parser.add_argument("--limit", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-boundary", action="store_true")
    parser.add_argument("--label", default="")
    args = parser.parse_args()
    torch.set_num_threads(1)
    folder, _ = ensure_maps(args.data_root, args.split, "irn-npy", args.limit)
    job = threshold_job(voc_subset(args.data_root, args.split, args.limit), folder, "irn-npy",
                        [i / 100 for i in range(100)])  # fmt: skip
    samples = preload(job)
    spec = get_dataset("voc2012")
    boundary = None if args.no_boundary else Tolerance(DEFAULT_TOLERANCE)
    best = float("inf")
    for _ in range(args.repeats):
        started = time.perf_counter()
        for sample in samples:
            reduce_image(sample, job.rule, spec, boundary)
        best = min(best, (time.perf_counter() - started) / len(samples))
    what = "100 thresholds" + ("" if boundary is None else " + boundary F")
    print(f"{args.label} reduce_image, {len(samples)} images, {what}: {best * 1e3:.2f} ms/image")


if __name__ == "__main__":
    main()
