"""Foundation-model generators with tiny random SAM and CLIP models: the rules against
pixel loops, Grad-CAM against a hand-built forward pass, every generator end to end on
the sample and on real VOC pictures, and bad checkpoints / boxes refused before work."""

from __future__ import annotations

import json
import pickle
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import run_cli
from foundation_fixtures import (
    TINY_CLIP,
    TINY_SAM,
    save_tiny_clip,
    save_tiny_sam,
    voc_figures_layout,
)
from PIL import Image

from wsssbed.activation import read_activation
from wsssbed.datasets import get_dataset
from wsssbed.datasets.local import LocalDataset
from wsssbed.errors import InputError
from wsssbed.generators.base import make_generator
from wsssbed.generators.sam_box import paint_boxes
from wsssbed.generators.sam_clip import STUFF_NAMES, masked_crop, saliency_from_masks
from wsssbed.generators.sam_refine import refine_with_masks
from wsssbed.generators.writer import RECORD
from wsssbed.models.boxes import Box, component_boxes, read_boxes
from wsssbed.models.clip import load_clip
from wsssbed.models.sam import SamArchitecture, build_sam, infer_architecture, load_sam
from wsssbed.models.sam_masks import MaskSettings, automatic_masks
from wsssbed.saliency.maps import read_saliency_u8

VOC = get_dataset("voc2012")
FOREGROUND = VOC.classes[1:]
# loose filters, so a random SAM still proposes masks
LOOSE = ("--points-per-side", "4", "--pred-iou-thresh", "-100", "--stability-thresh", "0")
LOOSE_SETTINGS = MaskSettings(4, -100.0, 0.0)


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("models")
    config, weights = save_tiny_clip(folder)
    return {"sam": save_tiny_sam(folder), "clip_config": config, "clip_weights": weights}


def _clip_args(models):
    return ("--clip-config", models["clip_config"], "--clip-weights", models["clip_weights"])


# ------------------------------------------------------------------------ the rules


def _refine_by_pixel(labels, masks, num_classes):
    """Each pixel: the majority class of the last mask covering it that has any vote."""
    out = labels.copy()
    majorities = []
    for mask in masks:
        votes = [int(np.sum(labels[mask] == c)) for c in range(num_classes)]
        majorities.append(None if max(votes) == 0 else votes.index(max(votes)))
    for y in range(labels.shape[0]):
        for x in range(labels.shape[1]):
            for mask, majority in zip(masks, majorities):
                if mask[y, x] and majority is not None:
                    out[y, x] = majority
    return out


@pytest.mark.parametrize("seed", range(5))
def test_sam_refinement_is_the_majority_vote_of_each_mask(seed):
    rng = np.random.default_rng(seed)
    labels = rng.choice([0, 3, 7, 255], size=(13, 17)).astype(np.uint8)
    masks = [rng.random((13, 17)) < p for p in (0.7, 0.4, 0.1)]
    masks.append(labels == 255)  # a mask with no vote keeps the CAM label
    got = refine_with_masks(labels, masks, 21)
    assert np.array_equal(got, _refine_by_pixel(labels, masks, 21))


@pytest.mark.parametrize("seed", range(5))
def test_overlapping_boxes_go_to_the_higher_score(seed):
    rng = np.random.default_rng(seed)
    masks = rng.random((4, 9, 11)) < 0.4
    classes = [int(c) for c in rng.integers(1, 21, 4)]
    scores = [float(s) for s in rng.choice([0.2, 0.5, 0.9], 4)]
    got = paint_boxes(masks, classes, scores, fill=0)
    for y in range(9):
        for x in range(11):
            covering = [i for i in range(4) if masks[i, y, x]]
            best = max(covering, key=lambda i: (scores[i], -i)) if covering else None
            assert got[y, x] == (0 if best is None else classes[best])


