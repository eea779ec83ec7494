"""Dense CRF refinement speed on VOC-size pictures, per core and through worker processes.

Refines real VOC pictures (../shared/data/voc2012-figures, 500x375 and similar) with the
published method's predictions there as the label maps (`<id>_pred.png`, colour-coded,
mapped back to class ids), with IRN's parameters. Three measurements, side by side:

1. `crf_refine` against pydensecrf2 called directly with the same arguments, alternating
   `--repeats` times over every picture, one thread: images/s per core and the ratio
   (wsssbed's overhead around the engine);
2. `wsssbed refine` (the writer, in this process) against `--workers N`, on a split of
   `--copies` copies of the pictures: the speed-up from processes.

Usage: python benchmarks/bench_crf.py [--figures DIR] [--repeats 3] [--copies 8] [--workers 2]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pydensecrf.densecrf as densecrf
import pydensecrf.utils as utils
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from foundation_fixtures import voc_class_ids, voc_figures_layout

from wsssbed.datasets import get_dataset
from wsssbed.datasets.local import LocalDataset
from wsssbed.generators.crf import CrfRefined, CrfSettings, GivenLabels, crf_refine
from wsssbed.generators.writer import GenerationJob, generate, generate_parallel, start

VOC = get_dataset("voc2012")
FIGURES = Path(__file__).resolve().parents[2] / "shared/data/voc2012-figures"


def direct(image: np.ndarray, labels: np.ndarray, s: CrfSettings) -> np.ndarray:
    """pydensecrf2 with the same unary and pairwise terms, no wsssbed code."""
    present = np.unique(labels[labels != 255])
    compact = np.zeros(labels.shape, dtype=np.int64)
    compact[labels != 255] = np.searchsorted(present, labels[labels != 255]) + 1
    height, width = labels.shape
    crf = densecrf.DenseCRF2D(width, height, present.size)
    crf.setUnaryEnergy(utils.unary_from_labels(compact, present.size, gt_prob=s.gt_prob,
                                               zero_unsure=True))  # fmt: skip
    crf.addPairwiseGaussian(sxy=s.gaussian_sxy, compat=s.gaussian_compat)
    rgb = np.ascontiguousarray(image)
    crf.addPairwiseBilateral(sxy=s.bilateral_sxy, srgb=s.bilateral_srgb, rgbim=rgb,
                             compat=s.bilateral_compat)  # fmt: skip
    q = np.asarray(crf.inference(s.steps)).reshape(present.size, height, width)
    return present[np.argmax(q, axis=0)].astype(np.uint8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--figures", type=Path, default=FIGURES)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--copies", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="bench-crf-"))
    try:
        ids = voc_figures_layout(args.figures, scratch, 100)
        root = scratch / "VOC2012"
        pictures = {i: np.array(Image.open(root / "JPEGImages" / f"{i}.jpg")) for i in ids}
        labels = {i: voc_class_ids(args.figures / f"{i}_pred.png") for i in ids}
        settings = CrfSettings()
        torch.set_num_threads(1)
        times: dict[str, list[float]] = {"wsssbed crf_refine": [], "pydensecrf2 direct": []}
        for _ in range(args.repeats):
            for name, refine in (
                ("wsssbed crf_refine", crf_refine),
                ("pydensecrf2 direct", direct),
            ):
                started = time.perf_counter()
                out = [refine(pictures[i], labels[i], settings) for i in ids]
                times[name].append(time.perf_counter() - started)
            assert all(np.array_equal(o, direct(pictures[i], labels[i], settings))
                       for o, i in zip(out, ids))  # fmt: skip
        pixels = statistics.mean(p.shape[0] * p.shape[1] for p in pictures.values())
        print(f"{len(ids)} real VOC pictures (mean {pixels / 1000:.0f} kpixels), IRN's "
              f"parameters, 1 thread")  # fmt: skip
        for name, values in times.items():
            best = min(values)
            runs = ", ".join(f"{v:.2f}" for v in values)
            print(f"  {name:20s} {len(ids) / best:6.2f} images/s per core "
                  f"({1000 * best / len(ids):.0f} ms/image; runs {runs} s)")  # fmt: skip
        ratio = statistics.median(a / b for a, b in zip(*times.values(), strict=True))
        print(f"  wsssbed / direct, median of pairs: {ratio:.3f}")

        pred = scratch / "pred"
        pred.mkdir()
        many = []
        for copy in range(args.copies):
            for i in ids:
                name = f"{i}_{copy}"
                shutil.copy(root / "JPEGImages" / f"{i}.jpg", root / "JPEGImages" / f"{name}.jpg")
                shutil.copy(root / "SegmentationClass" / f"{i}.png",
                            root / "SegmentationClass" / f"{name}.png")  # fmt: skip
                Image.fromarray(labels[i]).save(pred / f"{name}.png")
                many.append(name)
        (root / "ImageSets/Segmentation/bench.txt").write_text("\n".join(many) + "\n")
        dataset = LocalDataset(VOC, scratch, "bench")
        torch.set_num_threads(max(1, args.workers))
        walls = {}
        for workers in (0, args.workers):
            job = GenerationJob(dataset, CrfRefined(GivenLabels()), scratch / f"out{workers}",
                                predictions=pred, labels="masks")  # fmt: skip
            start(job)
            started = time.perf_counter()
            if workers:
                generate_parallel(job, workers)
            else:
                generate(job, dataset.ids)
            walls[workers] = time.perf_counter() - started
        n = len(many)
        print(f"writer (`wsssbed refine`), {n} images:")
        for workers, wall in walls.items():
            print(f"  workers={workers}: {n / wall:6.2f} images/s ({wall:.1f} s)")
        print(f"  speed-up with {args.workers} workers: {walls[0] / walls[args.workers]:.2f}x")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
