"""The 100-threshold sweep against the raw read floor, on the same files (issue 26).

For each map format, on the first `--images` VOC val images (real masks, maps from
`synth.py`), page cache warm:

  floor        the plainest library read of each image: `np.load(allow_pickle=True)` of
               its irn-npy file / `np.load` of its npz and both arrays / a PIL decode of
               each class PNG, plus `np.asarray(Image.open(mask))`; nothing else
  sweep        `run_sweep` of `bg-threshold` at 100 thresholds, no boundary F: the fused
               path with the compiled kernels (numba), as a process that has loaded them
               runs it
  numpy        the same with the numpy kernels (`WSSSBED_JIT=0`: numba not installed)
  general      the general path (`WSSSBED_FUSED=0`: what every sweep ran before)
  sweep+bf     `sweep` with boundary F at every threshold (default tolerance)

each in one process (`workers` 0) and with 2 worker processes (the floor: a forked pool of
2 reading the same files in the same chunks). The variants alternate, `--repeats` times;
each run's wall time and CPU time (user + system of this process and of its finished
children, the workers) are recorded. Printed: medians, and the medians of per-repeat
ratios against the floor (and sweep+bf against sweep). On a shared machine the CPU ratios
are the steadier ones; the load average is printed with every row.

With `--cli`: the start-up goal instead. `wsssbed sweep` (a fresh process: the
CLI's defaults, irn-npy, no boundary F, a new results folder) on an id file of the same
images, alternated with `python -c "import numpy, PIL"`; printed: the command's wall time
against its own `wall_time_s` plus that bare import (goal: at most 1.5x).

With `--choice`: the default `--workers` (chosen by measured cost) against 0 and 2 worker
processes, alternated, on the first N images for each N of `--sizes` (irn-npy, 100
thresholds): median wall seconds, and the workers the default chose.

Usage (from the repository root):
    python benchmarks/bench_floor.py --data-root ../shared/data/VOC2012 --images 300
    python benchmarks/bench_floor.py --data-root ../shared/data/VOC2012 --images 300 --cli
    python benchmarks/bench_floor.py --data-root ../shared/data/VOC2012 --choice
"""

from __future__ import annotations

import json
import multiprocessing
import os
import resource
import statistics
import time
from pathlib import Path

import numpy as np
from PIL import Image
from synth import benchmark_parser, ensure_maps, threshold_job, voc_subset

THRESHOLDS = [round(i / 100, 2) for i in range(100)]
VARIANTS = ("floor", "sweep", "numpy", "general", "sweep+bf")
_FLOOR: dict = {}  # what `floor_one` reads (inherited by the forked floor pool)


