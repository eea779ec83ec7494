"""Start-up time of the commands that compute nothing, against `python -c "import torch"`.

Each command runs in a fresh interpreter, interleaved with the torch import and repeated
(`--repeats`); the median wall time of each and its ratio to the torch import are
printed. Goal (issue 13): every ratio at most 0.4.

Usage: python benchmarks/bench_startup.py [--repeats 7] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parents[1] / "leaderboard" / "results"
CLI = [sys.executable, "-m", "wsssbed.cli"]
COMMANDS = {
    "import torch": [sys.executable, "-c", "import torch"],
    "wsssbed --help": [*CLI, "--help"],
    "wsssbed --version": [*CLI, "--version"],
    "wsssbed sweep --help": [*CLI, "sweep", "--help"],
    "wsssbed datasets": [*CLI, "datasets"],
    "wsssbed manifests": [*CLI, "manifests"],
    "wsssbed results show": [*CLI, "results", "show", "--results", str(RESULTS)],
}


def wall_time(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    for command in COMMANDS.values():  # warm the file cache once
        wall_time(command)
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for _ in range(args.repeats):
        for name, command in COMMANDS.items():
            times[name].append(wall_time(command))
    medians = {name: statistics.median(t) for name, t in times.items()}
    torch_time = medians["import torch"]
    rows = {name: {"seconds": m, "ratio": m / torch_time} for name, m in medians.items()}
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(f"| command | median s ({args.repeats} runs) | / import torch |")
    print("| --- | ---: | ---: |")
    for name, row in rows.items():
        print(f"| `{name}` | {row['seconds']:.3f} | {row['ratio']:.2f} |")


if __name__ == "__main__":
    main()
