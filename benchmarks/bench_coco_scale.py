"""The engine at COCO scale: memory flat in the number of images, speed per core against
VOC-like images in the same run.

Synthesises images in memory, one at a time (nothing is kept), and sweeps them through
the public API (`wsssbed.eval.accumulate`, the engine `wsssbed sweep` runs after
decoding), on one thread:

- `coco`: 81 classes with background, 640x480-like sizes (both orientations), 2-5
  labelled classes per image drawn with COCO's skew (person in about half the images, a
  long tail after), objects as ellipses, CAMs as blurred objects plus noise, saliency as
  the blurred union of objects plus noise. The saliency rule on WSSS-BED's grid (7
  saliency x 15 activation thresholds); boundary F is defined for one saliency threshold
  without the ignore label, so "boundary on" sweeps the 15 activation thresholds at
  saliency 0.2 with boundary F.
- `cocostuff`: 171 classes, no background, every pixel labelled, 3-8 classes per image;
  the background-threshold rule at 100 thresholds, boundary F off and on.
- `voc`: the reference: 21 classes, 500x375-like, 1-3 labels, the same two rules.

For each configuration: images/s, resident memory after each quarter of the images, the
histogram state's rows and bytes. Decoding is not included: it is the same per pixel as
for VOC (see "Sweep speed" and "Memory").

Then COCO-like against VOC-like held in memory (`--preloaded` images each), for the
per-image and per-pixel ratios without synthesis between images.

With `--files N`: the sweep from files instead (the fused CPU path, `eval/fused.py`):
N COCO-like and N VOC-like images written as masks and irn-npy maps, the background
threshold at 100 points without and with boundary F, in this process, alternated
`--repeats` times (best of each), per image and per pixel.

Usage: python benchmarks/bench_coco_scale.py [--images 10000] [--voc-images 1000]
       [--preloaded 300] [--repeats 3]
       python benchmarks/bench_coco_scale.py --files 300 --repeats 5
"""

from __future__ import annotations

import argparse
import resource
import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from wsssbed.datasets import get_dataset
from wsssbed.eval import EvalSample, Tolerance, accumulate, make_rule

SIZES = {"coco": [(480, 640), (640, 480), (427, 640), (640, 427)],
         "cocostuff": [(480, 640), (640, 480), (427, 640), (640, 427)],
         "voc": [(375, 500), (500, 375), (333, 500)]}  # fmt: skip
SAL_GRID = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7]
ATM_GRID = [round(0.05 * i, 2) for i in range(1, 16)]
BG_GRID = [round(0.01 * i, 2) for i in range(100)]


@dataclass(frozen=True)
class Kind:
    name: str
    dataset: str
    labels: tuple[int, int]  # fewest, most labelled classes per image


KINDS = {
    "coco": Kind("coco", "coco2014", (2, 5)),
    "cocostuff": Kind("cocostuff", "cocostuff", (3, 8)),
    "voc": Kind("voc", "voc2012", (1, 3)),
}


def class_weights(kind: Kind, count: int) -> np.ndarray:
    """COCO-like skew over the foreground: the first class (person) about 10x the next,
    then a power-law tail."""
    weights = 1.0 / np.arange(1, count + 1) ** 0.8
    if kind.name == "coco":
        weights[0] *= 10
    return weights / weights.sum()


