"""The restricted IRN reader against numpy's own (unsafe) `np.load(allow_pickle=True)`.

1. Reads the same cached irn-npy files with both, alternating `--repeats` times after a
   warm-up: median time per file and the ratio.
2. With `--data-root`: the 100-threshold VOC val sweep (irn-npy, 2 workers) with the
   restricted reader and with `np.load` swapped in, alternating: what the reader costs
   a real sweep.

The files are the synthesised VOC val maps `bench_sweep.py` caches.

Usage: python benchmarks/bench_reader.py [--files 500] [--repeats 5] [--data-root VOC2012]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np

from wsssbed.io.budget import MapBudget
from wsssbed.io.safe_pickle import load_npy

CACHE = Path(__file__).resolve().parent / ".cache"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--data-root", type=Path)
    args = parser.parse_args()
    files = sorted(CACHE.rglob("*.npy"))[: args.files]
    if not files:
        raise SystemExit(f"no cached .npy maps in {CACHE}; run benchmarks/bench_sweep.py first")
    budget = MapBudget(20, None)
    readers = {
        "np.load(allow_pickle=True)": lambda f: np.load(f, allow_pickle=True).item(),
        "wsssbed restricted reader": lambda f: load_npy(f, budget),
    }
    for read in readers.values():  # warm the page cache
        for f in files:
            read(f)
    times: dict[str, list[float]] = {name: [] for name in readers}
    for _ in range(args.repeats):
        for name, read in readers.items():
            started = time.perf_counter()
            for f in files:
                read(f)
            times[name].append((time.perf_counter() - started) / len(files))
    size = sum(f.stat().st_size for f in files) / len(files)
    print(f"{len(files)} irn-npy files, {size / 2**20:.2f} MiB each on average")
    for name, values in times.items():
        print(f"  {name:28s} median {1000 * statistics.median(values):.3f} ms per file")
    ratio = statistics.median(times["wsssbed restricted reader"]) / statistics.median(
        times["np.load(allow_pickle=True)"]
    )
    print(f"  restricted / np.load: {ratio:.2f}")
    if args.data_root is not None:
        compare_sweeps(args.data_root, args.repeats)


def compare_sweeps(data_root: Path, repeats: int) -> None:
    """The same sweep with each reader behind the irn-npy format, alternating."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from synth import ensure_maps, threshold_job, voc_subset

    import wsssbed.activation.formats.irn_npy as irn_npy
    from wsssbed.eval.loop import run_sweep

    folder, _ = ensure_maps(data_root, "val", "irn-npy", None)
    job = threshold_job(
        voc_subset(data_root, "val"), folder, "irn-npy", [i / 100 for i in range(100)], 2
    )
    restricted = irn_npy.load_npy
    unsafe = lambda path, budget: np.load(path, allow_pickle=True).item()  # noqa: E731
    run_sweep(job)  # warm the page cache
    walls: dict[str, list[float]] = {"restricted": [], "np.load": []}
    for _ in range(repeats):
        for name, reader in (("restricted", restricted), ("np.load", unsafe)):
            irn_npy.load_npy = reader  # the workers fork after this
            walls[name].append(run_sweep(job)[1])
    irn_npy.load_npy = restricted
    for name, values in walls.items():
        print(f"  sweep-100 of val with {name:10s} median {statistics.median(values):.2f} s")
    pairs = [a / b for a, b in zip(walls["restricted"], walls["np.load"], strict=True)]
    print(
        f"  restricted / np.load per pair: {', '.join(f'{r:.3f}' for r in pairs)}; "
        f"median {statistics.median(pairs):.3f}"
    )


if __name__ == "__main__":
    main()
