"""The embedded sample: deterministic, VOC-layout, and showing the failure modes."""

from __future__ import annotations

import hashlib

import numpy as np

from wsssbed.embedded.sample import BOAT, CAT, DOG, SHEEP, TRAIN, render_sample, render_scene


def _digest(folder):
    sha = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        sha.update(path.relative_to(folder).as_posix().encode())
        sha.update(path.read_bytes())
    return sha.hexdigest()


def test_render_is_deterministic(tmp_path):
    render_sample(tmp_path / "a")
    render_sample(tmp_path / "b")
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")


def test_layout_has_every_format(sample_root):
    voc = sample_root / "VOC2012"
    assert len((voc / "ImageSets/Segmentation/train.txt").read_text().split()) == 48
    assert len(list((voc / "SegmentationClass").glob("*.png"))) == 72
    for fmt, pattern in (("irn-npy", "*.npy"), ("npz", "*.npz"), ("png-per-class", "*_*.png")):
        assert len(list((sample_root / "activation/sample-cam" / fmt).glob(pattern))) >= 72
    assert len(list((sample_root / "saliency/sample-sal").glob("*.png"))) == 72


def test_failure_modes_are_present():
    boat = render_scene(0)
    water = (boat.gt == 0) & (np.arange(boat.gt.shape[0])[:, None] > 80)
    assert boat.cams[BOAT][water].max() > 0.3  # spills onto the water
    train = render_scene(1)
    assert train.cams[TRAIN][train.gt == 0].max() > 0.3  # spills onto the rails
    sheep = render_scene(5)
    covered = (sheep.cams[SHEEP] > 0.5)[sheep.gt == SHEEP].mean()
    assert covered < 0.3  # only the most discriminative part
    pets = render_scene(3)
    assert pets.cams[CAT][pets.gt == DOG].max() > 0.4  # cat activation on the dog
    assert pets.cams[DOG][pets.gt == CAT].max() > 0.3
    mast = (boat.gt == BOAT) & (np.arange(boat.gt.shape[0])[:, None] < 50)
    assert boat.saliency[mast].mean() < 128  # saliency misses the thin mast
    assert train.saliency[train.gt == 0].max() > 100  # and fires on the rails
