"""How much PuzzleCAM's published evaluate.py moves a sweep by scoring every 8th image.

Not a speed benchmark: a measurement for docs/results.md. PuzzleCAM's `evaluate.py`
(OFRIN/PuzzleCAM, lines 84-88) starts `for i in range(1)` one process running
`compare(i, 8, ...)`, which visits images 0, 8, 16, ... of the list: 182 of VOC val's
1,449. This scores the same threshold sweep (PuzzleCAM's own grid, 0.05..0.75 by 0.05,
and a fine 0..0.6 by 0.01) on all images and on every 8th, with wsssbed's counts
(`miou_zero`, PuzzleCAM's convention, and `miou`).

The maps are synthetic (no published method's maps for all of val are on this machine),
in three settings (`--setting`, all by default):

- `synth`: `synth.synth_maps` (each label class's mask blurred at 1/8 resolution with
  noise, normalised to max 1);
- `power`: the same raised to a per-image power drawn log-uniformly in [1/2, 2] (the
  activation strength varies per image, as in real CAMs, so the best threshold does);
- `noisy`: `power` after mixing 40% of a smooth random field (1/32 resolution) into each
  map: spurious activations and missed parts, for a CAM-like mIoU (about 50-60%).

Usage: python benchmarks/puzzlecam_stride.py --data-root ../shared/data/VOC2012
"""

from __future__ import annotations

import argparse
import zlib
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from synth import synth_maps

from wsssbed.datasets import get_dataset
from wsssbed.datasets.local import LocalDataset, labels_from_mask
from wsssbed.eval.reduce import SweepState, reduce_batch
from wsssbed.eval.rules import make_rule
from wsssbed.eval.sample import EvalSample
from wsssbed.eval.tables import sweep_tables

STRIDE = 8  # evaluate.py: one process, compare(0, 8, ...)
GRIDS = {
    "PuzzleCAM's 0.05:0.75:0.05": [round(0.05 * i, 2) for i in range(1, 16)],
    "fine 0:0.6:0.01": [round(0.01 * i, 2) for i in range(61)],
}


SETTINGS = ("synth", "power", "noisy")


def _maps(gt: np.ndarray, image_id: str, spec, setting: str) -> EvalSample:
    labels = labels_from_mask(gt, spec)
    maps = synth_maps(gt, labels, image_id)
    cams = maps.cams.astype(np.float64)
    rng = np.random.default_rng(zlib.crc32(b"power" + image_id.encode()))
    if setting == "noisy" and len(cams):
        small = rng.random((len(cams), 1, gt.shape[0] // 32 + 2, gt.shape[1] // 32 + 2))
        field = F.interpolate(torch.from_numpy(small), size=gt.shape, mode="bilinear")
        cams = 0.6 * cams + 0.4 * field[:, 0].numpy()
    if setting in ("power", "noisy"):
        cams = cams ** np.exp(rng.uniform(np.log(0.5), np.log(2)))
    cams = cams.astype(np.float32)
    return EvalSample(
        image_id, torch.from_numpy(gt), torch.from_numpy(maps.class_ids), torch.from_numpy(cams)
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", type=Path, required=True)
    parser.add_argument("--split", default="val")
    parser.add_argument("--setting", choices=SETTINGS, action="append")
    args = parser.parse_args()
    torch.set_num_threads(1)
    spec = get_dataset("voc2012")
    local = LocalDataset(spec, args.data_root, args.split)
    ids = local.ids
    print(f"{len(ids)} images; every {STRIDE}th: {len(ids[::STRIDE])}")
    for setting in args.setting or SETTINGS:
        name = f"synthetic maps ({setting})"
        rules = {g: make_rule("bg-threshold", {"threshold": grid}) for g, grid in GRIDS.items()}
        states = {
            g: [SweepState(rule.bucket_shape, len(GRIDS[g]), False) for _ in range(2)]
            for g, rule in rules.items()
        }
        for index, image_id in enumerate(ids):
            sample = _maps(local.read_gt(image_id), image_id, spec, setting)
            for g, rule in rules.items():
                (result,) = reduce_batch([sample], rule, spec)
                states[g][0].add(result)
                if index % STRIDE == 0:
                    states[g][1].add(result)
        for g, grid in GRIDS.items():
            full, strided = (sweep_tables(s, rules[g], spec, "x")[0] for s in states[g])
            print(f"\n{name}, grid {g}")
            for metric in ("miou_zero", "miou"):
                gap = (strided[metric] - full[metric]) * 100
                best_full = full[metric].idxmax()
                best_strided = strided[metric].idxmax()
                print(
                    f"  {metric}: all images best {100 * full[metric][best_full]:.2f} at "
                    f"t={grid[best_full]:g}; every {STRIDE}th best "
                    f"{100 * strided[metric][best_strided]:.2f} at t={grid[best_strided]:g} "
                    f"(all images at that t: {100 * full[metric][best_strided]:.2f}); "
                    f"curve gap max |{gap.abs().max():.2f}|, mean {gap.mean():+.2f} points"
                )


if __name__ == "__main__":
    main()
