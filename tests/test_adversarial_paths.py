"""Paths built from data never leave their root (issue 25, section 1).

Ids (image ids from split and label lists, COCO file names, boxes JSON keys, run and
image ids of results tables) are checked where they are read by one function,
`wsssbed.io.names.check_id`, and every written path goes through
`wsssbed.io.outputs.inside`. The payloads are built here: tar archives with `tarfile`,
results folders with pyarrow.
"""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import run_cli
from PIL import Image
from test_output_folders import swept_sample

from wsssbed.datasets import get_dataset
from wsssbed.datasets.local import LocalDataset, read_id_list, read_label_list
from wsssbed.errors import InputError
from wsssbed.io.names import MAX_ID_BYTES, check_id, id_problem
from wsssbed.io.outputs import inside
from wsssbed.models.boxes import read_boxes

VOC = get_dataset("voc2012")
NPZ = "activation/sample-cam/npz"
BAD_IDS = [
    ("../../../X", "path separator"),
    ("/tmp/victim", "path separator"),
    ("a\\..\\..\\b", "path separator"),
    ("..", "starts with a dot"),
    (".hidden", "starts with a dot"),
    ("a\x00b", "control character"),
    ("a\x1bb", "control character"),
    ("a\x85b", "control character"),
    ("", "is empty"),
    ("x" * (MAX_ID_BYTES + 1), "byte limit"),
    ("\udcff", "not valid Unicode"),
    (7, "not text"),
    (None, "not text"),
]


def _files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file()}


@pytest.mark.parametrize("value,problem", BAD_IDS)
def test_the_id_rule_refuses_what_cannot_be_one_file_name(value, problem, tmp_path):
    assert problem in id_problem(value)
    with pytest.raises(InputError) as info:
        check_id(value, "image id", tmp_path / "list.txt", "line 3: ")
    assert info.value.path == tmp_path / "list.txt"
    assert str(info.value).startswith(f"{tmp_path / 'list.txt'}: line 3: image id ")


@pytest.mark.parametrize("value", ["2007_000032", "COCO_val2014_000000000042", "a.b", "ä-ß 1",
                                   "x" * MAX_ID_BYTES, "ADE_val_00000001"])  # fmt: skip
def test_real_ids_pass(value):
    assert check_id(value) == value


def test_inside_refuses_a_path_that_resolves_elsewhere(tmp_path):
    root = tmp_path / "out"
    (root / "runs").mkdir(parents=True)
    (root / "link").symlink_to(tmp_path)
    assert inside(root, "runs", "a.html") == root / "runs/a.html"
    for parts in (("..", "x.png"), ("link", "x.png"), ("/etc/x.png",), ("runs", "..", "..")):
        with pytest.raises(InputError, match="leaves its folder"):
            inside(root, *parts)


# ------------------------------------------------------------------------------ lists


@pytest.mark.parametrize("ending", [b"\n", b"\r\n"])
@pytest.mark.parametrize("bom", [b"", b"\xef\xbb\xbf"])
def test_windows_lists_read_as_unix_ones(tmp_path, ending, bom):
    ids = tmp_path / "ids.txt"
    ids.write_bytes(bom + ending.join([b"2007_000032", b"2007_000039", b""]))
    assert read_id_list(ids) == ["2007_000032", "2007_000039"]
    labels = tmp_path / "labels.txt"
    labels.write_bytes(bom + ending.join([b"2007_000032 0 14", b"2007_000039 19", b""]))
    assert read_label_list(labels, VOC) == {"2007_000032": (1, 15), "2007_000039": (20,)}


def test_a_windows_id_list_scores_as_the_unix_one(sample_root, tmp_path):
    ids = (sample_root / "VOC2012/ImageSets/Segmentation/train.txt").read_text().split()[:5]
    unix, windows = tmp_path / "unix.txt", tmp_path / "windows.txt"
    unix.write_text("\n".join(ids) + "\n")
    windows.write_bytes(b"\xef\xbb\xbf" + "\r\n".join(ids).encode() + b"\r\n")
    scores = []
    for split in (unix, windows):
        swept = run_cli("sweep", "--data-root", sample_root, "--split", split, "--activation",
                        sample_root / NPZ, "--activation-format", "npz", "--allow-extra-maps",
                        "--no-boundary", "--json", "--out", tmp_path / "r")  # fmt: skip
        assert swept.exit_code == 0, swept.stderr
        summary = json.loads(swept.stdout)
        scores.append((summary["n_images"], summary["best"]["miou"]))
    assert scores[0] == scores[1] and scores[0][0] == 5


