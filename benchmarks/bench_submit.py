"""Submit maps for VOC 2012 train, then reproduce them with `sweep --method`.

Maps are synthesised (npz) from the real masks for exactly the split; both commands run
as users run them (`wsssbed submit`, `wsssbed sweep --method`), in a scratch
WSSSBED_HOME. Reports the wall time of each and of the digest alone, and checks that
the two runs' integer counts are identical.

Usage: python benchmarks/bench_submit.py [--split train] [--workers 2]
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
from synth import benchmark_parser, ensure_maps

from wsssbed.activation import digest_maps


def wsssbed(*args: str, env: dict) -> float:
    """Run the CLI; return its wall time in seconds."""
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "wsssbed.cli", *args], env=env, check=True,
                   stdout=subprocess.DEVNULL)  # fmt: skip
    return time.perf_counter() - started


def main() -> None:
    parser = benchmark_parser(__doc__, "train")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    folder, ids = ensure_maps(args.data_root, args.split, "npz", subdir=f"submit-{args.split}")
    started = time.perf_counter()
    digest = digest_maps(folder, "npz")
    digest_s = time.perf_counter() - started
    with tempfile.TemporaryDirectory() as scratch:
        env = {**os.environ, "WSSSBED_HOME": str(Path(scratch) / "home")}
        out = Path(scratch) / "results"
        common = ["--data-root", str(args.data_root), "--workers", str(args.workers),
                  "--out", str(out), "--device", "cpu"]  # fmt: skip
        submit_s = wsssbed("submit", str(folder), "--dataset", "voc2012", "--split", args.split,
                           "--format", "npz", "--name", "synth-cam", *common, env=env)  # fmt: skip
        method_s = wsssbed("sweep", "--method", "synth-cam", *common, env=env)
        runs = pd.read_parquet(out / "runs.parquet")
        per_class = pd.read_parquet(out / "per_class.parquet")
        sweeps = pd.read_parquet(out / "sweeps.parquet")
    counts = ["point", "class_id", "tp", "fp", "fn", "bf_pred", "bf_pred_matched"]
    first, second = (
        per_class[per_class.run_id == r][counts].reset_index(drop=True) for r in runs.run_id
    )
    identical = first.equals(second)
    best = sweeps[sweeps.run_id == runs.run_id.iloc[1]].sort_values("miou").iloc[-1]
    manifests = json.loads(runs.manifests.iloc[1])
    print(f"{len(ids)} images of VOC2012 {args.split}, {digest.files} npz files")
    print(f"  digest alone          {digest_s:7.2f} s  ({digest.digest[:23]}...)")
    print(f"  wsssbed submit        {submit_s:7.2f} s  (digest + validation + 61-point sweep + BF)")
    print(f"  wsssbed sweep --method{method_s:7.2f} s  (digest check + the same sweep)")
    print(f"  counts identical: {identical}; verified: {runs.verified.tolist()}")
    pinned = f"{manifests[0]['name']}@{manifests[0]['version']}"
    print(f"  best: threshold {best.threshold:g}, mIoU {100 * best.miou:.2f}%, "
          f"BF {100 * best.bf_f:.2f}%; manifest {pinned}")  # fmt: skip
    if not identical:
        raise SystemExit("the two runs' counts differ")
    if args.json:
        args.json.write_text(json.dumps({"images": len(ids), "digest_s": digest_s,
                                         "submit_s": submit_s, "method_sweep_s": method_s,
                                         "identical": identical}, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