def cpu_seconds() -> float:
    """User + system CPU of this process and of its finished children."""
    return sum(
        usage.ru_utime + usage.ru_stime
        for usage in map(resource.getrusage, (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    )


def timed(call) -> tuple[float, float]:
    """(wall, CPU) seconds of `call()`."""
    wall, cpu = time.perf_counter(), cpu_seconds()
    call()
    return time.perf_counter() - wall, cpu_seconds() - cpu


def floor_one(index: int) -> None:
    """Read one image's maps and mask as plainly as numpy and PIL allow."""
    fmt, folder, masks = _FLOOR["fmt"], _FLOOR["folder"], _FLOOR["masks"]
    image_id = _FLOOR["ids"][index]
    if fmt == "irn-npy":
        np.load(folder / f"{image_id}.npy", allow_pickle=True).item()
    elif fmt == "npz":
        with np.load(folder / f"{image_id}.npz") as archive:
            archive["keys"], archive["cams"]
    else:
        for key in _FLOOR["keys"][image_id]:
            np.asarray(Image.open(folder / f"{image_id}_{key}.png"))
    np.asarray(Image.open(masks / f"{image_id}.png"))


def floor(workers: int) -> None:
    count = len(_FLOOR["ids"])
    if workers == 0:
        for index in range(count):
            floor_one(index)
        return
    chunk = max(1, min(8, count // (workers * 16)))  # as the sweep's pool
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        for _ in pool.imap(floor_one, range(count), chunksize=chunk):
            pass


def sweep(dataset, folder: Path, fmt: str, workers: int, variant: str) -> None:
    from wsssbed.eval.loop import run_sweep

    os.environ["WSSSBED_FUSED"] = "0" if variant == "general" else "1"
    os.environ["WSSSBED_JIT"] = "0" if variant == "numpy" else "1"
    run_sweep(threshold_job(dataset, folder, fmt, THRESHOLDS, workers, variant == "sweep+bf"))


def startup(args) -> None:
    """The `--cli` measurement (see the module docstring)."""
    import subprocess
    import sys
    import tempfile

    folder, _ = ensure_maps(args.data_root, args.split, "irn-npy")
    ids = voc_subset(args.data_root, args.split, args.images).ids
    bare = [sys.executable, "-c", "import numpy, PIL"]
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        id_file = Path(scratch) / "ids.txt"
        id_file.write_text("\n".join(ids) + "\n")
        for repeat in range(args.repeats + 1):  # the first warms the caches
            out = Path(scratch) / f"run{repeat}"
            command = [sys.executable, "-m", "wsssbed.cli", "sweep", "--dataset", "voc2012",
                       "--data-root", str(args.data_root), "--split", str(id_file),
                       "--activation", str(folder), "--activation-format", "irn-npy",
                       "--thresholds", "0:1:0.01", "--allow-extra-maps", "--no-boundary",
                       "--out", str(out), "--json"]  # fmt: skip
            started = time.perf_counter()
            subprocess.run(bare, check=True)
            wall = time.perf_counter() - started
            started = time.perf_counter()
            done = subprocess.run(command, check=True, capture_output=True, text=True)
            total = time.perf_counter() - started
            summary = json.loads(done.stdout)
            if repeat:
                rows.append((total, summary["wall_time_s"], wall))
                print(f"cli {total:.2f} s, wall_time_s {summary['wall_time_s']:.2f} s, "
                      f"import numpy, PIL {wall:.2f} s: ratio "
                      f"{total / (summary['wall_time_s'] + wall):.2f} (load "
                      f"{os.getloadavg()[0]:.1f})", flush=True)  # fmt: skip
    ratio = statistics.median(t / (w + b) for t, w, b in rows)
    print(f"median ratio cli / (wall_time_s + import numpy, PIL): {ratio:.2f}")


def choice(args) -> None:
    """The `--choice` measurement (see the module docstring)."""
    from wsssbed.eval.loop import run_sweep

    folder, _ = ensure_maps(args.data_root, args.split, "irn-npy")
    os.environ["WSSSBED_FUSED"] = "1"
    os.environ.pop("WSSSBED_JIT", None)  # the default: the kernels once they pay
    for size in (int(n) for n in args.sizes.split(",")):
        dataset = voc_subset(args.data_root, args.split, size)
        run_sweep(threshold_job(dataset, folder, "irn-npy", THRESHOLDS, 0))  # page cache
        walls: dict[str, list[float]] = {"default": [], "0": [], "2": []}
        chosen = set()
        for _ in range(args.repeats):
            for name in walls:
                workers = None if name == "default" else int(name)
                job = threshold_job(dataset, folder, "irn-npy", THRESHOLDS, workers)
                started = time.perf_counter()
                state, _, _ = run_sweep(job)
                walls[name].append(time.perf_counter() - started)
                if workers is None:
                    chosen.add(state.workers)
        medians = "  ".join(f"{k} {statistics.median(v):.3f} s" for k, v in walls.items())
        print(f"{size:5d} images: {medians}  (default chose {sorted(chosen)} workers; load "
              f"{os.getloadavg()[0]:.1f})", flush=True)  # fmt: skip


def main() -> None:
    parser = benchmark_parser(__doc__)
    parser.add_argument("--formats", default="irn-npy,npz,png-per-class")
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--workers", default="0,2")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--json", type=Path, help="write every timing here")
    parser.add_argument("--cli", action="store_true", help="measure the CLI's start-up")
    parser.add_argument("--choice", action="store_true", help="measure the workers default")
    parser.add_argument("--sizes", default="20,80,300,1449")
    args = parser.parse_args()
    if args.cli:
        return startup(args)
    if args.choice:
        return choice(args)

    import torch

    from wsssbed.activation import map_format

    torch.set_num_threads(1)  # one core per process, as the floor
    variants = args.variants.split(",")
    print(f"load average at start: {os.getloadavg()}, cores: {os.cpu_count()}", flush=True)
    rows = []
    for fmt in args.formats.split(","):
        folder, _ = ensure_maps(args.data_root, args.split, fmt)
        dataset = voc_subset(args.data_root, args.split, args.images)
        _FLOOR.update(fmt=fmt, folder=folder, masks=dataset.gt_folder, ids=list(dataset.ids),
                      keys=map_format(fmt).list_ids(folder))  # fmt: skip
        floor(0)  # the page cache warm
        sweep(voc_subset(args.data_root, args.split, 2), folder, fmt, 0, "sweep+bf")  # kernels
        for workers in (int(w) for w in args.workers.split(",")):
            wall: dict[str, list[float]] = {v: [] for v in variants}
            cpu: dict[str, list[float]] = {v: [] for v in variants}
            for _ in range(args.repeats):
                for variant in variants:
                    if variant == "floor":
                        w, c = timed(lambda: floor(workers))  # noqa: B023
                    else:
                        run = (dataset, folder, fmt, workers, variant)
                        w, c = timed(lambda: sweep(*run))  # noqa: B023
                    wall[variant].append(w)
                    cpu[variant].append(c)
            row = {"format": fmt, "images": len(dataset.ids), "workers": workers,
                   "load": os.getloadavg()[0], "wall": wall, "cpu": cpu}  # fmt: skip
            for variant in variants:
                base = "sweep" if variant == "sweep+bf" else "floor"
                if variant == base or base not in variants:
                    continue
                for kind, values in (("wall", wall), ("cpu", cpu)):
                    ratios = [a / b for a, b in zip(values[variant], values[base])]
                    row[f"{variant}/{base} {kind}"] = statistics.median(ratios)
            rows.append(row)
            per_image = "  ".join(
                f"{v} {1e3 * statistics.median(wall[v]) / len(dataset.ids):.2f}/"
                f"{1e3 * statistics.median(cpu[v]) / len(dataset.ids):.2f}"
                for v in variants
            )
            ratios = "  ".join(f"{k} {v:.2f}" for k, v in row.items() if "/" in k)
            head = f"{fmt:14s} workers {workers} load {row['load']:.1f}  ms/image wall/cpu:"
            print(f"{head} {per_image}\n    ratios (median of per-repeat): {ratios}", flush=True)
    print(f"load average at end: {os.getloadavg()}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
