"""Images per second of each pseudo-label, activation and saliency generator.

Runs every generator through the library's writer (`generators.writer.generate`, the code
`wsssbed pseudo-labels` runs) on real VOC pictures (../shared/data/voc2012-figures,
500x375 and similar) in a scratch VOC layout. The foundation models are the published
architectures (SAM vit_b from segment-anything's registry, open_clip ViT-B-16) with random
weights, since weights cannot be downloaded here: the arithmetic per image is that of the
real models, though how many automatic masks survive SAM's filters depends on the
weights, so a trained SAM's post-processing may cost more. Model loading is timed apart.

Usage: python benchmarks/bench_generators.py [--figures DIR] [--images 4] [--device cpu]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from foundation_fixtures import voc_figures_layout
from synth import ensure_maps

from wsssbed.datasets import get_dataset
from wsssbed.datasets.local import LocalDataset
from wsssbed.generators.base import make_generator
from wsssbed.generators.clip_cam import ClipCamGenerator
from wsssbed.generators.sam_box import SamBoxGenerator
from wsssbed.generators.sam_clip import SamClipSaliency
from wsssbed.generators.sam_refine import SamRefineGenerator
from wsssbed.generators.writer import GenerationJob, generate, start
from wsssbed.models.options import ClipOptions, SamOptions

VOC = get_dataset("voc2012")


def save_models(folder: Path) -> tuple[Path, Path]:
    """Random-weight SAM vit_b and open_clip ViT-B-16, saved as user checkpoints."""
    import open_clip
    from segment_anything import sam_model_registry

    torch.manual_seed(0)
    sam = folder / "sam_vit_b_random.pth"
    torch.save(sam_model_registry["vit_b"]().state_dict(), sam)
    clip = folder / "vit_b_16_random.pt"
    torch.save(open_clip.create_model("ViT-B-16", pretrained=None).state_dict(), clip)
    return sam, clip


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--figures", type=Path, default=Path("../shared/data/voc2012-figures"))
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    if not args.figures.is_dir():
        parser.error(f"{args.figures} not found (pass --figures)")
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        voc_figures_layout(args.figures, root, args.images)
        dataset = LocalDataset(VOC, root, "train")
        cams, _ = ensure_maps(root, "train", "npz", subdir="voc-figures-npz")
        sam_path, clip_path = save_models(root)
        sam = SamOptions(sam_path, "vit_b")
        clip = ClipOptions(clip_path, "ViT-B-16")
        cam_label = make_generator("bg-threshold", threshold=0.3)
        generators = {
            "bg-threshold": cam_label,
            "clip-cam (ViT-B-16)": ClipCamGenerator(clip),
            "sam-box, CAM regions (vit_b)": SamBoxGenerator(sam, base=cam_label),
            "sam-refine (vit_b, 32x32 points)": SamRefineGenerator(cam_label, sam),
            "sam-clip saliency (vit_b + ViT-B-16)": SamClipSaliency(sam, clip),
        }
        print(f"{len(dataset.ids)} real VOC pictures, device {args.device}, "
              f"{torch.get_num_threads()} threads")  # fmt: skip
        print(f"{'generator':40s} {'load s':>7s} {'s/image':>8s} {'images/s':>9s}")
        for index, (name, generator) in enumerate(generators.items()):
            job = GenerationJob(dataset, generator, root / f"out-{index}", cams, "npz",
                                device=args.device)  # fmt: skip
            started = time.perf_counter()
            start(job)  # checks inputs, loads the models
            loaded = time.perf_counter()
            generate(job, dataset.ids)
            per_image = (time.perf_counter() - loaded) / len(dataset.ids)
            print(f"{name:40s} {loaded - started:7.2f} {per_image:8.3f} {1 / per_image:9.2f}")


if __name__ == "__main__":
    main()
