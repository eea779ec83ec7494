"""SAM's automatic masks: the fast path against segment-anything's generator called directly,
on a tiny random SAM whose outputs are calibrated so the filters keep some masks and drop
others, on the sample's real pictures."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from conftest import run_cli
from foundation_fixtures import calibrate_sam, save_tiny_sam

from wsssbed.datasets import get_dataset
from wsssbed.datasets.local import LocalDataset
from wsssbed.errors import InputError
from wsssbed.models.sam import load_sam
from wsssbed.models.sam_masks import (
    MaskSettings,
    Upsampler,
    automatic_masks,
    candidate_masks,
    decode_points,
)

VOC = get_dataset("voc2012")


@pytest.fixture(scope="module")
def sam(tmp_path_factory):
    path = save_tiny_sam(tmp_path_factory.mktemp("sam"))
    return calibrate_sam(load_sam(path), logit_scale=200.0, iou_shift=1.15)


@pytest.fixture(scope="module")
def pictures(sample_root) -> list[np.ndarray]:
    dataset = LocalDataset(VOC, sample_root, "train")
    return [dataset.read_image(image_id) for image_id in dataset.ids[:4]]


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


@pytest.mark.parametrize("size", [(375, 500), (500, 375), (333, 499), (7, 3), (256, 256)])
def test_upsampler_equals_segment_anythings_postprocess_masks(sam, size):
    torch.manual_seed(0)
    low = sam.prompt_encoder.mask_input_size
    logits = torch.randn(6, 1, *low) * 10
    square = sam.image_encoder.img_size
    scale = square / max(size)
    resized = (int(size[0] * scale + 0.5), int(size[1] * scale + 0.5))
    expected = sam.postprocess_masks(logits, resized, size)[:, 0]
    got = Upsampler(sam, resized, size)(logits[:, 0])
    assert got.shape == expected.shape == (6, *size)
    tolerance = 1e-5 * float(expected.abs().max())  # float32 rounding of 256-term sums
    assert torch.allclose(got, expected, rtol=0, atol=tolerance)
    assert not torch.allclose(got, expected.roll(1, dims=-1), rtol=0, atol=tolerance)


def test_decode_points_is_segment_anythings_mask_decoder(sam):
    torch.manual_seed(1)
    encoder = sam.prompt_encoder
    image = torch.randn(1, encoder.embed_dim, *encoder.image_embedding_size)
    points = torch.rand(9, 1, 2) * sam.image_encoder.img_size
    sparse, dense = encoder(points=(points, torch.ones(9, 1, dtype=torch.int)), boxes=None,
                            masks=None)  # fmt: skip
    with torch.no_grad():
        expected = sam.mask_decoder(image, encoder.get_dense_pe(), sparse, dense, True)
        got = decode_points(sam.mask_decoder, image, encoder.get_dense_pe(), sparse, dense[:1])
    assert got[0].shape == expected[0].shape == (9, 3, *encoder.mask_input_size)
    assert torch.equal(got[0], expected[0]) and torch.equal(got[1], expected[1])
    assert not torch.equal(got[0][0], got[0][1])  # the prompts gave different masks


def _reference_candidates(sam, image, settings):
    """segment-anything's own per-batch step (filters, boxes, run-length encoding), decoded."""
    from segment_anything import SamAutomaticMaskGenerator
    from segment_anything.utils.amg import batch_iterator, rle_to_mask

    height, width = image.shape[:2]
    generator = SamAutomaticMaskGenerator(
        sam, points_per_side=settings.points_per_side,
        pred_iou_thresh=settings.pred_iou_thresh,
        stability_score_thresh=settings.stability_thresh,
    )  # fmt: skip
    generator.predictor.set_image(image)
    points = generator.point_grids[0] * np.array([[width, height]])
    masks, scores = [], []
    for (batch,) in batch_iterator(64, points):
        data = generator._process_batch(batch, (height, width), [0, 0, width, height],
                                        (height, width))  # fmt: skip
        masks += [rle_to_mask(rle) for rle in data["rles"]]
        scores += data["iou_preds"].tolist()
    return masks, scores


