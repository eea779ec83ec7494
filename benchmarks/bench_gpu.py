"""The sweep's per-image reduction from preloaded tensors: CUDA against the CPU, and
their integer counts compared.

Every input of the split is decoded once into memory (real VOC masks, maps synthesised
by `synth.py`) and then reduced by `reduce_image` (the engine's per-image step) with
1 threshold, with 100, and with 100 plus boundary F, first on the GPU and then on the
CPU. Reports images per second for each, and checks that every image's counts are the
same integers on both devices.

Usage: python benchmarks/bench_gpu.py --data-root DIR [--split val] [--limit N]
"""

from __future__ import annotations

import time

import torch
from synth import benchmark_parser, ensure_maps, preload, threshold_job, voc_subset

from wsssbed.datasets import get_dataset
from wsssbed.eval.boundary import DEFAULT_TOLERANCE, Tolerance
from wsssbed.eval.reduce import reduce_image
from wsssbed.eval.rules import make_rule

SPEC = get_dataset("voc2012")
CONFIGS = {
    "1 threshold": (1, False),
    "100 thresholds": (100, False),
    "100 thresholds + BF": (100, True),
}


def reduce_all(samples, rule, boundary, device) -> tuple[float, list]:
    """Seconds to reduce every preloaded sample on `device`, and the results."""
    on_device = [s.to(device) for s in samples]
    for sample in on_device[:10]:  # warm-up: kernels, allocator
        reduce_image(sample, rule, SPEC, boundary)
    if device.type == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    results = [reduce_image(s, rule, SPEC, boundary) for s in on_device]
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - started, results


def same_counts(a, b) -> bool:
    """Identical integer counts (pairs and boundary) of one image on two devices."""
    if not (torch.equal(a.pairs.codes, b.pairs.codes) and torch.equal(a.pairs.hist, b.pairs.hist)):
        return False
    if a.boundary is None:
        return b.boundary is None
    return a.boundary.same_as(b.boundary)


def main() -> None:
    parser = benchmark_parser(__doc__)
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--workers", type=int, default=2, help="processes synthesising maps")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        parser.error("torch sees no CUDA device")
    folder, _ = ensure_maps(args.data_root, args.split, "irn-npy", args.limit, args.workers)
    dataset = voc_subset(args.data_root, args.split, args.limit)
    loaded = preload(threshold_job(dataset, folder, "irn-npy", [0.5]))
    print(f"{len(dataset.ids)} images of VOC2012 {args.split}, irn-npy, preloaded; "
          f"{torch.cuda.get_device_name()}, CPU {torch.get_num_threads()} threads")  # fmt: skip
    print(f"{'configuration':24s} {'cuda img/s':>11s} {'cpu img/s':>10s} {'ratio':>7s} counts")
    for name, (points, boundary) in CONFIGS.items():
        rule = make_rule("bg-threshold", {"threshold": [i / points for i in range(points)]})
        tolerance = Tolerance(DEFAULT_TOLERANCE) if boundary else None
        gpu_s, gpu = reduce_all(loaded, rule, tolerance, torch.device("cuda"))
        cpu_s, cpu = reduce_all(loaded, rule, tolerance, torch.device("cpu"))
        equal = all(same_counts(a, b) for a, b in zip(gpu, cpu))
        n = len(loaded)
        print(f"{name:24s} {n / gpu_s:11.1f} {n / cpu_s:10.1f} {cpu_s / gpu_s:7.1f} "
              f"{'identical' if equal else 'DIFFER'}")  # fmt: skip


if __name__ == "__main__":
    main()
