"""Subsets are identified by their ids (`split_digest`), never by a file's name: two
different `ids.txt` are two subsets, the same ids under two names are one."""

from __future__ import annotations

import re

import pandas as pd
import pytest
from conftest import run_cli

from wsssbed.datasets.fingerprint import (
    SUBSET_PREFIX,
    mixed_ground_truth,
    split_digest,
    subset_of,
    with_subsets,
)
from wsssbed.report.leaderboard import render_site
from wsssbed.report.sensitivity import split_transfer
from wsssbed.results.store import read_table


def _run(split, digest, split_file=None, gt="sha256:aa"):
    return {"dataset": "voc2012", "split": split, "split_digest": digest,
            "split_file": split_file, "gt_digest": gt}  # fmt: skip


def test_a_subset_is_named_by_its_split_or_file_stem_and_known_by_its_ids():
    a, b = split_digest(["1", "2"]), split_digest(["3", "4"])
    assert subset_of(_run("train", a)).name == "train"
    found = subset_of(_run("ids.txt", a, "/lists/ids.txt"))
    assert found.key == a and found.name == f"ids@{a[7 : 7 + SUBSET_PREFIX]}"
    assert subset_of(_run("val", None)).key == "split:val"  # stored before schema 4
    runs = pd.DataFrame([_run("ids.txt", a, "/x/ids.txt"), _run("ids.txt", b, "/y/ids.txt"),
                         _run("same.txt", a, "/z/same.txt")])  # fmt: skip
    named = with_subsets(runs)
    assert named.subset_key.tolist() == [a, b, a]
    assert len(set(named.subset)) == 3 and named.subset[0] != named.subset[1]
    # one split name over two id lists (two data roots): the names tell them apart
    twice = with_subsets(pd.DataFrame([_run("train", a), _run("train", b)]))
    assert twice.subset.tolist() == [f"train@{a[7:15]}", f"train@{b[7:15]}"]


def test_mixed_ground_truth_compares_runs_on_the_same_ids_only():
    a, b = split_digest(["1"]), split_digest(["2"])
    other_ids = pd.DataFrame([_run("ids.txt", a, "/x/ids.txt", "sha256:aa"),
                              _run("ids.txt", b, "/y/ids.txt", "sha256:bb")])  # fmt: skip
    assert mixed_ground_truth(other_ids) == {}
    same_ids = pd.DataFrame([_run("train", a, None, "sha256:aa"),
                             _run("train", a, None, "sha256:bb")])  # fmt: skip
    assert mixed_ground_truth(same_ids) == {("voc2012", "train"): ["aa", "bb"]}


@pytest.fixture(scope="module")
def store(sample_root, tmp_path_factory):
    """Sweeps of three id files: `one/ids.txt`, `two/ids.txt` (other images) and
    `copy.txt` (the images of `one/ids.txt`, listed in another order)."""
    root = tmp_path_factory.mktemp("subsets")
    ids = (sample_root / "VOC2012/ImageSets/Segmentation/train.txt").read_text().split()
    files = {"one/ids.txt": ids[:12], "two/ids.txt": ids[12:24], "copy.txt": ids[:12][::-1]}
    out = root / "results"
    for name, listed in files.items():
        path = root / name
        path.parent.mkdir(exist_ok=True)
        path.write_text("\n".join(listed) + "\n")
        result = run_cli("sweep", "--data-root", sample_root, "--split", path, "--activation",
                         sample_root / "activation/sample-cam/npz", "--activation-format",
                         "npz", "--allow-extra-maps", "--thresholds", "0:0.6:0.05", "--out",
                         out, "--json")  # fmt: skip
        assert result.exit_code == 0, result.stderr
    return out


def test_transfer_is_between_different_ids_only(store, tmp_path):
    runs = with_subsets(read_table(store, "runs"))
    one, two, copy = runs.subset
    assert one.startswith("ids@") and two.startswith("ids@") and one != two
    assert copy.startswith("copy@") and runs.subset_key[0] == runs.subset_key[2]
    transfer = split_transfer(runs, read_table(store, "sweeps"))
    pairs = sorted(zip(transfer.chosen_on, transfer.scored_on))
    assert pairs == sorted([(one, two), (two, one), (copy, two), (two, copy)])
    result = run_cli("sensitivity", "--results", store, "--out", tmp_path / "study",
                     "--figure-format", "svg")  # fmt: skip
    assert result.exit_code == 0, result.stderr
    printed = re.findall(rf"│ ({one}|{copy}) +│ ({one}|{copy}) ", result.stdout)
    assert printed == []  # never a "transfer" between the same ids
    shown = run_cli("results", "show", "--results", store)
    assert "different ground truths" not in shown.stderr
    assert f"voc2012/{one}" in shown.stdout and f"voc2012/{two}" in shown.stdout


def test_the_leaderboard_keeps_two_ids_txt_apart(store, tmp_path):
    site = tmp_path / "site"
    render_site(store, site, gallery_images=0, draws=20)
    index = (site / "index.html").read_text()
    runs = with_subsets(read_table(store, "runs"))
    one, two, copy = runs.subset
    assert "other GT</span></td>" not in index  # no row flagged: each id set is its own
    for name in (one, two, copy):
        assert f">{name}</td>" in index
    page = (site / "runs" / f"{runs.run_id[0]}.html").read_text()
    assert f"transferred: best on {two}" in page  # not on copy.txt, its own images
    assert "PASCAL VOC 2012" in page and one in page
