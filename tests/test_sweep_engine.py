"""The single-pass engine against naive per-threshold evaluation (tests/reference.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import random_image
from reference import (
    boundary_of,
    confusion,
    image_bf,
    irn_labels,
    metrics,
    psa_labels,
    wsss_bed_labels,
)
from scipy import ndimage

from wsssbed.datasets import get_dataset
from wsssbed.eval import EvalSample, Tolerance, accumulate, class_counts, make_rule
from wsssbed.eval.boundary import disk_offsets
from wsssbed.eval.rules import HardLabels, label_map
from wsssbed.eval.summary import summary_metrics
from wsssbed.eval.tables import sweep_tables

VOC = get_dataset("voc2012")
ADE = get_dataset("ade20k")


def _samples(images):
    for index, (gt, keys, cams, sal) in enumerate(images):
        yield EvalSample(
            f"img{index}",
            torch.from_numpy(gt),
            torch.from_numpy(keys),
            torch.from_numpy(cams),
            torch.from_numpy(sal.astype(np.float32) / np.float32(255.0)),
        )


def _images(seed, spec, count=12, **kwargs):
    rng = np.random.default_rng(seed)
    images = [
        random_image(rng, spec.num_classes, spec.has_background, **kwargs) for _ in range(count)
    ]
    height, width = images[0][0].shape
    images.append((np.full((height, width), 255, np.uint8), *images[0][1:]))  # all void
    return images


def _engine_confusions(images, rule, spec):
    state = accumulate(_samples(images), rule, spec)
    counts = class_counts(state.pairs.result(), rule, spec.num_classes, spec.has_background)
    return counts, state


def _assert_counts_equal(counts, point, expected):
    k = expected.shape[0]
    assert np.array_equal(counts.tp[point], np.diag(expected[:, :k]))
    assert np.array_equal(counts.pred[point], expected[:, :k].sum(0))
    assert np.array_equal(counts.gt, expected.sum(1))
    assert np.array_equal(counts.unlabelled[point], expected[:, k])


@pytest.mark.parametrize("spec", [VOC, ADE], ids=["with-background", "no-background"])
@pytest.mark.parametrize(
    "thresholds",
    [[0.0, 0.05, 0.3, 0.5, 1.0], [0.55, 0.1, 0.95, 0.25, 0.0, 0.7]],
    ids=["sorted", "any-order"],
)
def test_bg_threshold_matches_irn_loop(spec, thresholds):
    images = _images(1, spec)
    rule = make_rule("bg-threshold", {"threshold": thresholds})
    counts, _ = _engine_confusions(images, rule, spec)
    engine_metrics = summary_metrics(counts)
    for point, t in enumerate(thresholds):
        expected = sum(
            confusion(
                gt,
                irn_labels(keys, cams, np.float32(t), spec.has_background, gt.shape),
                spec.num_classes,
            )
            for gt, keys, cams, _ in images
        )
        _assert_counts_equal(counts, point, expected)
        for name, value in metrics(expected).items():
            assert engine_metrics[name][point] == pytest.approx(value, nan_ok=True), name


def test_ties_at_threshold_go_to_background():
    gt = np.array([[1, 1, 0]], dtype=np.uint8)
    cams = np.array([[[0.5, 0.25, 0.5]]], dtype=np.float32)
    rule = make_rule("bg-threshold", {"threshold": [0.25, 0.5]})
    counts, _ = _engine_confusions([(gt, np.array([1]), cams, np.zeros_like(gt))], rule, VOC)
    # t=0.25: pixel 2 (score 0.25) is a tie -> background; t=0.5: all background.
    assert counts.tp[0, 1] == 1 and counts.pred[0, 1] == 2
    assert counts.tp[1, 1] == 0 and counts.pred[1, 1] == 0


def test_first_maximal_class_wins_ties():
    gt = np.array([[2, 3]], dtype=np.uint8)
    cams = np.array([[[0.7, 0.7]], [[0.7, 0.7]]], dtype=np.float32)
    rule = make_rule("bg-threshold", {"threshold": [0.1]})
    counts, _ = _engine_confusions([(gt, np.array([2, 3]), cams, np.zeros_like(gt))], rule, VOC)
    assert counts.pred[0, 2] == 2 and counts.pred[0, 3] == 0


@pytest.mark.parametrize("spec", [VOC, ADE], ids=["with-background", "no-background"])
def test_power_background_matches_psa_loop(spec):
    images = _images(2, spec, quantised=False)
    alphas = [4.0, 1.0, 0.0, 16.0, 8.0, 2.5, 32.0]
    rule = make_rule("power-bg", {"alpha": alphas})
    counts, _ = _engine_confusions(images, rule, spec)
    for point, alpha in enumerate(alphas):
        expected = sum(
            confusion(
                gt, psa_labels(keys, cams, alpha, spec.has_background, gt.shape), spec.num_classes
            )
            for gt, keys, cams, _ in images
        )
        _assert_counts_equal(counts, point, expected)


@pytest.mark.parametrize("ignore_label", [False, True])
def test_saliency_rule_matches_wsss_bed_transcription(ignore_label):
    images = _images(3, VOC)
    sal_thresholds = [0.2, 0.05, 0.5]
    atm_thresholds = [0.0, 0.1, 0.3, 0.5, 1.0]
    rule = make_rule(
        "saliency-rule",
        {"threshold": atm_thresholds, "sal_threshold": sal_thresholds},
        ignore_label=ignore_label,
    )
    counts, _ = _engine_confusions(images, rule, VOC)
    point = 0
    for s in sal_thresholds:
        for a in atm_thresholds:
            expected = sum(
                confusion(gt, wsss_bed_labels(sal, keys, cams, 21, s, a, ignore_label, False), 21)
                for gt, keys, cams, sal in images
            )
            _assert_counts_equal(counts, point, expected)
            point += 1


def test_saliency_rule_without_saliency_is_the_threshold_rule():
    images = _images(4, VOC)
    thresholds = [0.0, 0.1, 0.35]
    rule = make_rule("saliency-rule", {"threshold": thresholds}, with_saliency=False)
    counts, _ = _engine_confusions(images, rule, VOC)
    for point, a in enumerate(thresholds):
        expected = sum(
            confusion(gt, wsss_bed_labels(sal, keys, cams, 21, 0.2, a, False, True), 21)
            for gt, keys, cams, sal in images
        )
        _assert_counts_equal(counts, point, expected)


def test_saliency_rule_refuses_zero_saliency_threshold():
    from wsssbed.errors import InputError

    with pytest.raises(InputError, match="> 0"):
        make_rule("saliency-rule", {"threshold": [0.1], "sal_threshold": [0.0, 0.2]})


@pytest.mark.parametrize("spec", [VOC, ADE], ids=["with-background", "no-background"])
def test_boundary_sweep_matches_per_threshold_reference(spec):
    images = _images(5, spec, count=6, height=29, width=31)
    thresholds = [0.6, 0.0, 0.25, 0.45, 0.9]
    rule = make_rule("bg-threshold", {"threshold": thresholds})
    tolerance = Tolerance(2.5, in_pixels=True)
    state = accumulate(_samples(images), rule, spec, boundary=tolerance)
    sweeps, _ = sweep_tables(state, rule, spec, "run")
    for point, t in enumerate(thresholds):
        scores = [
            image_bf(
                irn_labels(keys, cams, np.float32(t), spec.has_background, gt.shape),
                gt,
                spec.num_classes,
                2.5,
                range(spec.num_classes),
            )
            for gt, keys, cams, _ in images
        ]
        scores = np.array([s for s in scores if not np.isnan(s[0])])
        assert sweeps.bf_f[point] == pytest.approx(scores[:, 0].mean())
        assert sweeps.bf_p[point] == pytest.approx(scores[:, 1].mean())
        assert sweeps.bf_r[point] == pytest.approx(scores[:, 2].mean())


def _reference_boundary_counts(pred, gt, num_classes, theta):
    """Per-class (pred total, pred matched, gt total, gt matched) by brute force (scipy)."""
    counts = np.zeros((4, num_classes), dtype=np.int64)
    for k in range(num_classes):
        pb, gb = boundary_of(pred == k) & (gt != 255), boundary_of(gt == k)
        near_gt = ndimage.distance_transform_edt(~gb) < theta if gb.any() else np.zeros_like(gb)
        near_pb = boundary_of(pred == k)
        near_pred = ndimage.distance_transform_edt(~near_pb) < theta if near_pb.any() else near_pb
        counts[:, k] = [pb.sum(), (pb & near_gt).sum(), gb.sum(), (gb & near_pred).sum()]
    return counts


@pytest.mark.parametrize("theta", [1.0, 2.5, 4.7])
@pytest.mark.parametrize("spec", [VOC, ADE], ids=["with-background", "no-background"])
@pytest.mark.parametrize("quantised", [True, False], ids=["ties", "smooth"])
def test_boundary_counts_equal_brute_force_per_class(spec, theta, quantised):
    images = _images(11, spec, count=8, height=23, width=27, quantised=quantised)
    thresholds = sorted({0.0, 0.05, 0.3, 0.5, 0.55, 0.95})
    rule = make_rule("bg-threshold", {"threshold": thresholds})
    scored = spec.num_classes
    for gt, keys, cams, sal in images:
        state = accumulate(
            _samples([(gt, keys, cams, sal)]), rule, spec, boundary=Tolerance(theta, True)
        )
        got = state.boundary
        for point, t in enumerate(thresholds):
            pred = irn_labels(keys, cams, np.float32(t), spec.has_background, gt.shape)
            expected = _reference_boundary_counts(pred, gt, scored, theta)
            assert np.array_equal(got.pred_total[:, point], expected[0])
            assert np.array_equal(got.pred_matched[:, point], expected[1])
            assert np.array_equal(got.gt_total, expected[2])
            assert np.array_equal(got.gt_matched[:, point], expected[3])


@pytest.mark.parametrize("spec", [VOC, ADE], ids=["with-background", "no-background"])
@pytest.mark.parametrize("tolerance", [Tolerance(0.06), Tolerance(2.5, True)],
                         ids=["fraction", "pixels"])  # fmt: skip
def test_a_batch_of_mixed_sizes_gives_each_image_its_own_counts(spec, tolerance):
    """The batched path (what a GPU runs, 32 images at a time) on the CPU: images of
    different sizes, hence different padding and (as fractions) different tolerance
    disks, share one flat array; each gets exactly the counts it gets alone, and the
    brute-force reference's."""
    from wsssbed.eval.reduce import reduce_batch, reduce_image

    rng = np.random.default_rng(5)
    images = []
    for height, width in ((23, 27), (31, 18), (12, 40), (23, 27), (40, 40), (9, 11)):
        images.append(random_image(rng, spec.num_classes, spec.has_background, height=height,
                                   width=width, quantised=True))  # fmt: skip
    images.append((np.full((15, 16), 255, np.uint8),))  # all void
    thresholds = sorted({0.0, 0.05, 0.3, 0.5, 0.55, 0.95})
    rule = make_rule("bg-threshold", {"threshold": thresholds})
    samples = list(_samples(images[:-1]))
    _, keys, cams, _ = images[4]  # 40x40
    samples.append(EvalSample("void", torch.from_numpy(images[-1][0]), torch.from_numpy(keys),
                              torch.from_numpy(cams[:, :15, :16].copy()),
                              torch.zeros(15, 16)))  # fmt: skip
    batched = reduce_batch(samples, rule, spec, tolerance)
    for sample, together in zip(samples, batched, strict=True):
        alone = reduce_image(sample, rule, spec, tolerance)
        assert together.boundary.same_as(alone.boundary), sample.image_id
        assert torch.equal(together.pairs.hist, alone.pairs.hist)
        np.testing.assert_array_equal(together.boundary_scores.f, alone.boundary_scores.f)
    for (gt, keys, cams, _), result in zip(images[:-1], batched):
        theta = tolerance.pixels(*gt.shape)
        for point, t in enumerate(thresholds):
            pred = irn_labels(keys, cams, np.float32(t), spec.has_background, gt.shape)
            expected = _reference_boundary_counts(pred, gt, spec.num_classes, theta)
            got = result.boundary
            assert np.array_equal(got.pred_total[:, point], expected[0])
            assert np.array_equal(got.pred_matched[:, point], expected[1])
            assert np.array_equal(got.gt_total, expected[2])
            assert np.array_equal(got.gt_matched[:, point], expected[3])
    assert batched[-1].boundary.gt_total.sum() == 0


