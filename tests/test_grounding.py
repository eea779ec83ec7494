"""Grounding DINO boxes with a tiny random model built from transformers' own classes:
boxes, scores and classes against the model called directly and transformers'
post-processing, `wsssbed boxes` and `--boxes grounding-dino` giving the same labels, the
whole seed pipeline on the sample and on real VOC pictures, and bad folders refused."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import run_cli
from foundation_fixtures import (
    save_tiny_grounding_dino,
    save_tiny_models,
)
from PIL import Image

from wsssbed.datasets import get_dataset
from wsssbed.datasets.local import LocalDataset
from wsssbed.errors import InputError
from wsssbed.generators.writer import RECORD
from wsssbed.models.boxes import read_boxes
from wsssbed.models.clip import prompt_name
from wsssbed.models.grounding_dino import load_detector
from wsssbed.models.options import DetectorOptions

VOC = get_dataset("voc2012")
NAMES = list(VOC.foreground_names)
SAM_LOOSE = ("--points-per-side", "4", "--pred-iou-thresh", "-100", "--stability-thresh", "0")


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    found = save_tiny_models(tmp_path_factory.mktemp("models"))
    return {**found, "clip": ("--clip-config", found["clip_config"], "--clip-weights",
                              found["clip"])}  # fmt: skip


def _reference(detector, image: np.ndarray, names: list[str], box_t: float, text_t: float):
    """Boxes, scores and class names by a direct call of the model on the whole prompt
    (transformers' post-processing), each class being the name of the best token above
    the text threshold, found by walking the tokens between the prompt's dots."""
    prompt = " ".join(f"{prompt_name(n)} ." for n in names)
    processor, model = detector.processor, detector.model
    inputs = processor(images=Image.fromarray(image), text=prompt, return_tensors="pt")
    with torch.no_grad():
        outputs = model(**inputs)
    height, width = image.shape[:2]
    (found,) = processor.post_process_grounded_object_detection(
        outputs, inputs["input_ids"], threshold=box_t, text_threshold=text_t,
        target_sizes=[(height, width)],
    )  # fmt: skip
    tokens = processor.tokenizer.convert_ids_to_tokens(inputs["input_ids"][0].tolist())
    owner, current = [], 0
    for token in tokens:
        if token in ("[CLS]", "[SEP]"):
            owner.append(None)
        elif token == ".":
            owner.append(None)
            current += 1
        else:
            owner.append(current)
    probs = outputs.logits[0].sigmoid()
    kept = torch.nonzero(probs.max(-1).values > box_t).flatten().tolist()
    classes = []
    for query in kept:
        best, best_name = -1.0, None
        for position, name in enumerate(owner):
            p = float(probs[query, position])
            if name is not None and p > text_t and p > best:
                best, best_name = p, names[name]
        classes.append(best_name)
    boxes = found["boxes"].numpy().copy()
    boxes[:, 0::2] = boxes[:, 0::2].clip(0, width)
    boxes[:, 1::2] = boxes[:, 1::2].clip(0, height)
    return boxes, found["scores"].numpy(), classes


def _picture(seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).random((90, 130, 3)) * 255).astype(np.uint8)


@pytest.mark.parametrize("thresholds", [(0.35, 0.25), (0.6, 0.5)])
def test_boxes_are_the_models_own_post_processed_boxes(models, thresholds):
    detector = load_detector(models["detector"])
    names = ["cat", "diningtable", "person", "pottedplant"]  # fits one prompt
    image = _picture()
    got = detector.detect(image, names, *thresholds)
    boxes, scores, classes = _reference(detector, image, names, *thresholds)
    assert len(got) == len(scores) > 0
    np.testing.assert_allclose([d.box for d in got], boxes, atol=1e-3)
    np.testing.assert_allclose([d.score for d in got], scores, rtol=1e-6)
    assert [None if d.name is None else names[d.name] for d in got] == classes
    assert any(c is not None for c in classes)


