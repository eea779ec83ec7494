"""Boundary F's counting alone (`sweep_boundary_counts` per image, and
`batch_boundary_counts` on batches with `--batch N`), optionally A/B against another
version of `wsssbed/eval/boundary.py`.

The split's first images (real VOC masks, maps synthesised by `synth.py`) are decoded
and reduced to the sweep's per-pixel states once, kept on the device, and then counted
at 100 thresholds again and again. With `--compare OLD.py` the two versions alternate,
the best repetition of each is reported with their ratio, and their counts must be
identical. For example, against the code of an older commit:

    git show aebba9b:wsssbed/eval/boundary.py > /tmp/boundary_old.py
    python benchmarks/bench_boundary.py --compare /tmp/boundary_old.py

With `--batch N`, the current version also counts the images N at a time (the GPU's
path); its counts must be identical to the per-image ones.

Usage: python benchmarks/bench_boundary.py [--data-root DIR] [--split val] [--limit 150]
       [--device cpu|cuda] [--threads 1] [--repeats 8] [--compare FILE] [--batch 32]
"""

from __future__ import annotations

import importlib.util
import sys
import time
from pathlib import Path

import torch
from synth import benchmark_parser, ensure_maps, preload, threshold_job, voc_subset

import wsssbed.eval.boundary as current
from wsssbed.datasets import get_dataset
from wsssbed.eval.boundary import DEFAULT_TOLERANCE

SPEC = get_dataset("voc2012")
POINTS = 100


def load_module(path: Path):
    """Import another version of boundary.py under its own name."""
    spec = importlib.util.spec_from_file_location("boundary_compared", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def states(data_root: Path, split: str, limit: int, device: torch.device) -> list:
    """(best_id, buckets, gt) of the first `limit` images, on `device`."""
    folder, _ = ensure_maps(data_root, split, "irn-npy", limit)
    job = threshold_job(voc_subset(data_root, split, limit), folder, "irn-npy",
                        [i / POINTS for i in range(POINTS)])  # fmt: skip
    found = []
    for sample in preload(job):
        pixel_states = job.rule.states(sample, none_class=SPEC.num_classes)
        planes = (pixel_states.best_id, job.rule.line_buckets(pixel_states), sample.gt)
        found.append(tuple(t.to(device) for t in planes))
    return found


def count_all(module, images: list, device: torch.device) -> tuple[float, list]:
    """Seconds to count every image with `module.sweep_boundary_counts`, and the counts."""
    started = time.perf_counter()
    found = []
    for best_id, buckets, gt in images:
        height, width = gt.shape
        found.append(module.sweep_boundary_counts(
            best_id, buckets, gt, num_points=POINTS, num_classes=SPEC.num_classes,
            background_label=0, theta=DEFAULT_TOLERANCE * (height**2 + width**2) ** 0.5,
        ))  # fmt: skip
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - started, found


def count_batched(images: list, device: torch.device, size: int) -> tuple[float, list]:
    """Seconds to count every image `size` at a time with `batch_boundary_counts`."""
    started = time.perf_counter()
    found = []
    for start in range(0, len(images), size):
        batch = [current.BoundaryInput(best_id, buckets, gt, DEFAULT_TOLERANCE
                                       * (gt.shape[0] ** 2 + gt.shape[1] ** 2) ** 0.5)
                 for best_id, buckets, gt in images[start : start + size]]  # fmt: skip
        found += current.batch_boundary_counts(
            batch, num_points=POINTS, num_classes=SPEC.num_classes, background_label=0
        )
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - started, found


def main() -> None:
    parser = benchmark_parser(__doc__)
    parser.add_argument("--limit", type=int, default=150)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=8)
    parser.add_argument("--compare", type=Path, help="another version of boundary.py")
    parser.add_argument("--batch", type=int, default=0, help="also count N images at a time")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    images = states(args.data_root, args.split, args.limit, device)
    versions = {"current": current}
    if args.compare is not None:
        versions["compared"] = load_module(args.compare)
    best = dict.fromkeys(versions, float("inf"))
    results = {}
    for module in versions.values():
        count_all(module, images[:10], device)  # warm-up
    if args.batch:
        best["batched"] = float("inf")
        count_batched(images[: args.batch], device, args.batch)  # warm-up
    for _ in range(args.repeats):
        for name, module in versions.items():
            seconds, results[name] = count_all(module, images, device)
            best[name] = min(best[name], seconds)
        if args.batch:
            seconds, results["batched"] = count_batched(images, device, args.batch)
            best["batched"] = min(best["batched"], seconds)
    n = len(images)
    print(f"{n} images of VOC2012 {args.split}, {POINTS} thresholds, {device}, "
          f"{args.threads} threads, best of {args.repeats}")  # fmt: skip
    for name, seconds in best.items():
        print(f"  {name:9s} {seconds / n * 1e3:7.2f} ms/image")
    for other in ("compared", "batched"):
        if other in results:
            same = all(a.same_as(b) for a, b in zip(results["current"], results[other]))
            print(f"  current / {other} {best['current'] / best[other]:.3f}; counts "
                  f"{'identical' if same else 'DIFFER'}")  # fmt: skip


if __name__ == "__main__":
    main()
