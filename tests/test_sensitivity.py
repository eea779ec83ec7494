"""Threshold-sensitivity statistics, intervals and figures, against direct computations."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from conftest import run_cli

from wsssbed.report.sensitivity import (
    PerImage,
    bootstrap_interval,
    curve_stats,
    paired_comparison,
    split_half_transfer,
)


@pytest.fixture(scope="module")
def store(sample_root, tmp_path_factory):
    """Sample sweeps with per-image counts: train and val (1-D) and a 2-D saliency grid."""
    out = tmp_path_factory.mktemp("results")
    common = ("--data-root", sample_root, "--per-image", "--out", out, "--json")
    maps = sample_root / "activation/sample-cam/npz"
    for split in ("train", "val"):
        result = run_cli("sweep", "--split", split, "--activation", maps, "--activation-format",
                      "npz", "--allow-extra-maps", *common)  # fmt: skip
        assert result.exit_code == 0, result.stderr
    result = run_cli(
        "sweep", "--split", "train", "--activation", maps, "--activation-format", "npz",
        "--allow-extra-maps", "--generator", "saliency-rule", "--saliency",
        sample_root / "saliency/sample-sal", "--sal-thresholds", "0.1:0.5:0.1",
        "--thresholds", "0:0.6:0.05", *common,
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    return out


def _tables(out):
    return {n: pd.read_parquet(out / f"{n}.parquet") for n in ("runs", "sweeps", "per_class")}


def _per_image(out, run_id):
    rows = pd.read_parquet(out / "per_image.parquet")
    points = (pd.read_parquet(out / "sweeps.parquet").run_id == run_id).sum()
    return PerImage.from_rows(rows[rows.run_id == run_id], points, 21)


def test_per_image_counts_sum_to_the_run_counts(store):
    tables = _tables(store)
    rows = pd.read_parquet(store / "per_image.parquet")
    for run_id in tables["runs"].run_id:
        mine = rows[rows.run_id == run_id].groupby(["point", "class_id"])[["tp", "fp", "fn"]].sum()
        per_class = tables["per_class"]
        expected = per_class[per_class.run_id == run_id].set_index(["point", "class_id"])
        expected = expected[(expected.tp + expected.fp + expected.fn) > 0][["tp", "fp", "fn"]]
        pd.testing.assert_frame_equal(mine.sort_index(), expected.sort_index(), check_dtype=False)


def test_weighted_miou_of_all_images_is_the_stored_miou(store):
    runs = _tables(store)["runs"]
    sweeps = _tables(store)["sweeps"]
    run_id = runs.run_id.iloc[0]
    per_image = _per_image(store, run_id)
    ones = np.ones((1, len(per_image.image_ids)), dtype=np.int64)
    stored = sweeps[sweeps.run_id == run_id].sort_values("point").miou.to_numpy()
    assert np.allclose(per_image.miou(ones)[0], stored, rtol=0, atol=1e-12)
    everything = np.arange(len(per_image.image_ids))
    assert np.allclose(per_image.metrics(everything)["miou"], stored, rtol=0, atol=1e-12)


def test_curve_stats_on_a_hand_made_curve():
    thresholds = np.round(np.arange(0, 0.55, 0.05), 2)
    miou = np.array([0.30, 0.40, 0.50, 0.595, 0.60, 0.592, 0.589, 0.55, 0.5, 0.45, 0.4])
    sweeps = pd.DataFrame(
        {
            "point": range(11),
            "threshold": thresholds,
            "alpha": np.nan,
            "sal_threshold": np.nan,
            "miou": miou,
            "bf_f": np.nan,
        }
    )
    stats = curve_stats(sweeps.sample(frac=1, random_state=0), {"threshold": 0.1})
    assert stats["best_threshold"] == 0.2 and stats["best_miou"] == 0.6
    assert stats["at_recommended_miou"] == 0.5
    # within 1 point of 0.60: 0.15 (0.595), 0.2, 0.25 (0.592); 0.3 (0.589) is not
    assert stats["plateau_width"] == pytest.approx(0.1)
    assert stats["plateau_share"] == pytest.approx(3 / 11)
    expected_auc = np.trapezoid(miou, thresholds) / 0.5
    assert stats["auc"] == pytest.approx(expected_auc)
    assert curve_stats(sweeps, {"threshold": 0.12})["at_recommended_miou"] is None


def test_bootstrap_matches_a_direct_resampling_loop(store):
    run_id = _tables(store)["runs"].run_id.iloc[0]
    per_image = _per_image(store, run_id)
    point, draws, seed = 30, 200, 7
    low, high = bootstrap_interval(per_image, point, draws, seed)
    rng = np.random.default_rng(seed)
    n = len(per_image.image_ids)
    weights = rng.multinomial(n, np.full(n, 1 / n), size=draws)
    scores = []
    for w in weights:  # sum the resampled images' counts one image at a time
        tp = sum(w[i] * per_image.tp[i, point] for i in range(n))
        fp = sum(w[i] * per_image.fp[i, point] for i in range(n))
        fn = sum(w[i] * per_image.fn[i, point] for i in range(n))
        union = tp + fp + fn
        scores.append(np.mean([t / u for t, u in zip(tp, union) if u > 0]))
    assert (low, high) == pytest.approx(tuple(np.percentile(scores, [2.5, 97.5])))
    assert low < high


def test_split_half_matches_a_direct_computation(store):
    run_id = _tables(store)["runs"].run_id.iloc[0]
    per_image = _per_image(store, run_id)
    result = split_half_transfer(per_image, repeats=1, seed=3)
    order = np.random.default_rng(3).permutation(len(per_image.image_ids))
    n = len(order) // 2

    def miou(images):
        tp, fp, fn = (a[images].sum(0) for a in (per_image.tp, per_image.fp, per_image.fn))
        union = tp + fp + fn
        with np.errstate(invalid="ignore"):
            return np.nanmean(np.where(union > 0, tp / union, np.nan), axis=1)

    choice = int(np.nanargmax(miou(order[:n])))
    held = miou(order[n:])
    assert result["held_out_miou"] == pytest.approx(held[choice])
    assert result["gap_to_oracle"] == pytest.approx(held.max() - held[choice])


def test_a_run_compared_with_itself_differs_by_nothing(store):
    run_id = _tables(store)["runs"].run_id.iloc[0]
    per_image = _per_image(store, run_id)
    same = paired_comparison(per_image, 30, per_image, 30, 100, 0)
    assert same["difference"] == 0 and same["ci_low"] == same["ci_high"] == 0
    other = paired_comparison(per_image, 44, per_image, 5, 100, 0)
    assert other["difference"] > 0 and other["ci_low"] > 0 and other["share_not_better"] == 0


def test_sensitivity_command_writes_everything(store, tmp_path):
    out = tmp_path / "study"
    runs = _tables(store)["runs"]
    first, second, grid = runs.run_id  # train, val, train (2-D)
    result = run_cli("sensitivity", "--results", store, "--out", out, "--recommended",
                  "threshold=0.25", "--compare", grid, "--compare", first, "--halves", "3",
                  "--draws", "50")  # fmt: skip
    assert result.exit_code == 0, result.stderr
    stats = pd.read_parquet(out / "stats.parquet")
    sweeps = _tables(store)["sweeps"]
    assert len(stats) == 3 and stats.ci_low.notna().all() and stats.half_repeats.eq(3).all()
    for _, row in stats.iterrows():
        rows = sweeps[sweeps.run_id == row.run_id]
        assert row.best_miou == rows.miou.max()
        if pd.isna(row.best_sal_threshold):
            at = rows[np.isclose(rows.threshold, 0.25)].miou.iloc[0]
            assert row.at_recommended_miou == at
    transfer = pd.read_parquet(out / "transfer.parquet")
    train_to_val = transfer[(transfer.chosen_on == "train") & (transfer.scored_on == "val")]
    assert len(train_to_val) == 1
    val_rows = sweeps[sweeps.run_id == second].set_index("point")
    assert train_to_val.transferred_miou.iloc[0] == val_rows.miou[train_to_val.point.iloc[0]]
    (comparison,) = pd.read_parquet(out / "comparison.parquet").itertuples()
    assert comparison.images == 48 and comparison.first_run == grid
    best = sweeps.groupby("run_id").miou.max()
    assert comparison.difference == pytest.approx(best[grid] - best[first])
    assert comparison.ci_low <= comparison.difference <= comparison.ci_high
    names = {p.name for p in out.iterdir()}
    for suffix in (".png", ".svg", ".pdf"):
        assert f"curves_miou_voc2012_train_threshold{suffix}" in names
        assert f"curves_bf_f_voc2012_val_threshold{suffix}" in names
        assert any(n.startswith("heatmap_") and n.endswith(suffix) for n in names)
    curves = (out / "curves_miou_voc2012_train_threshold.svg").read_text()
    assert "recommended point" in curves and "within 1 point of best" in curves
    assert "activation threshold (CAM score in [0, 1])" in curves  # axis units
    assert "PASCAL VOC 2012, train" in curves and "voc2012/train" not in curves  # the title
    again = tmp_path / "again"
    result = run_cli("sensitivity", "--results", store, "--out", again, "--halves", "0",
                     "--recommended", "threshold=0.25")  # fmt: skip
    assert result.exit_code == 0
    for vector in [*out.glob("*.svg"), *out.glob("*.pdf")]:
        assert (again / vector.name).read_bytes() == vector.read_bytes()  # deterministic


def test_sensitivity_errors(store, tmp_path):
    none = run_cli("sensitivity", "--results", store, "--method", "nope", "--out", tmp_path)
    assert none.exit_code == 2 and "no stored runs" in none.stderr
    bad = run_cli("sensitivity", "--results", store, "--recommended", "t=1", "--out", tmp_path)
    assert bad.exit_code == 2 and "--recommended" in bad.stderr


def test_sensitivity_table_fits_80_columns_with_split_half_statistics(store, tmp_path):
    from typer.testing import CliRunner

    from wsssbed.cli import app

    out = tmp_path / "study"
    args = ["sensitivity", "--results", str(store), "--out", str(out), "--halves", "3",
            "--draws", "50", "--figure-format", "svg"]  # fmt: skip
    result = CliRunner().invoke(app, args, env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert max(len(line) for line in lines) <= 80
    stats = pd.read_parquet(out / "stats.parquet")
    transfer = pd.read_parquet(out / "transfer.parquet")
    body = [line for line in lines if line.startswith("│")]
    assert len(body) == 2 * len(stats) + len(transfer)  # one line per row: no cell wrapped
    assert any("\u2026" in line for line in body)  # the long saliency-rule label, cut
    for row in stats.itertuples():
        interval = f"{100 * row.ci_low:.1f}\u2013{100 * row.ci_high:.1f}"
        held, gap = f"{100 * row.half_held_out_miou:.1f}", f"{100 * row.half_gap_to_oracle:.1f}"
        assert any(interval in line and held in line and gap in line for line in body), row
    assert re.search(r"\d-\d", result.output) is None  # no hyphen that reads as a minus
    assert "(mIoU %)" in result.output and "held-out" in result.output
    assert {p.suffix for p in out.iterdir() if p.name.startswith("curves_")} == {".svg"}


@pytest.mark.parametrize(
    "options,problem",
    [
        (["--draws", "0"], "--draws 0: bootstrap resamples must be an integer from 2 to 10,000"),
        (["--draws", "-5"], "--draws -5: bootstrap resamples"),
        (["--draws", "1000000000"], "--draws 1000000000: bootstrap resamples"),
        (["--halves", "-1"], "--halves -1: split-half repeats must be an integer from 0"),
        (["--recommended", "threshold=abc"], "threshold='abc' is not a number"),
        (["--recommended", "threshold=0.25,threshold=0.3"], "threshold is given twice"),
    ],
)
def test_nonsense_study_options_are_refused_naming_them(store, tmp_path, options, problem):
    """Red-team finding 11: these ended in "unexpected TypeError / ValueError /
    MemoryError" (a billion draws asked for 179 GiB)."""
    out = tmp_path / "study"
    result = run_cli("sensitivity", "--results", store, "--out", out, *options)
    assert result.exit_code == 2, result.output
    assert problem in " ".join(result.stderr.split())
    assert "unexpected" not in result.output and not out.exists()
    site = run_cli("leaderboard", "--results", store, "--out", tmp_path / "site", "--draws", "1")
    assert site.exit_code == 2 and "--draws 1: bootstrap resamples" in site.stderr


def test_comparing_a_run_with_itself_is_refused(store, tmp_path):
    run_id = _tables(store)["runs"].run_id.iloc[0]
    out = tmp_path / "study"
    result = run_cli("sensitivity", "--results", store, "--out", out, "--compare", run_id,
                     "--compare", run_id, "--draws", "50")  # fmt: skip
    assert result.exit_code == 2, result.output
    assert f"select the same run ({run_id})" in " ".join(result.stderr.split())
    assert not out.exists()