def test_long_prompts_are_split_into_prompts_that_fit(models):
    """The tiny detector reads 32 tokens, so VOC's 20 names take two prompts; each prompt's
    boxes are the direct call's on that prompt, and every name is asked once."""
    detector = load_detector(models["detector"])
    prompts = detector.prompts(NAMES)
    assert len(prompts) == 2
    assert [i for p in prompts for i in p.names] == list(range(20))
    assert " ".join(p.text for p in prompts) == " ".join(f"{prompt_name(n)} ." for n in NAMES)
    for p in prompts:
        assert len(detector.processor.tokenizer(p.text)["input_ids"]) <= 32
    image = _picture(1)
    got = detector.detect(image, NAMES, 0.35, 0.25)
    expected = []
    for p in prompts:
        sub = [NAMES[i] for i in p.names]
        _, scores, classes = _reference(detector, image, sub, 0.35, 0.25)
        expected += list(zip(scores.tolist(), classes))
    assert len(got) == len(expected)
    for detection, (score, name) in zip(got, expected):
        assert detection.score == pytest.approx(score, rel=1e-6)
        assert (None if detection.name is None else NAMES[detection.name]) == name


def test_the_prompt_holds_the_image_labels_or_every_class(models):
    detector = load_detector(models["detector"])
    asked = []
    detector.detect = lambda image, names, *_: asked.append(names) or []
    labels = [VOC.classes.index("dog"), VOC.classes.index("cat")]
    DetectorOptions(models["detector"]).detect(detector, _picture(), labels, VOC)
    DetectorOptions(models["detector"], prompt="all").detect(detector, _picture(), labels, VOC)
    assert asked == [["cat", "dog"], NAMES]


def test_boxes_command_and_pseudo_labels_agree(sample_root, tmp_path, models):
    """`wsssbed boxes` writes the model's boxes; sam-box from that file and from
    `--boxes grounding-dino` writes the same files; the settings are recorded."""
    boxes = tmp_path / "boxes.json"
    result = run_cli("boxes", "--detector-weights", models["detector"], "--out", boxes)
    assert result.exit_code == 0, result.output
    found = json.loads(boxes.read_text())
    dataset = LocalDataset(VOC, sample_root, "train")
    assert sorted(found) == sorted(dataset.ids)
    detector = load_detector(models["detector"])
    for image_id in dataset.ids[:5]:
        image = dataset.read_image(image_id)
        labels = sorted(set(np.unique(dataset.read_gt(image_id)).tolist()) - {0, 255})
        names = [VOC.classes[c] for c in labels]
        ref_boxes, ref_scores, ref_classes = _reference(detector, image, names, 0.35, 0.25)
        named = [i for i, c in enumerate(ref_classes) if c is not None]
        assert [b["label"] for b in found[image_id]] == [ref_classes[i] for i in named]
        np.testing.assert_allclose([b["score"] for b in found[image_id]], ref_scores[named])
        np.testing.assert_allclose([b["box"] for b in found[image_id]],
                                   ref_boxes[named].reshape(-1, 4), atol=1e-3)  # fmt: skip
        assert set(b["label"] for b in found[image_id]) <= set(names)
    assert sum(map(len, found.values())) > 0
    read_boxes(boxes, VOC)  # the file sam-box reads

    sam = ("pseudo-labels", "--generator", "sam-box", "--sam-checkpoint", models["sam"],
           *SAM_LOOSE, "--device", "cpu")  # fmt: skip
    from_file = run_cli(*sam, "--boxes", boxes, "--out", tmp_path / "file")
    detected = run_cli(*sam, "--boxes", "grounding-dino", "--detector-weights",
                       models["detector"], "--out", tmp_path / "detected")  # fmt: skip
    assert from_file.exit_code == 0 and detected.exit_code == 0, detected.output
    for path in sorted((tmp_path / "file").glob("*.png")):
        assert (tmp_path / "detected" / path.name).read_bytes() == path.read_bytes()
    settings = (tmp_path / "detected" / RECORD).read_text()
    for line in (
        'detector = "grounding-dino"',
        "box_threshold = 0.35",
        "text_threshold = 0.25",
        'prompt = "labels"',
        'box_classes = "detector"',
    ):
        assert line in settings  # fmt: skip
    assert "boxes_sha256" in (tmp_path / "file" / RECORD).read_text()