def test_boundary_uses_more_than_62_thresholds_exactly():
    images = _images(6, VOC, count=3, height=21, width=21)
    thresholds = [round(0.01 * i, 2) for i in range(101)]
    rule = make_rule("bg-threshold", {"threshold": thresholds})
    state = accumulate(_samples(images), rule, VOC, boundary=Tolerance(2, in_pixels=True))
    sweeps, _ = sweep_tables(state, rule, VOC, "run")
    for point in (0, 61, 62, 63, 100):
        t = thresholds[point]
        scores = [
            image_bf(irn_labels(keys, cams, np.float32(t), True, gt.shape), gt, 21, 2, range(21))
            for gt, keys, cams, _ in images
        ]
        f = np.nanmean([s[0] for s in scores])
        assert sweeps.bf_f[point] == pytest.approx(f)


def test_disk_is_strictly_inside_theta():
    dy, dx = disk_offsets(2.0)
    distances = (dy.double() ** 2 + dx.double() ** 2).sqrt()
    assert distances.max() < 2.0
    assert len(dy) == 9  # (0,0), 4 at distance 1, 4 at sqrt(2); distance 2 is excluded


def test_per_class_table_recomputes_every_convention():
    images = _images(7, VOC)
    rule = make_rule("bg-threshold", {"threshold": [0.1, 0.3]})
    state = accumulate(_samples(images), rule, VOC)
    sweeps, per_class = sweep_tables(state, rule, VOC, "run")
    for point in range(2):
        rows = per_class[per_class.point == point]
        iou = rows.intersection / rows.union.where(rows.union > 0)
        assert sweeps.miou[point] == pytest.approx(iou.mean())
        assert sweeps.miou_zero[point] == pytest.approx(iou.fillna(0).mean())
        assert (rows.tp + rows.fn == rows.gt_pixels).all()
        assert (rows.tp + rows.fp == rows.pred_pixels).all()


