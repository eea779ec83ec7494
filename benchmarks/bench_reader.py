"""The restricted map reader against numpy's own (unsafe) `np.load(allow_pickle=True)`.

1. With `--sweep`: the 100-threshold VOC val sweep (irn-npy, 2 workers) with the
   restricted reader and with `np.load` swapped in, alternating: what the reader costs
   a real sweep.
2. Every pickled layout: the first `--files` VOC val images' synthesised maps (`synth.py`)
   saved the way each codebase saves them (IRN with torch `keys` and a stride-4 torch
   `cam`, IRN forks in numpy, SEAM's class dict, PuzzleCAM with a torch `cam`, CLIP-ES in
   float16), then read alternately, `--repeats` times after a warm-up, by
   `np.load(path, allow_pickle=True).item()`, by the restricted reader alone (`load_npy`:
   views of the file's bytes, tensors not copied) and through the format
   (`read_activation`: keys and float32 maps, checked against the image). Median time
   per file, and each reader's ratio to np.load per repeat (the same files, back to back).

Usage: python benchmarks/bench_reader.py [--files 200] [--repeats 5] [--sweep]
       [--data-root ../shared/data/VOC2012]
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from synth import benchmark_parser, ensure_maps, synth_maps, threshold_job, voc_subset

from wsssbed.activation import read_activation
from wsssbed.datasets import get_dataset
from wsssbed.datasets.local import LocalDataset, labels_from_mask
from wsssbed.io.budget import MapBudget
from wsssbed.io.safe_pickle import load_npy

VOC = get_dataset("voc2012")


def saved(keys: np.ndarray, cams: np.ndarray) -> dict[str, tuple[str, dict]]:
    """Label -> (format, the dict its codebase saves) for one image's 0-based keys and maps."""
    strided = torch.from_numpy(np.ascontiguousarray(cams[:, ::4, ::4]))  # ceil(H/4) x ceil(W/4)
    return {
        "IRN (torch keys, cam)": (
            "irn-npy",
            {"keys": torch.from_numpy(keys), "cam": strided, "high_res": cams},
        ),
        "IRN forks (numpy)": ("irn-npy", {"keys": keys, "cam": strided.numpy(), "high_res": cams}),
        "SEAM / PSA / MCTformer": ("seam-npy", {int(k): c for k, c in zip(keys, cams)}),
        "PuzzleCAM (torch cam)": (
            "puzzlecam-npy",
            {"keys": np.pad(keys + 1, (1, 0)), "cam": strided, "hr_cam": cams},
        ),
        "CLIP-ES (float16)": ("clip-es-npy", {"keys": keys, "attn_highres": cams.astype("f2")}),
    }


def write_layouts(data_root: Path, count: int, root: Path) -> dict[str, tuple[str, Path, dict]]:
    """Label -> (format, folder, id -> ground-truth shape) of every layout's files."""
    local = LocalDataset(VOC, data_root, "val")
    out: dict[str, tuple[str, Path, dict]] = {}
    for image_id in local.ids[:count]:
        gt = local.read_gt(image_id)
        maps = synth_maps(gt, labels_from_mask(gt, VOC), image_id)
        layouts = saved(VOC.foreground_keys(maps.class_ids), maps.cams)
        for number, (label, (fmt, content)) in enumerate(layouts.items()):
            folder = root / f"{number}-{fmt}"
            folder.mkdir(parents=True, exist_ok=True)
            np.save(folder / f"{image_id}.npy", content)
            out.setdefault(label, (fmt, folder, {}))[2][image_id] = gt.shape
    return out


def time_readers(fmt: str, folder: Path, shapes: dict, repeats: int) -> dict[str, list[float]]:
    """Seconds per file of each reader on the folder's files, per repeat (after a warm-up)."""
    readers = {
        "np.load": lambda i: np.load(folder / f"{i}.npy", allow_pickle=True).item(),
        "load_npy": lambda i: load_npy(folder / f"{i}.npy", MapBudget(20, shapes[i])),
        "read": lambda i: read_activation(folder, i, fmt, VOC, shape=shapes[i]),
    }
    times: dict[str, list[float]] = {name: [] for name in readers}
    for repeat in range(repeats + 1):  # the first is a warm-up
        for name, read in readers.items():
            started = time.perf_counter()
            for image_id in shapes:
                read(image_id)
            if repeat:
                times[name].append((time.perf_counter() - started) / len(shapes))
    return times


def compare_layouts(data_root: Path, count: int, repeats: int) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        layouts = write_layouts(data_root, count, Path(scratch))
        print(f"{count} VOC val images per layout; median ms per file over {repeats} repeats")
        print(f"{'layout':26s} {'MiB':>5s} {'np.load':>8s} {'load_npy':>9s} {'ratio':>6s} "
              f"{'read':>7s} {'ratio':>6s}  read / np.load per repeat")  # fmt: skip
        for label, (fmt, folder, shapes) in layouts.items():
            times = time_readers(fmt, folder, shapes, repeats)
            size = sum((folder / f"{i}.npy").stat().st_size for i in shapes) / len(shapes)
            median = {name: 1000 * statistics.median(values) for name, values in times.items()}
            pairs = [r / n for r, n in zip(times["read"], times["np.load"], strict=True)]
            print(
                f"{label:26s} {size / 2**20:5.2f} {median['np.load']:8.3f} "
                f"{median['load_npy']:9.3f} {median['load_npy'] / median['np.load']:6.2f} "
                f"{median['read']:7.3f} {median['read'] / median['np.load']:6.2f}  "
                + ", ".join(f"{r:.2f}" for r in pairs)
            )


def compare_sweeps(data_root: Path, repeats: int) -> None:
    """The same sweep with each reader behind the pickled formats, alternating."""
    import wsssbed.activation.formats.pickled as pickled
    from wsssbed.eval.loop import run_sweep

    folder, _ = ensure_maps(data_root, "val", "irn-npy", None)
    job = threshold_job(
        voc_subset(data_root, "val"), folder, "irn-npy", [i / 100 for i in range(100)], 2
    )
    restricted = pickled.load_npy
    unsafe = lambda path, budget: np.load(path, allow_pickle=True).item()  # noqa: E731
    run_sweep(job)  # warm the page cache
    walls: dict[str, list[float]] = {"restricted": [], "np.load": []}
    for _ in range(repeats):
        for name, reader in (("restricted", restricted), ("np.load", unsafe)):
            pickled.load_npy = reader  # the workers fork after this
            walls[name].append(run_sweep(job)[1])
    pickled.load_npy = restricted
    for name, values in walls.items():
        print(f"  sweep-100 of val with {name:10s} median {statistics.median(values):.2f} s")
    pairs = [a / b for a, b in zip(walls["restricted"], walls["np.load"], strict=True)]
    print(
        f"  restricted / np.load per pair: {', '.join(f'{r:.3f}' for r in pairs)}; "
        f"median {statistics.median(pairs):.3f}"
    )


def main() -> None:
    parser = benchmark_parser(__doc__)
    parser.add_argument("--files", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--sweep", action="store_true")
    args = parser.parse_args()
    if args.sweep:  # first: its maps are written by worker processes, forked before torch runs
        compare_sweeps(args.data_root, args.repeats)
    compare_layouts(args.data_root, args.files, args.repeats)


if __name__ == "__main__":
    main()