TOKENS = [(v, p) for v, p in BAD_IDS[:9] if v.split() == [v]]  # whitespace splits a line


@pytest.mark.parametrize("value,problem", TOKENS)
def test_bad_ids_in_lists_are_refused_with_the_line(tmp_path, value, problem):
    ids = tmp_path / "ids.txt"
    ids.write_bytes(b"2007_000032\n" + value.encode("utf-8") + b" 3\n")
    with pytest.raises(InputError, match=f"line 2: image id .* {problem}") as info:
        read_id_list(ids)
    assert info.value.path == ids
    with pytest.raises(InputError, match=f"line 2: image id .* {problem}") as info:
        read_label_list(ids, VOC)
    assert info.value.path == ids


def test_ids_of_a_mask_folder_are_checked(tmp_path):
    folder = tmp_path / "ADEChallengeData2016/annotations/training"
    folder.mkdir(parents=True)
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(folder / "ADE_train_1.png")
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(folder / ".ADE_train_2.png")
    local = LocalDataset(get_dataset("ade20k"), tmp_path, "training")
    with pytest.raises(InputError, match="starts with a dot") as info:
        local.ids  # noqa: B018
    assert info.value.path == folder / ".ADE_train_2.png"


def test_an_id_file_with_a_traversal_writes_no_pseudo_label(sample_root, tmp_path):
    ids = tmp_path / "ids.txt"
    ids.write_text("sample_0000\n../../escaped\n")
    out = tmp_path / "a/b/labels"
    result = run_cli("pseudo-labels", "--data-root", sample_root, "--split", ids, "--activation",
                     sample_root / NPZ, "--activation-format", "npz", "--generator",
                     "bg-threshold", "--threshold", "0.3", "--out", out)  # fmt: skip
    assert result.exit_code == 2
    message = " ".join(result.stderr.split())
    assert str(ids) in message and "'../../escaped'" in message
    assert not (tmp_path / "escaped.png").exists() and not list(tmp_path.rglob("*.png"))


def test_boxes_json_keys_are_ids(tmp_path):
    path = tmp_path / "boxes.json"
    path.write_text(json.dumps({"2007_000032": [], "../x": []}))
    with pytest.raises(InputError, match=r"image id '\.\./x' holds a path separator") as info:
        read_boxes(path, VOC)
    assert info.value.path == path


# ---------------------------------------------------------------------- prepare voc2012


def _tree(root: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}


def _mask(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((4, 6), 15, np.uint8)).save(path)


def _voc_sources(tmp_path: Path, train_ids: list[str], nest: str = "") -> list[Path]:
    """A VOCtrainval-like tar whose train.txt lists `train_ids`, VOC2012 nested below
    `nest`, with a mask `X.png` at the archive's root (where `../../../X` finds one), and
    an SBD folder (so that prepare writes SegmentationClassAug)."""
    top = tmp_path / "voc"
    folder = top / nest / "VOCdevkit/VOC2012"
    for image_id in ("a", "b"):
        _mask(folder / "SegmentationClass" / f"{image_id}.png")
    _mask(top / "X.png")
    (folder / "ImageSets/Segmentation").mkdir(parents=True)
    (folder / "ImageSets/Segmentation/train.txt").write_text("\n".join(train_ids) + "\n")
    (folder / "ImageSets/Segmentation/val.txt").write_text("b\n")
    archive = tmp_path / "VOCtrainval.tar"
    with tarfile.open(archive, "w") as handle:
        handle.add(top, "", recursive=True)
    sbd = tmp_path / "sbd/benchmark_RELEASE/dataset"
    (sbd / "cls").mkdir(parents=True)
    (sbd / "train.txt").write_text("a\n")
    (sbd / "val.txt").write_text("b\n")
    return [archive, tmp_path / "sbd"]


def _prepare(sources: list[Path], out: Path):
    return run_cli("datasets", "prepare", "voc2012", *(a for s in sources for a in ("--from", s)),
                   "--out", out)  # fmt: skip