def test_memory_state_is_independent_of_image_count():
    rule = make_rule("bg-threshold", {"threshold": [0.1, 0.2]})
    few = accumulate(_samples(_images(8, VOC, count=3)), rule, VOC)
    many = accumulate(_samples(_images(8, VOC, count=60)), rule, VOC)
    assert many.pairs.result().hist.shape[1:] == few.pairs.result().hist.shape[1:]
    assert many.pairs.result().hist.shape[0] <= VOC.num_classes * (VOC.num_classes + 1)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_counts_equal_cpu_counts():
    images = _images(9, VOC, quantised=False)
    rule = make_rule("bg-threshold", {"threshold": [round(0.01 * i, 2) for i in range(61)]})
    tolerance = Tolerance(0.0075)
    cpu = accumulate(_samples(images), rule, VOC, boundary=tolerance, device="cpu")
    gpu = accumulate(_samples(images), rule, VOC, boundary=tolerance, device="cuda")
    assert np.array_equal(cpu.pairs.result().hist, gpu.pairs.result().hist)
    assert np.array_equal(cpu.boundary.gt_matched, gpu.boundary.gt_matched)
    assert np.array_equal(cpu.boundary.pred_matched, gpu.boundary.pred_matched)
    assert np.array_equal(cpu.bf_sums, gpu.bf_sums)