def test_component_boxes_cover_each_region_of_each_class():
    labels = np.zeros((20, 30), dtype=np.uint8)
    labels[2:6, 3:9] = 5  # one region
    labels[10:18, 20:29] = 5  # another region of the same class
    labels[12:14, 2:4] = 8  # 4 pixels: below min_pixels
    labels[7, 10] = 5  # a single pixel touching nothing
    cams = np.zeros((2, 20, 30), dtype=np.float32)
    cams[0, 2:6, 3:9] = 0.5
    cams[0, 10:18, 20:29] = 1.0
    boxes = component_boxes(labels, np.array([5, 8]), cams, min_pixels=5)
    assert boxes == [Box(3, 2, 9, 6, 5, 0.5), Box(20, 10, 29, 18, 5, 1.0)]


def test_saliency_is_the_best_objectness_covering_each_pixel():
    masks = [np.zeros((4, 5), bool) for _ in range(2)]
    masks[0][:2] = True
    masks[1][1:3, 1:4] = True
    got = saliency_from_masks(masks, np.array([0.5, 0.8]), (4, 5))
    expected = np.zeros((4, 5))
    expected[:2] = 0.5
    expected[1:3, 1:4] = 0.8
    assert np.array_equal(got, np.rint(expected * 255).astype(np.uint8))
    image = np.arange(4 * 5 * 3, dtype=np.uint8).reshape(4, 5, 3)
    crop = masked_crop(image, masks[1])
    assert crop.shape == (2, 3, 3)
    assert np.array_equal(crop[masks[1][1:3, 1:4]], image[masks[1]])


# ------------------------------------------------------------------------ models


def test_sam_architecture_is_read_off_a_vit_b_checkpoint():
    from segment_anything import sam_model_registry

    reference = sam_model_registry["vit_b"]().state_dict()
    arch = infer_architecture(reference, Path("sam_vit_b.pth"))
    assert arch.model_type == "vit_b"
    assert (arch.num_heads, arch.global_attn_indexes, arch.window_size) == (12, (2, 5, 8, 11), 14)
    rebuilt = build_sam(arch).state_dict()
    assert {k: v.shape for k, v in rebuilt.items()} == {k: v.shape for k, v in reference.items()}


def test_a_tiny_sam_round_trips_through_its_checkpoint(models):
    sam = load_sam(models["sam"])
    assert infer_architecture(sam.state_dict(), models["sam"]) == SamArchitecture(**TINY_SAM)
    saved = torch.load(models["sam"], weights_only=True)
    assert all(torch.equal(saved[k], v) for k, v in sam.state_dict().items())


def test_grad_cam_equals_a_hand_built_forward_pass(models):
    """Recompute CLIP-ES Grad-CAM by running the ViT's blocks by hand."""
    clip = load_clip(None, models["clip_weights"], models["clip_config"])
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (40, 56, 3), dtype=np.uint8)
    names = ("dog", "cat", "bus")
    got = clip.grad_cam(image, names, [0, 2])

    visual = clip.model.visual
    with torch.no_grad():
        x = visual._embeds(clip._pixels(image))
        for block in visual.transformer.resblocks[:-1]:
            x = block(x)
    x = x.detach().requires_grad_(True)
    pooled, _ = visual._pool(visual.transformer.resblocks[-1](x))
    features = torch.nn.functional.normalize(pooled @ visual.proj, dim=-1)
    probs = (clip.model.logit_scale.exp() * features @ clip.text_features(names).T).softmax(-1)
    for row, target in enumerate([0, 2]):
        (grad,) = torch.autograd.grad(probs[0, target], x, retain_graph=True)
        cam = torch.relu(x[0, 1:].detach() @ grad[0, 1:].mean(0)).view(1, 1, 4, 4)
        cam = torch.nn.functional.interpolate(cam, size=(40, 56), mode="bilinear")[0, 0]
        cam = cam / cam.max()
        assert np.allclose(got[row], cam.numpy(), atol=1e-5)
    assert got.shape == (2, 40, 56) and got.max() == pytest.approx(1.0)


def test_clip_zero_shot_probabilities_sum_to_one(models):
    clip = load_clip(None, models["clip_weights"], models["clip_config"])
    rng = np.random.default_rng(1)
    crops = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in ((9, 30), (50, 12))]
    probs = clip.classify(crops, FOREGROUND)
    assert probs.shape == (2, 20) and np.allclose(probs.sum(1), 1.0, atol=1e-5)
    assert np.allclose(probs[1], clip.classify([crops[1]], FOREGROUND)[0], atol=1e-6)


