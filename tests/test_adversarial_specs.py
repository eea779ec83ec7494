"""Crafted dataset specs, manifests and reported tables (issue 16, classes 3 and 4):
each refused on load with the file and the field named, never a traceback or a
silently different number."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from wsssbed.catalogue.manifest import parse_manifest
from wsssbed.cli import app
from wsssbed.datasets import load_spec
from wsssbed.errors import InputError

SPEC = """name = "mine"
classes = ["background", "a", "b"]
has_background = true
ignore_index = 255
[splits]
train = 3
[layout]
split_files = ["ImageSets/Segmentation/{split}.txt"]
[[ground_truth]]
folder = "SegmentationClass"
mapping = "lookup"
raw_ids = [0, 1, 2]
"""

SPEC_EDITS = {
    "ignore-string": (
        "ignore_index = 255",
        'ignore_index = "x"',
        "`ignore_index` must be an integer",
    ),
    "splits-array": ("[splits]\ntrain = 3", "splits = [1, 2]", "`splits` must be a table"),
    "split-size": ("train = 3", 'train = "3"', "`splits` must be a table of integers"),
    "no-folder": ('folder = "SegmentationClass"\n', "", "`folder` is missing"),
    "layout-string": (
        '[layout]\nsplit_files = ["ImageSets/Segmentation/{split}.txt"]',
        "",
        "`layout` is missing",
    ),
    "background-no": (
        "has_background = true",
        'has_background = "no"',
        "`has_background` must be a boolean",
    ),
    "raw-minus-one": (
        "raw_ids = [0, 1, 2]",
        "raw_ids = [0, 1, -1]",
        r"raw_ids \[-1\] are outside 0..254",
    ),
    "raw-void": ("raw_ids = [0, 1, 2]", "raw_ids = [0, 1, 255]", r"raw_ids \[255\] are outside"),
    "raw-duplicate": ("raw_ids = [0, 1, 2]", "raw_ids = [0, 1, 1]", "twice"),
    "raw-float": (
        "raw_ids = [0, 1, 2]",
        "raw_ids = [0, 1, 2.5]",
        "`raw_ids` must be an array of integers",
    ),
    "raw-unused": ('mapping = "lookup"', 'mapping = "identity"', "only by the lookup mapping"),
    "ignore-inside": ("ignore_index = 255", "ignore_index = 2", "ignore_index must be 255"),
    "palette": ("ignore_index = 255", 'ignore_index = 255\npalette = "ade"', "palette"),
    "palette-type": (
        "ignore_index = 255",
        "ignore_index = 255\npalette = 3",
        "`palette` must be a string",
    ),
    "unknown-field": ("ignore_index = 255", "ignore_index = 255\nignore = 0", "unknown fields"),
    "default-split": (
        "ignore_index = 255",
        'ignore_index = 255\ndefault_split = "val"',
        "default_split 'val'",
    ),
    "classes-int": (
        'classes = ["background", "a", "b"]',
        "classes = [1, 2]",
        "`classes` must be an array of strings",
    ),
}


@pytest.mark.parametrize("name", SPEC_EDITS)
def test_bad_dataset_specs_are_refused_on_load(tmp_path, name):
    old, new, message = SPEC_EDITS[name]
    assert old in SPEC
    path = tmp_path / "mine.toml"
    path.write_text(SPEC.replace(old, new))
    with pytest.raises(InputError, match=message) as info:
        load_spec(path)
    assert str(path) in str(info.value)


def test_ground_truth_must_be_an_array_of_tables(tmp_path):
    path = tmp_path / "mine.toml"
    head = SPEC.split("[[ground_truth]]")[0]
    path.write_text(
        head.replace("has_background = true", "has_background = true\nground_truth = 3")
    )
    with pytest.raises(InputError, match="`ground_truth` must be an array of tables"):
        load_spec(path)


def test_the_good_spec_loads(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text(SPEC)
    assert load_spec(path).ground_truth[0].raw_ids == (0, 1, 2)


def test_a_minus_one_lookup_cannot_reach_a_sweep(sample_root, tmp_path):
    """The review's case: `-1` indexed from the end and scored void pixels as a class."""
    spec = tmp_path / "voc-lookup.toml"
    classes = ", ".join(f'"c{i}"' for i in range(21))
    raw = ", ".join(str(i) for i in range(20)) + ", -1"
    spec.write_text(
        f'name = "voc-lookup"\nclasses = [{classes}]\nhas_background = true\n[splits]\ntrain = 48\n'
        '[layout]\nroots = ["VOC2012"]\nsplit_files = ["ImageSets/Segmentation/{split}.txt"]\n'
        f'[[ground_truth]]\nfolder = "SegmentationClass"\nmapping = "lookup"\nraw_ids = [{raw}]\n'
    )
    result = CliRunner().invoke(
        app,
        ["sweep", "--dataset", str(spec), "--data-root", str(sample_root), "--split", "train",
         "--activation", str(sample_root / "activation/sample-cam/npz"), "--activation-format",
         "npz", "--allow-extra-maps", "--out", str(tmp_path / "r")],
    )  # fmt: skip
    assert result.exit_code == 2 and "outside 0..254" in result.output
    assert not (tmp_path / "r").exists()


MANIFEST = Path(__file__).resolve().parents[1] / "manifests/voc2012/activation/voc2012-cam.toml"
MANIFEST_EDITS = {
    "source-int": (
        '[source]\nurl = "https',
        'source = 5\n[x]\nurl = "https',
        r"\[source\] must be a table, got an integer",
    ),
    "name-int": ('name = "voc2012-cam"', "name = 5", "`name` must be a string"),
    "files-string": ("files = 0", 'files = "0"', "`files` must be an integer"),
    "changelog-table": ("[[changelog]]", "[changelog.x]", "changelog"),
    "entry-version-int": (
        'version = "1.1.0"\ndate',
        "version = 110\ndate",
        "`version` must be a string",
    ),
}


@pytest.mark.parametrize("name", MANIFEST_EDITS)
def test_manifests_with_wrong_types_are_refused(name):
    old, new, message = MANIFEST_EDITS[name]
    text = MANIFEST.read_text()
    assert old in text
    with pytest.raises(InputError, match=message) as info:
        parse_manifest(text.replace(old, new), Path("x.toml"))
    assert "x.toml" in str(info.value)


REPORTED = """
[[reported]]
dataset = "voc2012"
split = "val"
stage = "final"
method = "Paper"
miou = 0.7
source = "https://example.org"
"""
REPORTED_EDITS = {
    "miou-string": ("miou = 0.7", 'miou = "70"', "`miou` must be a number"),
    "miou-range": ("miou = 0.7", "miou = 70", r"fraction in \[0, 1\]"),
    "stage": ('stage = "final"', 'stage = "best"', "stage 'best'"),
    "missing": ('method = "Paper"\n', "", "`method` is missing"),
    "unknown": ('method = "Paper"', 'method = "Paper"\nrank = 1', "unknown fields"),
    "javascript": ('source = "https://example.org"', 'source = "javascript:alert(1)"', "http"),
    "not-array": ("[[reported]]", "reported = 3\n[[x]]", "array of tables"),
}


@pytest.mark.parametrize("name", REPORTED_EDITS)
def test_reported_tables_with_bad_fields_are_refused(tmp_path, name):
    from wsssbed.report.leaderboard import read_reported

    old, new, message = REPORTED_EDITS[name]
    path = tmp_path / "reported.toml"
    path.write_text(REPORTED.replace(old, new))
    with pytest.raises(InputError, match=message) as info:
        read_reported(path)
    assert str(path) in str(info.value)