def test_prepare_refuses_a_split_id_that_climbs_out_of_the_data_root(tmp_path):
    """`../../../X` read X.png from the archive's root and wrote X.png beside --out."""
    sources = _voc_sources(tmp_path / "src", ["a", "../../../X"])
    out = tmp_path / "work/data"
    before = _tree(tmp_path)
    result = _prepare(sources, out)
    assert result.exit_code == 2, result.stdout
    message = " ".join(result.stderr.split())
    assert "train.txt: line 2: image id '../../../X' holds a path separator" in message
    assert _tree(tmp_path) == before  # nothing written anywhere, not even inside --out
    assert not (tmp_path / "work/X.png").exists() and not list((tmp_path / "work").iterdir())


@pytest.mark.parametrize("absolute", [False, True])
def test_prepare_never_rewrites_a_png_an_id_names(tmp_path, absolute):
    """With enough `../` (VOC2012 nested deep) or an absolute id, the read and the write
    both reached an existing PNG of the attacker's choosing, which was rewritten."""
    victim = tmp_path / "elsewhere/victim.png"
    _mask(victim)
    target = str(victim.with_suffix(""))
    bad = target if absolute else "../" * 40 + target.lstrip("/")
    sources = _voc_sources(tmp_path / "src", ["a", bad], nest="x/y/z")
    before = _tree(tmp_path)
    result = _prepare(sources, tmp_path / "work/data")
    assert result.exit_code == 2 and "holds a path separator" in result.stderr
    assert _tree(tmp_path) == before and not list((tmp_path / "work").iterdir())


def test_prepare_refuses_a_coco_file_name_that_is_not_one_file(tmp_path):
    pytest.importorskip("pycocotools")
    annotations = tmp_path / "instances_val2014.json"
    images = [{"id": 1, "file_name": "COCO_val2014_1.jpg", "height": 3, "width": 3},
              {"id": 2, "file_name": "sub/.jpg", "height": 3, "width": 3}]  # fmt: skip
    annotations.write_text(json.dumps({"images": images, "annotations": []}))
    result = run_cli("datasets", "prepare", "coco2014", "--from", annotations, "--out",
                     tmp_path / "data")  # fmt: skip
    message = " ".join(result.stderr.split())
    assert result.exit_code == 2 and str(annotations) in message and "'.jpg'" in message
    assert not (tmp_path / "data").exists()


# ------------------------------------------------------------------ results folders


def _with_run_id(results: Path, out: Path, run_id: str) -> Path:
    """A copy of `results` whose first run is renamed `run_id` in every table."""
    out.mkdir(parents=True)
    old = pq.read_table(results / "runs.parquet").column("run_id")[0].as_py()
    for path in results.glob("*.parquet"):
        table = pq.read_table(path)
        ids = [run_id if v == old else v for v in table.column("run_id").to_pylist()]
        index = table.schema.get_field_index("run_id")
        table = table.set_column(index, "run_id", pa.array(ids, pa.string()))
        pq.write_table(table, out / path.name)
    return out


@pytest.fixture(scope="module")
def results(sample_root, tmp_path_factory) -> Path:
    return swept_sample(sample_root, tmp_path_factory.mktemp("store") / "results")


@pytest.mark.parametrize("run_id", ["../../X", "../../../../../../../../tmp/X", ".X", "a/b"])
@pytest.mark.parametrize("command", ["leaderboard", "sensitivity"])
def test_a_run_id_cannot_write_outside_the_site(results, tmp_path, run_id, command):
    crafted = _with_run_id(results, tmp_path / "deep/er/crafted", run_id)
    site = tmp_path / "deep/er/site"
    before = _files(tmp_path)
    result = run_cli(command, "--results", crafted, "--out", site, "--draws", "10")
    assert result.exit_code == 2, result.stdout
    message = " ".join(result.stderr.split())
    assert str(crafted / "runs.parquet") in message and repr(run_id) in message
    assert _files(tmp_path) == before and not site.exists()


def test_an_image_id_in_per_image_counts_is_checked(results, tmp_path):
    crafted = tmp_path / "crafted"
    crafted.mkdir()
    for path in results.glob("*.parquet"):
        table = pq.read_table(path)
        if path.name == "per_image.parquet":
            ids = table.column("image_id").to_pylist()
            ids[0] = "..\x00"
            index = table.schema.get_field_index("image_id")
            table = table.set_column(index, "image_id", pa.array(ids, pa.string()))
        pq.write_table(table, crafted / path.name)
    result = run_cli("leaderboard", "--results", crafted, "--out", tmp_path / "site")
    message = " ".join(result.stderr.split())
    assert result.exit_code == 2 and "per_image.parquet" in message and "image_id" in message
    assert not (tmp_path / "site").exists()