# ------------------------------------------------------------------------ end to end


def test_sam_refine_end_to_end_is_the_rule_on_sams_masks(sample_root, tmp_path, models):
    out = tmp_path / "refine"
    args = ("pseudo-labels", "--generator", "sam-refine", "--threshold", "0.25",
            "--sam-checkpoint", models["sam"], *LOOSE, "--out", out, "--device", "cpu")  # fmt: skip
    result = run_cli(*args)
    assert result.exit_code == 0, result.output
    dataset = LocalDataset(VOC, sample_root, "train")
    assert sorted(p.stem for p in out.glob("*.png")) == sorted(dataset.ids)
    record = (out / RECORD).read_text()
    assert 'generator = "sam-refine"' in record and "complete = true" in record

    from wsssbed.generators.writer import GenerationJob

    base = make_generator("bg-threshold", threshold=0.25)
    job = GenerationJob(dataset, base, out, sample_root / "activation/sample-cam/irn-npy")
    changed = 0
    sam = load_sam(models["sam"])
    for image_id in dataset.ids[:6]:
        sample = job.inputs().load(image_id)
        cam_label = base.produce(sample, VOC)
        masks = automatic_masks(sam, dataset.read_image(image_id), LOOSE_SETTINGS)
        expected = refine_with_masks(cam_label, [m for m, _ in masks], 21)
        assert np.array_equal(np.array(Image.open(out / f"{image_id}.png")), expected)
        changed += int((expected != cam_label).sum())
    assert changed > 0  # SAM's masks did move labels
    again = run_cli(*args)
    assert again.exit_code == 0 and "0 written, 48 already there" in again.output


def test_sam_box_uses_the_labels_and_asks_clip_for_unlabelled_boxes(sample_root, tmp_path,
                                                                    models):  # fmt: skip
    dataset = LocalDataset(VOC, sample_root, "val")
    boxes = {}
    for n, image_id in enumerate(dataset.ids):
        gt = dataset.read_gt(image_id)
        entries = []
        for c in np.unique(gt[(gt > 0) & (gt < 255)]).tolist():
            ys, xs = np.nonzero(gt == c)
            box = [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1]
            label = None if n % 3 == 0 else VOC.classes[c]  # every third image: ask CLIP
            entries.append({"box": box, "label": label, "score": float(c) / 20})
        boxes[image_id] = entries
    box_file = tmp_path / "boxes.json"
    box_file.write_text(json.dumps(boxes))
    out = tmp_path / "box"
    result = run_cli("pseudo-labels", "--generator", "sam-box", "--boxes", box_file,
                     "--sam-checkpoint", models["sam"], *_clip_args(models), "--split", "val",
                     "--out", out, "--device", "cpu")  # fmt: skip
    assert result.exit_code == 0, result.output
    painted = 0
    for n, image_id in enumerate(dataset.ids):
        labels = np.array(Image.open(out / f"{image_id}.png"))
        allowed = {0} | {VOC.classes.index(e["label"]) for e in boxes[image_id] if e["label"]}
        if n % 3 == 0:
            allowed |= set(range(21))
        assert set(np.unique(labels).tolist()) <= allowed
        painted += int((labels > 0).sum())
    assert painted > 0


def test_sam_box_from_cam_regions_keeps_the_cam_classes(sample_root, tmp_path, models):
    out = tmp_path / "cam-boxes"
    result = run_cli("pseudo-labels", "--generator", "sam-box", "--threshold", "0.3",
                     "--sam-checkpoint", models["sam"], "--out", out,
                     "--device", "cpu")  # fmt: skip
    assert result.exit_code == 0, result.output
    dataset = LocalDataset(VOC, sample_root, "train")
    for image_id in dataset.ids[:8]:
        labels = np.array(Image.open(out / f"{image_id}.png"))
        gt_classes = set(np.unique(dataset.read_gt(image_id)).tolist()) - {255}
        assert set(np.unique(labels).tolist()) <= gt_classes | {0}  # CAM classes only


