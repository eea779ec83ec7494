"""SAM's automatic masks: segment-anything's generator (`exact`) against the fast path, side
by side on the same pictures and model, with the masks compared.

The model is SAM vit_b with random weights (nothing can be downloaded), calibrated like the
tests' tiny SAM (`tests/foundation_fixtures.calibrate_sam`): mask logits scaled from
tenths to tens and predicted IoU shifted so that, as with a trained SAM, SAM's default
filters (predicted IoU > 0.88, stability >= 0.95) keep part of the masks. The arithmetic
per picture is the real model's. For each picture and path: seconds, masks returned, and
each mask's IoU against the exact path's; the encoder alone is timed in each precision.

Usage: python benchmarks/bench_sam_masks.py [--figures ../shared/data/voc2012-figures]
       [--images 2] [--points-per-side 16] [--device cpu|cuda] [--threads 2]
       [--points-per-batch 64]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from foundation_fixtures import calibrate_sam

from wsssbed.models.sam import load_sam
from wsssbed.models.sam_masks import (
    MaskSettings,
    automatic_masks,
    candidate_masks,
    decode_points,
)

LOGIT_SCALE, IOU_SHIFT = 300.0, 0.85


def pictures(figures: Path, count: int) -> list[tuple[str, np.ndarray]]:
    names = sorted(p.stem for p in figures.glob("*.png")
                   if not p.stem.endswith(("_gt", "_pred")))[:count]  # fmt: skip
    return [(n, np.array(Image.open(figures / f"{n}.png").convert("RGB"))) for n in names]


def encoder_seconds(sam: torch.nn.Module, image: np.ndarray, settings: MaskSettings) -> float:
    from segment_anything import SamPredictor

    predictor = SamPredictor(sam)
    started = time.perf_counter()
    with settings.encoder_autocast(predictor.device):
        predictor.set_image(image)
    _sync(predictor.device)
    return time.perf_counter() - started


def decoder_seconds(sam: torch.nn.Module, prompts: int) -> tuple[float, float, bool]:
    """segment-anything's MaskDecoder against `decode_points` on one call of `prompts`
    point prompts (random embedding): seconds each, and whether the logits are equal."""
    torch.manual_seed(0)
    encoder = sam.prompt_encoder
    image = torch.randn(1, encoder.embed_dim, *encoder.image_embedding_size, device=sam.device)
    points = torch.rand(prompts, 1, 2, device=sam.device) * sam.image_encoder.img_size
    labels = torch.ones(prompts, 1, dtype=torch.int, device=sam.device)
    with torch.no_grad():
        sparse, dense = encoder(points=(points, labels), boxes=None, masks=None)
        pe = encoder.get_dense_pe()
        started = time.perf_counter()
        expected, _ = sam.mask_decoder(image, pe, sparse, dense, True)
        _sync(sam.device)
        middle = time.perf_counter()
        got, _ = decode_points(sam.mask_decoder, image, pe, sparse, dense[:1])
        _sync(sam.device)
    return middle - started, time.perf_counter() - middle, torch.equal(got, expected)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--figures", type=Path, default=Path("../shared/data/voc2012-figures"))
    parser.add_argument("--images", type=int, default=2)
    parser.add_argument("--points-per-side", type=int, default=16)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--points-per-batch", type=int, default=64)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    with tempfile.TemporaryDirectory() as folder:
        from segment_anything import sam_model_registry

        torch.manual_seed(0)
        path = Path(folder) / "sam_vit_b_random.pth"
        torch.save(sam_model_registry["vit_b"]().state_dict(), path)
        sam = calibrate_sam(load_sam(path, "vit_b", args.device), LOGIT_SCALE, IOU_SHIFT)
    exact = MaskSettings(args.points_per_side, path="exact", points_per_batch=args.points_per_batch)
    paths = {"exact": exact, "fast fp32": replace(exact, path="fast", precision="fp32"),
             "fast bf16": replace(exact, path="fast", precision="bf16")}  # fmt: skip
    candidates = 3 * args.points_per_side**2
    print(
        f"device {device}, torch {torch.__version__}, threads {args.threads}, "
        f"{args.points_per_side}x{args.points_per_side} points ({candidates} candidate masks)"
    )
    totals = dict.fromkeys(paths, 0.0)
    for name, image in pictures(args.figures, args.images):
        encoder = {p: encoder_seconds(sam, image, s) for p, s in paths.items() if p != "fast fp32"}
        kept = sum(len(m) for m, _ in candidate_masks(sam, image, paths["fast fp32"]))
        found = {}
        for label, settings in paths.items():
            started = time.perf_counter()
            found[label] = automatic_masks(sam, image, settings)
            _sync(device)
            seconds = time.perf_counter() - started
            totals[label] += seconds
            reference = found["exact"]
            ious = [float((a & b).sum() / max((a | b).sum(), 1))
                    for (a, _), (b, _) in zip(found[label], reference)]  # fmt: skip
            print(
                f"{name} {image.shape[1]}x{image.shape[0]} {label:9s} {seconds:7.2f} s; "
                f"{len(found[label])} masks (exact {len(reference)}), "
                f"min IoU vs exact {min(ious, default=float('nan')):.4f}",
                flush=True,
            )
        print(f"{name}: encoder fp32 {encoder['exact']:.2f} s, bf16 {encoder['fast bf16']:.2f} s; "
              f"{kept} of {candidates} candidates pass both filters", flush=True)  # fmt: skip
    for label, seconds in totals.items():
        print(f"total {label:9s} {seconds:7.2f} s, {totals['exact'] / seconds:.2f}x exact")
    shipped, ours, equal = decoder_seconds(sam, args.points_per_batch)
    print(
        f"decoder alone, {args.points_per_batch} prompts: segment-anything {shipped:.2f} s, "
        f"decode_points {ours:.2f} s ({shipped / ours:.2f}x); logits identical: {equal}"
    )


if __name__ == "__main__":
    main()
