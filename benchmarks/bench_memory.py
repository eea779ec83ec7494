"""Peak memory of a sweep as the number of images grows (real VOC train_aug masks).

Runs `wsssbed sweep` as a child process for the first N images of train_aug (maps
synthesised once in png-per-class format, the compact WSSS-BED layout) and samples the
resident memory of the whole process tree (driver + decoding workers) every 50 ms.

Usage: python benchmarks/bench_memory.py [--sizes 1000,4000,10582] [--workers 2]
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from synth import benchmark_parser, ensure_maps


def tree_rss_bytes(pid: int) -> int:
    """Resident memory of a process and all its descendants (from /proc)."""
    total, stack = 0, [pid]
    while stack:
        current = stack.pop()
        try:
            with open(f"/proc/{current}/status") as status:
                for line in status:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
            for task in os.listdir(f"/proc/{current}/task"):
                with open(f"/proc/{current}/task/{task}/children") as children:
                    stack.extend(int(c) for c in children.read().split())
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total


def measure(data_root: Path, maps: Path, ids: list[str], workers: int) -> tuple[float, float]:
    """(peak MiB, wall seconds) of one sweep over `ids`."""
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch) / "data"
        (root / "ImageSets/Segmentation").mkdir(parents=True)
        (root / "ImageSets/Segmentation/subset.txt").write_text("\n".join(ids) + "\n")
        (root / "SegmentationClassAug").symlink_to((data_root / "SegmentationClassAug").resolve())
        command = [
            sys.executable,
            "-m",
            "wsssbed.cli",
            "sweep",
            "--data-root",
            str(root),
            "--split",
            "subset",
            "--activation",
            str(maps),
            "--activation-format",
            "png-per-class",
            "--allow-extra-maps",
            "--thresholds",
            "0:0.99:0.01",
            "--no-boundary",
            "--device",
            "cpu",
            "--workers",
            str(workers),
            "--out",
            str(Path(scratch) / "results"),
            "--json",
        ]
        started = time.perf_counter()
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
        peak = 0
        while process.poll() is None:
            peak = max(peak, tree_rss_bytes(process.pid))
            time.sleep(0.05)
        if process.returncode != 0:
            raise SystemExit(f"sweep failed with exit code {process.returncode}")
        return peak / 2**20, time.perf_counter() - started


def main() -> None:
    parser = benchmark_parser(__doc__, "train_aug")
    parser.add_argument("--sizes", default="1000,4000,10582")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    maps, ids = ensure_maps(args.data_root, args.split, "png-per-class", max(sizes))
    rows = []
    for size in sizes:
        peak, wall = measure(args.data_root, maps, ids[:size], args.workers)
        rows.append({"images": size, "peak_mib": peak, "wall_s": wall})
        print(
            f"  {size:6d} images  peak {peak:7.1f} MiB  {wall:6.1f} s  {size / wall:6.1f} images/s",
            flush=True,
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