def images(kind: Kind, count: int, seed: int = 0) -> Iterator[EvalSample]:
    """`count` synthetic samples, generated one at a time."""
    spec = get_dataset(kind.dataset)
    rng = np.random.default_rng(seed)
    first = spec.first_foreground
    foreground = spec.num_classes - first
    weights = class_weights(kind, foreground)
    for index in range(count):
        height, width = SIZES[kind.name][index % len(SIZES[kind.name])]
        n = int(rng.integers(kind.labels[0], kind.labels[1] + 1))
        keys = np.sort(rng.choice(foreground, size=n, replace=False, p=weights)) + first
        gt = np.zeros((height, width), dtype=np.uint8)
        if not spec.has_background:  # stuff everywhere: the first label is the floor
            gt[:] = keys[0]
        ys, xs = np.ogrid[:height, :width]
        for key in keys if spec.has_background else keys[1:]:
            for _ in range(int(rng.integers(1, 4))):
                cy, cx = rng.uniform(0, height), rng.uniform(0, width)
                ry, rx = rng.uniform(0.05, 0.35) * height, rng.uniform(0.05, 0.35) * width
                gt[((ys - cy) / ry) ** 2 + ((xs - cx) / rx) ** 2 < 1] = key
        objects = torch.from_numpy(gt[None] == keys[:, None, None]).float()
        small = F.avg_pool2d(objects[None], 8, ceil_mode=True)[0]
        small = small + 0.25 * torch.from_numpy(rng.random(small.shape, dtype=np.float32))
        cams = F.interpolate(small[None], size=(height, width), mode="bilinear")[0]
        cams = (cams / cams.amax(dim=(1, 2), keepdim=True).clamp(min=1e-6)).clamp(0, 1)
        saliency = cams.amax(0) if spec.has_background else torch.zeros(height, width)
        yield EvalSample(f"{kind.name}_{index:06d}", torch.from_numpy(gt),
                         torch.from_numpy(keys), cams, saliency)  # fmt: skip


def resident_mib() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize() / 2**20


def rules(kind: Kind) -> dict[str, tuple[object, Tolerance | None]]:
    boundary = Tolerance(0.0075)
    if kind.name == "cocostuff":
        rule = make_rule("bg-threshold", {"threshold": BG_GRID})
        return {"bg-threshold x100": (rule, None), "bg-threshold x100 + BF": (rule, boundary)}
    grid = make_rule("saliency-rule", {"sal_threshold": SAL_GRID, "threshold": ATM_GRID},
                     ignore_label=True)  # fmt: skip
    line = make_rule("saliency-rule", {"sal_threshold": [0.2], "threshold": ATM_GRID},
                     ignore_label=False)  # fmt: skip
    return {"saliency 7x15": (grid, None), "saliency 1x15 + BF": (line, boundary)}


