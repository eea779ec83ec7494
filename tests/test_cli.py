"""The command line, end to end on the embedded sample."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
from conftest import run_cli
from reference import CLASS_COUNTS, confusion, irn_labels, metrics
from typer.testing import CliRunner

from wsssbed.activation import read_activation
from wsssbed.cli import app
from wsssbed.datasets import get_dataset
from wsssbed.datasets.local import LocalDataset
from wsssbed.io.imageio import write_label_map


def _sweep(sample_root, out, *extra, fmt="irn-npy"):
    """`wsssbed sweep --json` on the sample's train split with the sample's maps in `fmt`."""
    folder = sample_root / "activation/sample-cam" / fmt
    return run_cli(
        "sweep",
        "--data-root",
        sample_root,
        "--split",
        "train",
        "--activation",
        folder,
        "--activation-format",
        fmt,
        "--allow-extra-maps",
        "--out",
        out,
        "--json",
        *extra,
    )


def test_datasets_json_lists_the_five_datasets():
    result = run_cli("datasets", "--json")
    assert result.exit_code == 0
    counts = {row["name"]: row["num_classes"] for row in json.loads(result.stdout)}
    assert counts == CLASS_COUNTS


def test_datasets_table_and_check(sample_root, tmp_path):
    assert "cocostuff" in run_cli("datasets").stdout
    good = run_cli(
        "datasets", "check", "--dataset", "voc2012", "--data-root", sample_root, "--split", "val"
    )
    assert good.exit_code == 0 and "24 valid masks" in good.stdout
    shutil.copytree(sample_root / "VOC2012", tmp_path / "VOC2012")
    bad_file = tmp_path / "VOC2012/SegmentationClass/sample_0050.png"
    bad_file.write_bytes(b"\x89PNG broken")
    bad = run_cli(
        "datasets", "check", "--dataset", "voc2012", "--data-root", tmp_path, "--split", "val"
    )
    assert bad.exit_code == 1 and str(bad_file) in bad.stderr.replace("\n", "")


def test_datasets_check_prints_brackets_in_bad_lines(sample_root, tmp_path):
    """`bad:` lines are escaped: rich ate `[...]` in paths and hints (red-team section 12)."""
    root = tmp_path / "[bold]root"
    shutil.copytree(sample_root / "VOC2012", root / "VOC2012")
    bad_file = root / "VOC2012/SegmentationClass/sample_0050.png"
    bad_file.write_bytes(b"\x89PNG broken")
    bad = run_cli("datasets", "check", "--dataset", "voc2012", "--data-root", root, "--split",
                  "val")  # fmt: skip
    assert bad.exit_code == 1 and str(bad_file) in bad.stderr.replace("\n", "")


def test_default_sweep_runs_on_the_sample(tmp_path, monkeypatch, sample_root):
    monkeypatch.setattr("wsssbed.embedded.sample.ensure_sample", lambda path=None: sample_root)
    result = run_cli("sweep", "--out", tmp_path / "r")
    assert result.exit_code == 0, result.stderr
    assert "best point" in result.stdout and "miou" in result.stdout


def test_sweep_matches_reference_and_appends(sample_root, tmp_path):
    out = tmp_path / "results"
    first = _sweep(sample_root, out, "--thresholds", "0.05,0.3,0.5", "--no-boundary")
    assert first.exit_code == 0, first.stderr
    summary = json.loads(first.stdout)
    assert summary["grid_points"] == 3 and summary["n_images"] == 48
    sweeps = pd.read_parquet(out / "sweeps.parquet")
    spec = get_dataset("voc2012")
    local = LocalDataset(spec, sample_root, "train")
    folder = sample_root / "activation/sample-cam/irn-npy"
    for point, t in enumerate((0.05, 0.3, 0.5)):
        total = 0
        for image_id in local.ids:
            gt = local.read_gt(image_id)
            maps = read_activation(folder, image_id, "irn-npy", spec)
            total = total + confusion(
                gt, irn_labels(maps.class_ids, maps.cams, np.float32(t), True, gt.shape), 21
            )
        assert sweeps.miou[point] == pytest.approx(metrics(total)["miou"])
    second = _sweep(sample_root, out, "--thresholds", "0:0.6:0.01")
    assert second.exit_code == 0
    runs = pd.read_parquet(out / "runs.parquet")
    assert len(runs) == 2 and runs.run_id.is_unique
    sweeps = pd.read_parquet(out / "sweeps.parquet")
    assert sweeps.groupby("run_id").size().sort_values().tolist() == [3, 61]
    assert sweeps.sal_threshold.isna().all()
    per_class = pd.read_parquet(out / "per_class.parquet")
    assert len(per_class) == (3 + 61) * 21
    assert json.loads(runs.packages[0])["torch"]


def test_formats_and_workers_give_identical_counts(sample_root, tmp_path):
    def per_class(*extra, fmt="irn-npy"):
        out = tmp_path / f"{fmt}-{len(extra)}"
        result = _sweep(sample_root, out, "--thresholds", "0.1,0.4", *extra, fmt=fmt)
        assert result.exit_code == 0, result.stderr
        return pd.read_parquet(out / "per_class.parquet").drop(columns="run_id")

    base = per_class()
    pd.testing.assert_frame_equal(base, per_class(fmt="npz"))
    pd.testing.assert_frame_equal(base, per_class("--workers", "2"))
    quantised = per_class(fmt="png-per-class")
    assert (quantised.tp - base.tp).abs().sum() < 0.01 * base.tp.sum()


def test_saliency_rule_2d_and_power(sample_root, tmp_path):
    result = _sweep(
        sample_root,
        tmp_path,
        "--generator",
        "saliency-rule",
        "--saliency",
        sample_root / "saliency/sample-sal",
        "--sal-thresholds",
        "0.1:0.5:0.1",
        "--thresholds",
        "0:0.5:0.1",
        "--ignore-label",
    )
    assert result.exit_code == 0, result.stderr
    sweeps = pd.read_parquet(tmp_path / "sweeps.parquet")
    assert len(sweeps) == 30 and sweeps.sal_threshold.notna().all()
    assert (sweeps.ignore_ratio > 0).any() and sweeps.bf_f.isna().all()
    power = _sweep(sample_root, tmp_path / "p", "--generator", "power-bg", "--alphas", "1,2,4,8,16")
    assert power.exit_code == 0, power.stderr
    assert json.loads(power.stdout)["best_point"]["alpha"] in (1, 2, 4, 8, 16)


def test_evaluate_scores_label_maps(sample_root, tmp_path):
    spec = get_dataset("voc2012")
    local = LocalDataset(spec, sample_root, "val")
    total = 0
    for image_id in local.ids:
        gt = local.read_gt(image_id)
        maps = read_activation(sample_root / "activation/sample-cam/npz", image_id, "npz", spec)
        labels = irn_labels(maps.class_ids, maps.cams, np.float32(0.3), True, gt.shape)
        labels[::7, ::5] = 255  # some unlabelled pixels
        write_label_map(tmp_path / "pred", image_id, labels, spec.palette())
        total = total + confusion(gt, labels, 21)
    result = run_cli(
        "evaluate",
        "--pred",
        tmp_path / "pred",
        "--data-root",
        sample_root,
        "--split",
        "val",
        "--out",
        tmp_path / "r",
        "--json",
    )
    assert result.exit_code == 0, result.stderr
    best = json.loads(result.stdout)["best"]
    expected = metrics(total)
    for name in ("miou", "miou_zero", "miou_labeled", "ignore_ratio", "pixel_accuracy"):
        assert best[name] == pytest.approx(expected[name])
    assert 0 < best["bf_f"] < 1
    runs = pd.read_parquet(tmp_path / "r/runs.parquet")
    assert runs.stage[0] == "pseudo-label"


@pytest.fixture
def broken_maps(sample_root, tmp_path):
    folder = tmp_path / "maps"
    shutil.copytree(sample_root / "activation/sample-cam/npz", folder)
    return folder


def _bad_sweep(sample_root, folder, out, *extra):
    return run_cli(
        "sweep",
        "--data-root",
        sample_root,
        "--split",
        "val",
        "--activation",
        folder,
        "--activation-format",
        "npz",
        "--allow-extra-maps",
        "--out",
        out,
        *extra,
    )


@pytest.mark.parametrize(
    "damage,message",
    [
        ("nan", "NaN"),
        ("range", "outside [0, 1]"),
        ("size", "differs from the ground truth"),
        ("keys", "not labelled with"),
        ("corrupt", "not a valid .npz"),
        ("missing", "have no"),
    ],
)
def test_bad_maps_fail_cleanly_without_output(sample_root, broken_maps, tmp_path, damage, message):
    target = broken_maps / "sample_0060.npz"
    with np.load(target) as archive:
        keys, cams = archive["keys"], archive["cams"]
    if damage == "nan":
        cams[0, 5, 5] = np.nan
    elif damage == "range":
        cams = cams * 2
    elif damage == "size":
        cams = cams[:, :-3]
    elif damage == "keys":
        keys = np.array([19 if keys[0] != 19 else 18])
        cams = cams[:1]
    if damage == "corrupt":
        target.write_bytes(b"PK\x03\x04junk")
    elif damage == "missing":
        target.unlink()
    else:
        np.savez(target, keys=keys, cams=cams)
    out = tmp_path / "out"
    result = _bad_sweep(sample_root, broken_maps, out)
    assert result.exit_code == 2
    error = result.stderr.replace("\n", "")
    assert message in error
    if damage != "missing":
        assert "sample_0060" in error
    assert not out.exists() or not any(out.glob("*.parquet"))


def test_extra_maps_are_refused_unless_allowed(sample_root, tmp_path):
    result = run_cli(
        "sweep",
        "--data-root",
        sample_root,
        "--split",
        "val",
        "--activation",
        sample_root / "activation/sample-cam/npz",
        "--activation-format",
        "npz",
        "--out",
        tmp_path,
    )
    assert result.exit_code == 2 and "outside the split" in result.stderr.replace("\n", "")


def test_store_is_untouched_by_a_failedrun_cli(sample_root, broken_maps, tmp_path):
    out = tmp_path / "out"
    assert _bad_sweep(sample_root, broken_maps, out, "--thresholds", "0.2").exit_code == 0
    before = {p.name: p.read_bytes() for p in out.glob("*.parquet")}
    (broken_maps / "sample_0070.npz").write_bytes(b"junk")
    assert _bad_sweep(sample_root, broken_maps, out, "--thresholds", "0.2").exit_code == 2
    assert {p.name: p.read_bytes() for p in out.glob("*.parquet")} == before


def test_help_shows_defaults_brackets_and_the_metric_glossary():
    from wsssbed.eval.summary import GLOSSARY

    env = {"COLUMNS": "200"}
    sweep = " ".join(CliRunner().invoke(app, ["sweep", "--help"], env=env).output.split())
    assert "[default: 0:0.6:0.01]" in sweep and "[default: auto]" in sweep
    for name in GLOSSARY:
        assert f"{name}:" in sweep
    board = " ".join(CliRunner().invoke(app, ["leaderboard", "--help"], env=env).output.split())
    assert "`[[reported]]` tables" in board and "[default: wsssbed-leaderboard]" in board


def test_tables_fit_80_columns_without_breaking_ids(sample_root, tmp_path):
    out = tmp_path / "results"
    for split in ("train", "val"):
        result = run_cli("sweep", "--data-root", sample_root, "--split", split, "--activation",
                         sample_root / "activation/sample-cam/npz", "--activation-format", "npz",
                         "--allow-extra-maps", "--out", out)  # fmt: skip
        assert result.exit_code == 0, result.stderr
    runs = pd.read_parquet(out / "runs.parquet")
    env = {"COLUMNS": "80"}
    shown = CliRunner().invoke(app, ["results", "show", "--results", str(out)], env=env).output
    listing = CliRunner().invoke(app, ["manifests", "--kind", "pipeline"], env=env).output
    for text in (shown, listing):
        assert max(len(line) for line in text.splitlines()) <= 80
    for run_id in runs.run_id:
        assert run_id[-8:] in shown  # whole, on one line
    assert "voc2012-cam-wsssbed" in listing and "coco2014-cam-wsssbed" in listing