def test_the_whole_seed_pipeline_on_real_voc_pictures(shared_data, tmp_path, models):
    """Detector -> SAM in each box -> CLIP names every box -> CRF, on real pictures; and
    with the detector's own classes, only the image's labels appear."""
    from foundation_fixtures import voc_figures_layout

    figures = shared_data / "voc2012-figures"
    if not figures.is_dir():
        pytest.skip("../shared/data/voc2012-figures is not present")
    ids = voc_figures_layout(figures, tmp_path, 4)
    root = tmp_path / "VOC2012"
    common = ("pseudo-labels", "--generator", "sam-box", "--boxes", "grounding-dino",
              "--detector-weights", models["detector"], "--sam-checkpoint", models["sam"],
              *SAM_LOOSE, "--data-root", tmp_path, "--split", "train",
              "--device", "cpu")  # fmt: skip
    result = run_cli(*common, "--box-classes", "clip", *models["clip"], "--refine", "crf",
                     "--out", tmp_path / "seeds")  # fmt: skip
    assert result.exit_code == 0, result.output
    own = run_cli(*common, "--out", tmp_path / "own")
    assert own.exit_code == 0, own.output
    some_foreground = False
    for image_id in ids:
        gt = np.array(Image.open(root / "SegmentationClass" / f"{image_id}.png"))
        seeds = np.array(Image.open(tmp_path / "seeds" / f"{image_id}.png"))
        assert seeds.shape == gt.shape
        labels = np.array(Image.open(tmp_path / "own" / f"{image_id}.png"))
        allowed = set(np.unique(gt).tolist()) | {0}
        assert set(np.unique(labels).tolist()) <= allowed
        some_foreground |= bool((labels > 0).any())
    assert some_foreground
    record = (tmp_path / "seeds" / RECORD).read_text()
    assert 'box_classes = "clip"' in record and "crf" in record


def _refused(result, *phrases):
    assert result.exit_code == 2, result.output
    for phrase in phrases:
        assert phrase in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_bad_detector_folders_are_refused_before_any_work(sample_root, tmp_path, models):
    out = tmp_path / "boxes.json"

    def boxes(folder):
        return run_cli("boxes", "--detector-weights", folder, "--out", out)

    _refused(run_cli("boxes", "--out", out), "--detector-weights")
    _refused(boxes(tmp_path / "nothing"), "no config.json")
    other = tmp_path / "other"
    shutil.copytree(models["detector"], other)
    config = json.loads((other / "config.json").read_text())
    (other / "config.json").write_text(json.dumps({**config, "model_type": "owlv2"}))
    _refused(boxes(other), "weights of another model", "owlv2")
    for missing, phrase in (
        ("processor_config.json", "image processor"),
        ("tokenizer.json", "tokenizer"),
        ("model.safetensors", "pickles"),
    ):
        broken = tmp_path / f"without-{missing}"
        shutil.copytree(models["detector"], broken)
        (broken / missing).unlink()
        _refused(boxes(broken), missing, phrase)  # fmt: skip
    torn = tmp_path / "torn"
    shutil.copytree(models["detector"], torn)
    (torn / "model.safetensors").write_bytes(b"\x10" + b"\x00" * 20)
    _refused(boxes(torn), "cannot load the Grounding DINO weights")
    _refused(run_cli("boxes", "--detector-weights", models["detector"], "--prompt", "some",
                     "--out", out), "--prompt")  # fmt: skip
    _refused(run_cli("boxes", "--detector-weights", models["detector"], "--box-threshold",
                     "1.5", "--out", out), "--box-threshold")  # fmt: skip
    _refused(run_cli("pseudo-labels", "--generator", "sam-box", "--boxes", "grounding-dino",
                     "--detector-weights", models["detector"], "--box-classes", "clip",
                     "--sam-checkpoint", models["sam"], "--out", tmp_path / "l"),
             "--box-classes clip needs --clip-weights")  # fmt: skip
    assert not out.exists() and not (tmp_path / "l").exists()


def test_class_names_the_detector_cannot_read_are_refused(tmp_path, models):
    """A name the tokenizer does not know, and a name too long for the text encoder
    (which would be cut), are refused before any picture, naming the class."""
    detector = load_detector(models["detector"])
    with pytest.raises(InputError, match="'wall' is unknown to the detector's tokenizer"):
        detector.check_names(["cat", "wall"])
    short = load_detector(save_tiny_grounding_dino(tmp_path / "short", max_text_len=4))
    short.check_names(["cat", "dog"])  # [CLS] cat . [SEP]
    with pytest.raises(InputError, match=r"'diningtable' is 5 tokens.*at most 4"):
        short.check_names(NAMES)


def test_a_short_text_encoder_through_the_cli(sample_root, tmp_path):
    folder = save_tiny_grounding_dino(tmp_path / "short", max_text_len=4)
    out = tmp_path / "boxes.json"
    _refused(run_cli("boxes", "--detector-weights", folder, "--out", out),
             "'diningtable' is 5 tokens", "would be cut")  # fmt: skip
    assert not out.exists()