def measure(kind: Kind, count: int) -> None:
    spec = get_dataset(kind.dataset)
    for name, (rule, boundary) in rules(kind).items():
        marks = {count * q // 4 for q in (1, 2, 3, 4)}
        memory: list[tuple[int, float]] = []
        making = [0.0]  # seconds spent synthesising, left out of the engine's time

        def stream(marks=marks, memory=memory, making=making) -> Iterator[EvalSample]:
            source = images(kind, count)
            for done in range(1, count + 1):
                started = time.perf_counter()
                sample = next(source)
                making[0] += time.perf_counter() - started
                yield sample
                if done in marks:
                    memory.append((done, resident_mib()))

        started = time.perf_counter()
        state = accumulate(stream(), rule, spec, boundary=boundary)
        wall = time.perf_counter() - started - making[0]
        hist = state.pairs.result().hist
        rows = ", ".join(f"{done:,}: {mib:.0f}" for done, mib in memory)
        print(f"{kind.name:9s} {name:24s} {count / wall:7.1f} images/s (engine, 1 thread); "
              f"state {hist.shape[0]:,} rows x {int(np.prod(hist.shape[1:])):,} cells = "
              f"{hist.nbytes / 2**20:.1f} MiB; resident MiB {rows}; "
              f"peak {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f}",
              flush=True)  # fmt: skip


def preloaded(count: int, repeats: int) -> None:
    """COCO-like against VOC-like with `count` images of each held in memory, swept in
    alternation `repeats` times (best of each): the per-image and per-pixel ratios
    without synthesis between images evicting the engine's caches."""
    held = {name: list(images(KINDS[name], count)) for name in ("voc", "coco")}
    pixels = {name: np.mean([s.gt.numel() for s in held[name]]) for name in held}
    for rule_name in rules(KINDS["coco"]):
        best = dict.fromkeys(held, float("inf"))
        for _ in range(repeats):
            for name, samples in held.items():
                rule, boundary = rules(KINDS[name])[rule_name]
                started = time.perf_counter()
                accumulate(iter(samples), rule, get_dataset(KINDS[name].dataset), boundary=boundary)
                best[name] = min(best[name], (time.perf_counter() - started) / count)
        ratio = best["coco"] / best["voc"]
        print(
            f"preloaded {rule_name:20s} VOC {best['voc'] * 1e3:.2f} ms, COCO "
            f"{best['coco'] * 1e3:.2f} ms per image: {ratio:.2f}x per image, "
            f"{ratio * pixels['voc'] / pixels['coco']:.2f}x per pixel",
            flush=True,
        )


def from_files(count: int, repeats: int) -> None:
    """`--files` (see the module docstring)."""
    import os
    import tempfile
    from pathlib import Path

    from wsssbed.activation import ActivationMaps, write_activation
    from wsssbed.datasets.local import LocalDataset
    from wsssbed.eval.job import SweepJob
    from wsssbed.eval.loop import run_sweep
    from wsssbed.io.imageio import write_png_atomic

    os.environ.setdefault("WSSSBED_JIT", "1")  # numba's kernels when installed
    lists = {"voc": "ImageSets/Segmentation", "coco": "ImageSets"}  # the specs' layouts
    with tempfile.TemporaryDirectory() as scratch:
        jobs, pixels = {}, {}
        for name, folder in lists.items():
            spec, root = get_dataset(KINDS[name].dataset), Path(scratch) / name
            ids, sizes = [], []
            for sample in images(KINDS[name], count):
                gt = sample.gt.numpy()
                write_png_atomic(root / "SegmentationClass" / f"{sample.image_id}.png", gt)
                shown = np.isin(sample.class_ids.numpy(), gt)  # objects may hide others
                maps = ActivationMaps(sample.class_ids.numpy()[shown], sample.cams.numpy()[shown])
                write_activation(root / "maps", sample.image_id, "irn-npy", spec, maps)
                ids.append(sample.image_id)
                sizes.append(gt.size)
            (root / folder).mkdir(parents=True)
            (root / folder / "val.txt").write_text("\n".join(ids) + "\n")
            pixels[name] = float(np.mean(sizes))
            for boundary in (None, Tolerance(0.0075)):
                rule = make_rule("bg-threshold", {"threshold": BG_GRID})
                jobs[name, boundary] = SweepJob(
                    LocalDataset(spec, root, "val"), rule, activation=root / "maps",
                    activation_format="irn-npy", boundary=boundary, device="cpu", workers=0,
                )  # fmt: skip
        for job in jobs.values():  # the page cache and the kernels warm
            run_sweep(job)
        best = dict.fromkeys(jobs, float("inf"))
        for _ in range(repeats):
            for key, job in jobs.items():
                best[key] = min(best[key], run_sweep(job)[1] / count)
    for boundary in (None, Tolerance(0.0075)):
        voc, coco = best["voc", boundary], best["coco", boundary]
        ratio = coco / voc
        print(
            f"files bg-threshold x100{' + BF' if boundary else ''}: VOC {voc * 1e3:.2f} ms, "
            f"COCO {coco * 1e3:.2f} ms per image ({pixels['voc'] / 1e3:.0f} and "
            f"{pixels['coco'] / 1e3:.0f} kpixels): {ratio:.2f}x per image, "
            f"{ratio * pixels['voc'] / pixels['coco']:.2f}x per pixel",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--voc-images", type=int, default=1_000)
    parser.add_argument("--kinds", default="voc,coco,cocostuff")
    parser.add_argument("--preloaded", type=int, default=300, help="images held (0: skip)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--files", type=int, default=0, help="sweep N images from files")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.files:
        return from_files(args.files, args.repeats)
    for name in args.kinds.split(","):
        measure(KINDS[name], args.voc_images if name == "voc" else args.images)
    if args.preloaded:  # last: holding images would blur the memory columns above
        preloaded(args.preloaded, args.repeats)


if __name__ == "__main__":
    main()