def test_clip_activations_are_npz_maps_the_sweep_scores(sample_root, tmp_path, models):
    out = tmp_path / "clip-cam"
    result = run_cli("clip-activations", *_clip_args(models), "--out", out, "--device", "cpu")
    assert result.exit_code == 0, result.output
    dataset = LocalDataset(VOC, sample_root, "train")
    clip = load_clip(None, models["clip_weights"], models["clip_config"])
    for image_id in dataset.ids[:5]:
        maps = read_activation(out, image_id, "npz", VOC)
        labels = sorted(set(np.unique(dataset.read_gt(image_id)).tolist()) - {0, 255})
        assert maps.class_ids.tolist() == labels
        expected = clip.grad_cam(dataset.read_image(image_id), FOREGROUND,
                                 [c - 1 for c in labels])  # fmt: skip
        assert np.allclose(maps.cams, expected, atol=1e-6)
    swept = run_cli("sweep", "--activation", out, "--activation-format", "npz",
                    "--out", tmp_path / "results", "--json", "--device", "cpu")  # fmt: skip
    assert swept.exit_code == 0, swept.output
    assert 0.0 < json.loads(swept.stdout)["best"]["miou"] < 1.0


def test_sam_clip_saliency_pairs_with_the_saliency_rule(sample_root, tmp_path, models):
    out = tmp_path / "sal"
    result = run_cli("saliency", "--sam-checkpoint", models["sam"], *LOOSE, *_clip_args(models),
                     "--out", out, "--device", "cpu")  # fmt: skip
    assert result.exit_code == 0, result.output
    dataset = LocalDataset(VOC, sample_root, "train")
    sam = load_sam(models["sam"])
    clip = load_clip(None, models["clip_weights"], models["clip_config"])
    image_id = dataset.ids[2]
    image = dataset.read_image(image_id)
    masks = [m for m, _ in automatic_masks(sam, image, LOOSE_SETTINGS)]
    probs = clip.classify([masked_crop(image, m) for m in masks], FOREGROUND + STUFF_NAMES)
    expected = saliency_from_masks(masks, probs[:, :20].sum(1), image.shape[:2])
    assert np.array_equal(read_saliency_u8(out, image_id), expected)
    assert expected.max() > 0
    swept = run_cli("sweep", "--generator", "saliency-rule", "--saliency", out,
                    "--out", tmp_path / "results", "--device", "cpu")  # fmt: skip
    assert swept.exit_code == 0, swept.output


# ------------------------------------------------------------------------ bad input


def _refused(result, *phrases):
    assert result.exit_code == 2, result.output
    for phrase in phrases:
        assert phrase in result.stderr, result.stderr


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_bad_checkpoints_are_refused_before_any_work(sample_root, tmp_path, models):
    out = tmp_path / "labels"
    common = ("pseudo-labels", "--generator", "sam-refine", "--threshold", "0.25",
              "--out", out, "--device", "cpu")  # fmt: skip
    _refused(run_cli(*common), "--sam-checkpoint")
    _refused(run_cli(*common, "--sam-checkpoint", tmp_path / "nope.pth"), "nope.pth", "not found")
    _refused(run_cli(*common, "--sam-checkpoint", models["sam"], "--sam-model", "vit_b"),
             "tiny_sam.pth", "not the vit_b")  # fmt: skip
    _refused(run_cli(*common, "--sam-checkpoint", models["clip_weights"]),
             "not a Segment Anything checkpoint")  # fmt: skip
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pth"
    evil.write_bytes(pickle.dumps(_Evil(str(marker))))
    _refused(run_cli(*common, "--sam-checkpoint", evil), "evil.pth", "cannot read")
    assert not marker.exists()  # the pickle's code never ran
    wider = tmp_path / "wsssbed-wider-vit.json"
    wider.write_text(json.dumps({**TINY_CLIP, "embed_dim": 48}))
    _refused(run_cli("clip-activations", "--clip-config", wider, "--clip-weights",
                     models["clip_weights"], "--out", out), "does not fit")  # fmt: skip
    _refused(run_cli("clip-activations", "--clip-model", "ViT-B-16", "--clip-weights",
                     models["clip_weights"], "--out", out), "does not fit")  # fmt: skip
    _refused(run_cli("clip-activations", "--clip-model", "no-such-vit", "--clip-weights",
                     models["clip_weights"], "--out", out),
             "not an open_clip architecture")  # fmt: skip
    assert not out.exists()


