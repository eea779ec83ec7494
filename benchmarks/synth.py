"""Synthesise activation maps from real ground-truth masks (for benchmarks only).

Per image-label class: the class mask, box-blurred at 1/8 resolution with a spill onto
the surroundings and noise, upsampled to full size and normalised to max 1 - the shape
and size of real CAMs, written in the requested format. Deterministic per image id.
"""

from __future__ import annotations

import argparse
import zlib
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from wsssbed.activation import ActivationMaps, map_format, write_activation
from wsssbed.datasets import get_dataset
from wsssbed.datasets.local import LocalDataset, labels_from_mask
from wsssbed.eval.boundary import DEFAULT_TOLERANCE, Tolerance
from wsssbed.eval.inputs import SweepInputs
from wsssbed.eval.job import SweepJob
from wsssbed.eval.rules import make_rule
from wsssbed.eval.sample import EvalSample
from wsssbed.io.imageio import read_png_array

CACHE = Path(__file__).resolve().parent / ".cache"


def synth_maps(gt: np.ndarray, labels: tuple[int, ...], image_id: str) -> ActivationMaps:
    """(K, H, W) float32 maps in [0, 1] for the image's label classes."""
    rng = np.random.default_rng(zlib.crc32(image_id.encode()))
    height, width = gt.shape
    planes = []
    for cls in labels:
        mask = torch.from_numpy((gt == cls).astype(np.float32))[None, None]
        small = F.avg_pool2d(mask, 8, ceil_mode=True)
        small = F.avg_pool2d(small, 5, stride=1, padding=2, count_include_pad=False)
        small = small + 0.15 * torch.from_numpy(rng.random(small.shape, dtype=np.float32))
        full = F.interpolate(small, size=(height, width), mode="bilinear", align_corners=False)
        full = full[0, 0].clamp(min=0)
        planes.append((full / full.max()).numpy())
    cams = np.stack(planes) if planes else np.zeros((0, height, width), np.float32)
    return ActivationMaps(np.array(labels, dtype=np.int64), cams.astype(np.float32))


def _write_one(args: tuple[str, str, str, str]) -> None:
    gt_path, image_id, fmt, target = args
    spec = get_dataset("voc2012")
    folder = Path(target)
    if fmt != "png-per-class" and map_format(fmt).where(folder, image_id).exists():
        return
    gt = read_png_array(Path(gt_path))
    labels = labels_from_mask(gt, spec)
    write_activation(folder, image_id, fmt, spec, synth_maps(gt, labels, image_id))


def ensure_maps(
    data_root: Path,
    split: str,
    fmt: str,
    limit: int | None = None,
    workers: int = 2,
    subdir: str | None = None,
) -> tuple[Path, list[str]]:
    """Write maps for the split's first `limit` images (skipping existing files).

    Args:
        subdir: cache folder to write into (default `voc-<fmt>`, shared by every split);
            a folder of its own holds exactly one split's maps.
    """
    local = LocalDataset(get_dataset("voc2012"), data_root, split)
    ids = local.ids[:limit] if limit else local.ids
    folder = CACHE / (subdir or f"voc-{fmt}")
    marker = folder / f".complete-{split}-{len(ids)}"
    if not marker.exists():
        with ProcessPoolExecutor(workers) as pool:
            jobs = [(str(local.gt_path(i)), i, fmt, str(folder)) for i in ids]
            list(pool.map(_write_one, jobs, chunksize=32))
        marker.write_text("")
    return folder, ids


def voc_subset(data_root: Path, split: str, limit: int | None = None) -> LocalDataset:
    """The split's first `limit` images (all when None)."""
    dataset = LocalDataset(get_dataset("voc2012"), data_root, split)
    return dataset.subset(dataset.ids[:limit] if limit else dataset.ids)


def threshold_job(
    dataset: LocalDataset,
    folder: Path,
    fmt: str,
    thresholds: list[float],
    workers: int = 0,
    boundary: bool = False,
) -> SweepJob:
    """A CPU background-threshold sweep of the maps in `folder` (boundary F at the
    default tolerance when `boundary`)."""
    return SweepJob(
        dataset,
        make_rule("bg-threshold", {"threshold": thresholds}),
        activation=folder,
        activation_format=fmt,
        boundary=Tolerance(DEFAULT_TOLERANCE) if boundary else None,
        allow_extra=True,
        device="cpu",
        workers=workers,
    )


def preload(job: SweepJob) -> list[EvalSample]:
    """Every input of the job's images, read and decoded once (on the CPU)."""
    inputs = SweepInputs(job, reduce_on_load=False)
    return [inputs.load(image_id) for image_id in job.dataset.ids]


def benchmark_parser(doc: str, split: str = "val") -> argparse.ArgumentParser:
    """An argument parser with the options every VOC benchmark takes: `--data-root`
    (real VOC masks) and `--split`."""
    parser = argparse.ArgumentParser(
        description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data-root", type=Path, default=Path("../shared/data/VOC2012"))
    parser.add_argument("--split", default=split)
    return parser


if __name__ == "__main__":
    parser = benchmark_parser(__doc__)
    parser.add_argument("--format", default="irn-npy")
    parser.add_argument("--limit", type=int)
    args = parser.parse_args()
    folder, ids = ensure_maps(args.data_root, args.split, args.format, args.limit)
    print(f"{len(ids)} images' maps in {folder}")