@pytest.mark.parametrize(
    "generator,options",
    [
        ("bg-threshold", {"threshold": [0.55, 0.1, 0.95, 0.0]}),
        ("power-bg", {"alpha": [8.0, 1.0, 4.0]}),
        ("saliency-rule", {"threshold": [0.3, 0.0], "sal_threshold": [0.5, 0.2]}),
    ],
)  # fmt: skip
@pytest.mark.parametrize("spec", [VOC, ADE], ids=["with-background", "no-background"])
def test_label_maps_at_a_point_agree_with_the_counts(spec, generator, options):
    images = _images(21, spec, count=6)
    rule = make_rule(generator, options, ignore_label=generator == "saliency-rule")
    counts, _ = _engine_confusions(images, rule, spec)
    for point in range(int(np.prod(rule.shape))):
        expected = sum(
            confusion(
                gt,
                label_map(rule, sample, point, spec.num_classes, spec.has_background).numpy(),
                spec.num_classes,
            )
            for (gt, *_), sample in zip(images, _samples(images))
        )
        _assert_counts_equal(counts, point, expected)


@pytest.mark.parametrize("spec", [VOC, ADE], ids=["with-background", "no-background"])
def test_hard_label_boundary_matches_reference(spec):
    """Label maps with predicted background (and unlabelled pixels) score as the scipy
    reference does, background class included."""
    images = _images(9, spec, count=8, height=26, width=30)
    rule = HardLabels("hard-labels", make_rule("bg-threshold", {"threshold": [0.0]}).axes)
    samples, expected = [], []
    for index, (gt, keys, cams, _) in enumerate(images):
        pred = irn_labels(keys, cams, np.float32(0.4), spec.has_background, gt.shape)
        sample = EvalSample(f"img{index}", torch.from_numpy(gt), torch.zeros(0, dtype=torch.int64))
        sample.pred = torch.from_numpy(pred)
        samples.append(sample)
        expected.append(image_bf(pred, gt, spec.num_classes, 3.0, range(spec.num_classes)))
    state = accumulate(samples, rule, spec, boundary=Tolerance(3.0, in_pixels=True))
    sweeps, _ = sweep_tables(state, rule, spec, "run")
    scores = np.array([s for s in expected if not np.isnan(s[0])])
    assert sweeps.bf_f[0] == pytest.approx(scores[:, 0].mean())
    assert sweeps.bf_r[0] == pytest.approx(scores[:, 2].mean())