@pytest.mark.parametrize("thresholds", [(0.95, 0.6), (0.9, 0.7), (0.0, 0.0)])
def test_candidates_are_segment_anythings_before_suppression(sam, pictures, thresholds):
    settings = MaskSettings(8, *thresholds, precision="fp32")
    kept = identical = 0
    for image in pictures:
        expected, expected_scores = _reference_candidates(sam, image, settings)
        found = list(candidate_masks(sam, image, settings))
        masks = [m for batch, _ in found for m in batch.numpy()]
        scores = [s for _, batch in found for s in batch.tolist()]
        assert scores == expected_scores  # the same decoder calls, so the same floats
        assert len(masks) == len(expected)
        for got, want in zip(masks, expected):
            assert _iou(got, want) >= 0.99
            identical += np.array_equal(got, want)
        kept += len(masks)
    if thresholds != (0.0, 0.0):  # the filters kept some and dropped some
        assert 0 < kept < 4 * 3 * 64
    assert identical >= 0.9 * kept


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_fast_masks_match_the_exact_generator(sam, pictures, precision):
    compared = 0
    for image in pictures:
        for thresholds in [(0.95, 0.6), (0.9, 0.7)]:
            exact = automatic_masks(sam, image, MaskSettings(16, *thresholds, path="exact"))
            fast = automatic_masks(sam, image, MaskSettings(16, *thresholds, precision=precision))
            assert len(fast) == len(exact)
            for (got, got_score), (want, want_score) in zip(fast, exact):
                assert _iou(got, want) >= 0.99
                assert got_score == pytest.approx(want_score, abs=1e-6 if precision == "fp32"
                                                  else 5e-3)  # fmt: skip
            compared += len(exact)
    assert compared > len(pictures)  # more than one mask per picture on average


def test_fast_masks_match_the_exact_generator_on_full_size_voc_pictures(sam, shared_data):
    figures = shared_data / "voc2012-figures"
    if not figures.is_dir():
        pytest.skip("no voc2012-figures in ../shared/data")
    from PIL import Image

    names = sorted(p for p in figures.glob("*.png") if not p.stem.endswith(("_gt", "_pred")))
    compared = 0
    for path in names[:4]:
        image = np.array(Image.open(path).convert("RGB"))
        exact = automatic_masks(sam, image, MaskSettings(8, 0.8, 0.6, path="exact"))
        fast = automatic_masks(sam, image, MaskSettings(8, 0.8, 0.6))
        assert len(fast) == len(exact), path.name
        assert all(_iou(a, b) >= 0.99 for (a, _), (b, _) in zip(fast, exact)), path.name
        compared += len(exact)
    assert compared > 0


def test_the_decoder_batch_does_not_change_the_masks(sam, pictures):
    settings = MaskSettings(8, 0.9, 0.7, precision="fp32")
    for image in pictures[:2]:
        whole = automatic_masks(sam, image, settings)
        split = automatic_masks(sam, image, MaskSettings(8, 0.9, 0.7, precision="fp32",
                                                         points_per_batch=7))  # fmt: skip
        assert len(whole) == len(split) > 0
        for (a, score_a), (b, score_b) in zip(whole, split):
            assert _iou(a, b) >= 0.99 and score_a == pytest.approx(score_b, abs=1e-6)


@pytest.mark.parametrize(
    ("kwargs", "phrase"),
    [
        ({"path": "quick"}, "--sam-masks 'quick'"),
        ({"precision": "fp16"}, "--sam-precision 'fp16'"),
        ({"path": "exact", "precision": "bf16"}, "goes with --sam-masks fast"),
        ({"points_per_side": 0}, "--points-per-side"),
        ({"points_per_batch": 0}, "--points-per-batch"),
    ],
)
def test_bad_mask_settings_are_refused(kwargs, phrase):
    with pytest.raises(InputError, match=re.escape(phrase)):
        MaskSettings(**kwargs)


def test_the_cli_records_the_mask_path_and_refuses_bad_ones(sample_root, tmp_path):
    weights = save_tiny_sam(tmp_path)
    common = ("pseudo-labels", "--generator", "sam-refine", "--threshold", "0.25",
              "--sam-checkpoint", weights, "--points-per-side", "4", "--pred-iou-thresh", "-1",
              "--stability-thresh", "0", "--device", "cpu")  # fmt: skip
    out = tmp_path / "exact"
    result = run_cli(*common, "--sam-masks", "exact", "--out", out)
    assert result.exit_code == 0, result.output
    record = (out / "wsssbed.toml").read_text()
    assert 'sam_masks = "exact"' in record and 'sam_precision = "auto"' in record
    for bad, phrase in [
        (("--sam-masks", "quick"), "use one of fast, exact"),
        (("--sam-masks", "exact", "--sam-precision", "bf16"), "goes with"),
    ]:
        refused = run_cli(*common, *bad, "--out", tmp_path / "bad")
        assert refused.exit_code == 2 and phrase in refused.output, refused.output
        assert "Traceback" not in refused.output
        assert not (tmp_path / "bad").exists()