class _Evil:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (Path.touch, (Path(self.path),))


def test_bad_boxes_are_refused_before_any_work(sample_root, tmp_path, models):
    dataset = LocalDataset(VOC, sample_root, "train")
    first = dataset.ids[0]
    width = dataset.read_gt(first).shape[1]
    out = tmp_path / "labels"

    def run(entries):
        path = tmp_path / "boxes.json"
        path.write_text(json.dumps({first: entries}))
        return run_cli("pseudo-labels", "--generator", "sam-box", "--boxes", path,
                       "--sam-checkpoint", models["sam"], "--out", out)  # fmt: skip

    _refused(run([{"box": [0, 0, width + 5, 10], "label": "dog"}]), "outside", first)
    _refused(run([{"box": [0, 0, 10, 10], "label": "unicorn"}]), "'unicorn'", "voc2012 class")
    _refused(run([{"box": [5, 5, 5, 10], "label": "dog"}]), "empty box")
    _refused(run([{"box": [0, 0, 10], "label": "dog"}]), "four finite numbers")
    _refused(run([{"box": [0, 0, 10, 10]}]), "no label", "--clip-weights")
    assert not out.exists()
    with pytest.raises(InputError, match="not a valid JSON box file"):
        bad = tmp_path / "bad.json"
        bad.write_text("{")
        read_boxes(bad, VOC)


# ------------------------------------------------------------------------ real pictures


def test_every_generator_runs_on_real_voc_pictures(shared_data, tmp_path, models):
    """The 22 real VOC pictures (colour-coded ground truth mapped back to class ids)."""
    figures = shared_data / "voc2012-figures"
    if not figures.is_dir():
        pytest.skip("../shared/data/voc2012-figures is not present")
    ids = voc_figures_layout(figures, tmp_path, 4)
    root = tmp_path / "VOC2012"
    common = ("--data-root", tmp_path, "--split", "train", "--device", "cpu")
    cams = tmp_path / "cams"
    assert run_cli("clip-activations", *_clip_args(models), *common, "--out", cams).exit_code == 0
    sal = tmp_path / "sal"
    result = run_cli("saliency", "--sam-checkpoint", models["sam"], *LOOSE, *_clip_args(models),
                     *common, "--out", sal)  # fmt: skip
    assert result.exit_code == 0, result.output
    for generator in ("sam-refine", "sam-box"):
        out = tmp_path / generator
        result = run_cli("pseudo-labels", "--generator", generator, "--threshold", "0.3",
                         "--activation", cams, "--activation-format", "npz",
                         "--sam-checkpoint", models["sam"], *LOOSE, *common,
                         "--out", out)  # fmt: skip
        assert result.exit_code == 0, result.output
        for image_id in ids:
            picture = Image.open(root / "JPEGImages" / f"{image_id}.jpg")
            assert Image.open(out / f"{image_id}.png").size == picture.size
    assert all(read_saliency_u8(sal, i).shape[::-1] == Image.open(figures / f"{i}.png").size
               for i in ids)  # fmt: skip


def test_a_missing_optional_package_names_the_extra(sample_root, tmp_path, models, monkeypatch):
    monkeypatch.setitem(sys.modules, "segment_anything", None)  # import fails
    result = run_cli("pseudo-labels", "--generator", "sam-refine", "--threshold", "0.25",
                     "--sam-checkpoint", models["sam"], "--out", tmp_path / "out")  # fmt: skip
    _refused(result, "segment_anything is not installed", "wsssbed[sam]")  # no rich markup
    monkeypatch.setitem(sys.modules, "open_clip", None)
    result = run_cli("clip-activations", *_clip_args(models), "--out", tmp_path / "out")
    _refused(result, "open_clip is not installed", "wsssbed[clip]")
    assert not (tmp_path / "out").exists()
