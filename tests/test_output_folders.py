"""Never delete or overwrite what wsssbed did not write (issue 24, section 1).

Every command that writes a folder writes into a new or empty one, or one it wrote before
(its `.wsssbed-output` marker), replacing only the files that marker lists; anything
else is refused before any work, naming the folder, with the user's files untouched.
Each command is tried on a folder holding a user's file and on its own earlier output.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
from conftest import run_cli
from PIL import Image

from wsssbed.errors import InputError
from wsssbed.io.ownership import MARKER, STAGING, OutputFolder
from wsssbed.io.staging import Staging
from wsssbed.report.figures import FORMATS as FIGURE_FORMATS

NPZ = "activation/sample-cam/npz"


def _tree(root: Path) -> dict[str, bytes]:
    """Every file below `root` with its bytes (to prove nothing changed)."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def _user_folder(path: Path) -> dict[str, bytes]:
    """A folder of someone's maps (the 360 MB that a leaderboard once deleted, in small)."""
    (path / "maps").mkdir(parents=True)
    (path / "maps/2007_000032.npy").write_bytes(b"\x93NUMPY precious")
    (path / "notes.txt").write_text("mine")
    return _tree(path)


def _refused(result, folder: Path) -> None:
    assert result.exit_code == 2, result.output
    message = " ".join(result.stderr.split())
    assert str(folder) in message and "wsssbed did not write" in message, message


def _marker(folder: Path) -> dict:
    return json.loads((folder / MARKER).read_text())


def swept_sample(sample_root: Path, out: Path) -> Path:
    """A results folder of two runs of the sample (train and val, per-image counts)."""
    for split in ("train", "val"):
        swept = run_cli("sweep", "--data-root", sample_root, "--activation", sample_root / NPZ,
                        "--activation-format", "npz", "--allow-extra-maps", "--no-boundary",
                        "--per-image", "--split", split, "--out", out)  # fmt: skip
        assert swept.exit_code == 0, swept.stderr
    return out


@pytest.fixture(scope="module")
def results(sample_root, tmp_path_factory) -> Path:
    return swept_sample(sample_root, tmp_path_factory.mktemp("store") / "results")


@pytest.fixture
def one_run(results, tmp_path) -> Path:
    """A results folder holding only the first of `results`' runs."""
    import pyarrow.parquet as pq

    out = tmp_path / "one-run"
    shutil.copytree(results, out)
    runs = pq.read_table(out / "runs.parquet")
    pq.write_table(runs.slice(0, 1), out / "runs.parquet")
    return out


@pytest.fixture
def ids_file(sample_root, tmp_path) -> Path:
    """Three train images, to keep the generators quick."""
    ids = (sample_root / "VOC2012/ImageSets/Segmentation/train.txt").read_text().split()[:3]
    path = tmp_path / "three.txt"
    path.write_text("\n".join(ids) + "\n")
    return path


# --------------------------------------------------------------------------- the mechanism


def test_a_folder_is_claimed_only_when_new_empty_or_the_same_commands(tmp_path):
    OutputFolder.claim(tmp_path / "new", "leaderboard")
    (tmp_path / "empty").mkdir()
    OutputFolder.claim(tmp_path / "empty", "leaderboard")
    before = _user_folder(tmp_path / "user")
    with pytest.raises(InputError, match="not empty and holds files wsssbed did not write") as e:
        OutputFolder.claim(tmp_path / "user", "leaderboard", "site folder")
    assert e.value.path == tmp_path / "user" and "maps/, notes.txt" in str(e.value)
    assert _tree(tmp_path / "user") == before
    site = OutputFolder.claim(tmp_path / "site", "leaderboard")
    with site.staging() as staged:
        (staged / "index.html").write_text("v1")
        site.commit(staged)
    refusal = "holds the output of `wsssbed leaderboard`, so it cannot be the output folder of"
    with pytest.raises(InputError, match=refusal):
        OutputFolder.claim(tmp_path / "site", "sensitivity")
    assert OutputFolder.claim(tmp_path / "site", "leaderboard").owned == ("index.html",)


def test_a_commit_replaces_and_removes_only_its_own_files(tmp_path):
    root = tmp_path / "out"
    first = OutputFolder.claim(root, "sensitivity")
    with first.staging() as staged:
        for name in ("a.svg", "deep/b.svg", "c.parquet"):
            (staged / name).parent.mkdir(parents=True, exist_ok=True)
            (staged / name).write_text(f"old {name}")
        first.commit(staged)
    (root / "mine.txt").write_text("mine")
    (root / "deep/mine.txt").write_text("mine too")
    second = OutputFolder.claim(root, "sensitivity")
    with second.staging() as staged:
        (staged / "a.svg").write_text("new a")
        written = second.commit(staged)
    assert written == [root / "a.svg"]
    assert _tree(root) == {
        "a.svg": b"new a",
        "mine.txt": b"mine",
        "deep/mine.txt": b"mine too",
        MARKER: (root / MARKER).read_bytes(),
    }
    assert _marker(root)["files"] == ["a.svg"] and _marker(root)["command"] == "sensitivity"


def test_a_commit_never_replaces_a_file_it_did_not_write(tmp_path):
    root = tmp_path / "out"
    folder = OutputFolder.claim(root, "leaderboard")
    with folder.staging() as staged:
        (staged / "index.html").write_text("v1")
        folder.commit(staged)
    (root / "runs").mkdir()
    (root / "runs/x.html").write_text("a page someone wrote")
    before = _tree(root)
    again = OutputFolder.claim(root, "leaderboard")
    refusal = r"already holds runs/x.html, which wsssbed did not"
    with pytest.raises(InputError, match=refusal), again.staging() as staged:
        (staged / "runs").mkdir()
        (staged / "index.html").write_text("v2")
        (staged / "runs/x.html").write_text("generated")
        again.commit(staged)
    assert _tree(root) == before and not list(root.glob(f"{STAGING}*"))


@pytest.mark.parametrize(
    "files,message",
    [
        (["../outside.txt"], "not a path below its folder"),
        (["/etc/passwd"], "not a path below its folder"),
        (["a/./b"], "not a path below its folder"),
        ([MARKER], "a name wsssbed reserves"),
        ([7], "not a file name"),
        (["a\u0000b"], "not a file name"),  # ended in "unexpected ValueError" (red team)
        (["a\nb.html"], "not a file name"),
        (["\ud800.html"], "not a file name"),  # a lone surrogate: no file system name
        ("index.html", "`files` is not a list"),
    ],
)
def test_a_tampered_marker_cannot_make_wsssbed_remove_other_files(tmp_path, files, message):
    root = tmp_path / "site"
    root.mkdir()
    (root / MARKER).write_text(json.dumps({"command": "leaderboard", "files": files}))
    (tmp_path / "outside.txt").write_text("keep")
    with pytest.raises(InputError, match=message):
        OutputFolder.claim(root, "leaderboard")
    assert (tmp_path / "outside.txt").read_text() == "keep"


def test_a_marker_path_through_a_link_is_not_followed(tmp_path):
    root = tmp_path / "site"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "page.html").write_text("someone's page")
    root.mkdir()
    (root / "runs").symlink_to(elsewhere)
    (root / MARKER).write_text(json.dumps({"command": "leaderboard", "files": ["runs/page.html"]}))
    folder = OutputFolder.claim(root, "leaderboard")
    with pytest.raises(InputError, match="leaves its folder"), folder.staging() as staged:
        (staged / "index.html").write_text("v2")
        folder.commit(staged)
    assert (elsewhere / "page.html").read_text() == "someone's page"
    assert not (root / "index.html").exists()


def test_staging_of_a_dead_run_is_removed_and_a_live_ones_kept(tmp_path):
    root = tmp_path / "site"
    root.mkdir()
    made = ("import sys; from pathlib import Path; from wsssbed.io.ownership import STAGING; "
            "from wsssbed.io.staging import Staging; s = Staging(Path(sys.argv[1]), STAGING); "
            "(s.path / 'runs').mkdir(); print(s.path)")  # fmt: skip
    dead = Path(subprocess.run([sys.executable, "-c", made, str(root)], capture_output=True,
                               text=True, check=True).stdout.strip())  # fmt: skip
    live = Staging(root, STAGING)  # a render still running holds its marker's lock
    try:
        folder = OutputFolder.claim(root, "leaderboard")  # a killed first render counts as empty
        with folder.staging() as staged:
            (staged / "index.html").write_text("v1")
            folder.commit(staged)
        assert not dead.exists() and live.path.is_dir()
        assert sorted(p.name for p in root.iterdir()) == sorted(
            [MARKER, live.path.name, "index.html"]
        )
    finally:
        live.discard()


def test_a_failed_staged_write_leaves_no_folder_it_created(tmp_path):
    folder = OutputFolder.claim(tmp_path / "a/b/site", "leaderboard")
    with pytest.raises(RuntimeError), folder.staging() as staged:
        (staged / "index.html").write_text("half")
        raise RuntimeError("render failed")
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------- leaderboard


def test_leaderboard_refuses_a_users_folder_and_the_results_folder(results, tmp_path):
    folder = tmp_path / "my-maps"
    before = _user_folder(folder)
    refused = run_cli("leaderboard", "--results", results, "--out", folder, "--gallery", "0")
    _refused(refused, folder)
    assert _tree(folder) == before
    store = _tree(results)
    same = run_cli("leaderboard", "--results", results, "--out", results, "--gallery", "0")
    assert same.exit_code == 2 and "output of `wsssbed sweep/evaluate/submit`" in same.stderr
    assert _tree(results) == store


def test_leaderboard_into_the_current_folder(results, tmp_path, monkeypatch):
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.chdir(site)
    first = run_cli("leaderboard", "--results", results, "--out", ".", "--gallery", "0",
                    "--draws", "10")  # fmt: skip
    assert first.exit_code == 0, first.stderr
    assert (site / "index.html").is_file() and len(list((site / "runs").iterdir())) == 2
    again = run_cli("leaderboard", "--results", results, "--out", ".", "--gallery", "0",
                    "--draws", "10")  # fmt: skip
    assert again.exit_code == 0, again.stderr
    assert not [p for p in site.iterdir() if p.name.startswith(STAGING)]


def test_leaderboard_rerenders_its_site_and_keeps_a_users_file(results, one_run, tmp_path):
    site = tmp_path / "site"
    full = run_cli("leaderboard", "--results", results, "--out", site, "--gallery", "0",
                   "--draws", "10")  # fmt: skip
    assert full.exit_code == 0, full.stderr
    pages = sorted(p.name for p in (site / "runs").iterdir())
    assert len(pages) == 2
    (site / "README.md").write_text("my notes on this site")
    (site / "runs/notes.txt").write_text("mine")
    fewer = run_cli("leaderboard", "--results", one_run, "--out", site, "--gallery", "0",
                    "--draws", "10")  # fmt: skip
    assert fewer.exit_code == 0, fewer.stderr
    left = sorted(p.name for p in (site / "runs").iterdir())
    assert left == sorted([pages[0], "notes.txt"]) or left == sorted([pages[1], "notes.txt"])
    assert (site / "README.md").read_text() == "my notes on this site"
    assert set(_marker(site)["files"]) == {
        "index.html",
        "glossary.html",
        f"runs/{next(p for p in left if p != 'notes.txt')}",
    }


# ----------------------------------------------------------------------------- sensitivity


def test_sensitivity_refuses_a_users_folder_and_replaces_its_own_study(results, one_run,
                                                                       tmp_path):  # fmt: skip
    folder = tmp_path / "my-maps"
    before = _user_folder(folder)
    common = ("--halves", "2", "--draws", "10")
    _refused(run_cli("sensitivity", "--results", results, "--out", folder, *common), folder)
    assert _tree(folder) == before
    study = tmp_path / "study"
    both = run_cli("sensitivity", "--results", results, "--out", study, *common)
    assert both.exit_code == 0, both.stderr
    figures = {p.name for p in study.glob("curves_*")}
    assert len(figures) == 2 * len(FIGURE_FORMATS)  # train and val, each format
    (study / "mine.txt").write_text("mine")
    one = run_cli("sensitivity", "--results", one_run, "--out", study, *common)
    assert one.exit_code == 0, one.stderr
    assert len({p.name for p in study.glob("curves_*")}) == len(FIGURE_FORMATS)  # one split
    assert (study / "mine.txt").read_text() == "mine"
    assert sorted(_marker(study)["files"]) == sorted(
        p.name for p in study.iterdir() if p.name not in ("mine.txt", MARKER)
    )


# ------------------------------------------------------------ results: sweep and evaluate


def test_results_go_only_to_a_results_folder(sample_root, results, tmp_path):
    folder = tmp_path / "my-maps"
    before = _user_folder(folder)
    common = ("--data-root", sample_root, "--activation", sample_root / NPZ,
              "--activation-format", "npz", "--allow-extra-maps", "--no-boundary")  # fmt: skip
    _refused(run_cli("sweep", *common, "--out", folder), folder)
    _refused(
        run_cli(
            "evaluate",
            "--pred",
            sample_root / "VOC2012/SegmentationClass",
            "--data-root",
            sample_root,
            "--allow-extra-maps",
            "--out",
            folder,
        ),
        folder,
    )
    assert _tree(folder) == before
    site = tmp_path / "site"
    rendered = run_cli("leaderboard", "--results", results, "--out", site, "--gallery", "0",
                       "--draws", "10")  # fmt: skip
    assert rendered.exit_code == 0
    pages = _tree(site)
    into_site = run_cli("sweep", *common, "--out", site)
    refusal = "the output of `wsssbed leaderboard`, so it cannot be the results folder"
    assert into_site.exit_code == 2 and refusal in " ".join(into_site.stderr.split())
    assert _tree(site) == pages
    legacy = tmp_path / "legacy"  # a results folder from before markers: its tables say so
    shutil.copytree(results, legacy)
    (legacy / MARKER).unlink()
    (legacy / "README.md").write_text("my lab's runs")
    appended = run_cli("sweep", *common, "--out", legacy)
    assert appended.exit_code == 0, appended.stderr
    assert (legacy / "README.md").read_text() == "my lab's runs"
    assert _marker(legacy)["command"] == "sweep/evaluate/submit"


# --------------------------------------------------------------------------- generators


def test_pseudo_labels_refuse_a_users_folder_and_resume_their_own(sample_root, ids_file,
                                                                   tmp_path):  # fmt: skip
    common = ("--data-root", sample_root, "--split", ids_file, "--activation",
              sample_root / NPZ, "--activation-format", "npz", "--generator", "bg-threshold",
              "--threshold", "0.3")  # fmt: skip
    folder = tmp_path / "my-maps"
    before = _user_folder(folder)
    _refused(run_cli("pseudo-labels", *common, "--out", folder), folder)
    assert _tree(folder) == before
    out = tmp_path / "labels"
    first = run_cli("pseudo-labels", *common, "--out", out)
    assert first.exit_code == 0, first.stderr
    (out / "mine.txt").write_text("mine")
    labels = {p.name: p.read_bytes() for p in out.glob("*.png")}
    (out / sorted(labels)[0]).unlink()
    again = run_cli("pseudo-labels", *common, "--out", out)
    assert again.exit_code == 0 and "1 written, 2 already there" in again.stdout
    assert {p.name: p.read_bytes() for p in out.glob("*.png")} == labels
    assert (out / "mine.txt").read_text() == "mine" and _marker(out)["command"] == "pseudo-labels"
    refine = run_cli("refine", "--pred", out, "--data-root", sample_root, "--split", ids_file,
                     "--out", out)  # fmt: skip
    refusal = "output of `wsssbed pseudo-labels`, so it cannot be the output folder of `wsssbed r"
    assert refine.exit_code == 2 and refusal in " ".join(refine.stderr.split())


def test_refine_refuses_a_users_folder_and_reuses_its_own(sample_root, ids_file, tmp_path):
    pred = sample_root / "VOC2012/SegmentationClass"
    common = ("--pred", pred, "--data-root", sample_root, "--split", ids_file)
    folder = tmp_path / "my-maps"
    before = _user_folder(folder)
    _refused(run_cli("refine", *common, "--out", folder), folder)
    assert _tree(folder) == before
    out = tmp_path / "refined"
    assert run_cli("refine", *common, "--out", out).exit_code == 0
    (out / "mine.txt").write_text("mine")
    again = run_cli("refine", *common, "--out", out)
    assert again.exit_code == 0 and "0 written, 3 already there" in again.stdout
    assert (out / "mine.txt").read_text() == "mine" and _marker(out)["command"] == "refine"


@pytest.mark.parametrize("command", ["clip-activations", "saliency"])
def test_foundation_generators_refuse_a_users_folder_before_loading(sample_root, tmp_path,
                                                                    command):  # fmt: skip
    """The claim comes before any model is read: these weights do not even exist."""
    folder = tmp_path / "my-maps"
    before = _user_folder(folder)
    models = ["--clip-weights", tmp_path / "none.bin", "--clip-model", "ViT-B-16"]
    if command == "saliency":
        models += ["--sam-checkpoint", tmp_path / "none.pth"]
    _refused(run_cli(command, *models, "--data-root", sample_root, "--out", folder), folder)
    assert _tree(folder) == before


def test_foundation_generators_reuse_their_own_folder(sample_root, ids_file, tmp_path):
    from foundation_fixtures import save_tiny_clip

    (tmp_path / "clip").mkdir()
    config, weights = save_tiny_clip(tmp_path / "clip")
    out = tmp_path / "cams"
    common = ("clip-activations", "--clip-weights", weights, "--clip-config", config,
              "--data-root", sample_root, "--split", ids_file, "--device", "cpu",
              "--out", out)  # fmt: skip
    first = run_cli(*common)
    assert first.exit_code == 0, first.stderr
    (out / "mine.txt").write_text("mine")
    again = run_cli(*common)
    assert again.exit_code == 0 and "0 written, 3 already there" in again.stdout
    assert (out / "mine.txt").read_text() == "mine"
    assert _marker(out)["command"] == "clip-activations"


def test_boxes_never_replace_an_existing_file(sample_root, tmp_path):
    precious = tmp_path / "boxes.json"
    precious.write_text('{"mine": []}')
    refused = run_cli("boxes", "--detector-weights", tmp_path / "nowhere", "--data-root",
                      sample_root, "--out", precious)  # fmt: skip
    assert refused.exit_code == 2 and "already exists" in refused.stderr
    assert str(precious) in " ".join(refused.stderr.split())
    assert precious.read_text() == '{"mine": []}'


# ------------------------------------------------------------------------------ datasets


def _voc_source(tmp_path: Path, ids: tuple[str, ...] = ("a", "b")) -> Path:
    voc = tmp_path / "src/VOCdevkit/VOC2012"
    rng = np.random.default_rng(0)
    for image_id in ids:
        (voc / "SegmentationClass").mkdir(parents=True, exist_ok=True)
        (voc / "JPEGImages").mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.choice(np.array([0, 15], np.uint8), (6, 8))).save(
            voc / "SegmentationClass" / f"{image_id}.png"
        )
        Image.fromarray(rng.integers(0, 255, (6, 8, 3), dtype=np.uint8)).save(
            voc / "JPEGImages" / f"{image_id}.jpg"
        )
    (voc / "ImageSets/Segmentation").mkdir(parents=True, exist_ok=True)
    (voc / "ImageSets/Segmentation/train.txt").write_text(f"{ids[0]}\n")
    (voc / "ImageSets/Segmentation/val.txt").write_text("\n".join(ids[1:]) + "\n")
    return tmp_path / "src"


def test_prepare_refuses_a_users_folder_and_replaces_its_own_root(tmp_path):
    source = _voc_source(tmp_path)
    folder = tmp_path / "my-maps"
    before = _user_folder(folder)
    _refused(run_cli("datasets", "prepare", "voc2012", "--from", source, "--out", folder), folder)
    assert _tree(folder) == before
    out = tmp_path / "data"
    assert run_cli("datasets", "prepare", "voc2012", "--from", source, "--out", out).exit_code == 0
    (out / "VOC2012/saliency").mkdir()
    (out / "VOC2012/saliency/a.png").write_bytes(b"my saliency map")
    shutil.rmtree(tmp_path / "src")
    smaller = _voc_source(tmp_path, ("a", "c"))
    again = run_cli("datasets", "prepare", "voc2012", "--from", smaller, "--out", out)
    assert again.exit_code == 0, again.stderr
    assert (out / "VOC2012/saliency/a.png").read_bytes() == b"my saliency map"
    assert not (out / "VOC2012/SegmentationClass/b.png").exists()  # its own, no longer made
    assert (out / "VOC2012/SegmentationClass/c.png").is_file()
    assert (out / "VOC2012/ImageSets/Segmentation/val.txt").read_text() == "c\n"
    assert "VOC2012/saliency/a.png" not in _marker(out)["files"]
    assert not list(tmp_path.glob(".data.partial-*"))


def test_convert_coco_refuses_a_users_folder_and_adds_splits_to_its_own(tmp_path):
    pytest.importorskip("pycocotools")
    annotations = tmp_path / "instances_val2014.json"
    image = {"id": 1, "file_name": "COCO_val2014_000000000001.jpg", "height": 4, "width": 5}
    annotations.write_text(json.dumps({"images": [image], "annotations": []}))
    folder = tmp_path / "my-maps"
    before = _user_folder(folder)
    convert = ("datasets", "convert-coco", "--annotations", annotations)
    _refused(run_cli(*convert, "--split", "val", "--out", folder), folder)
    assert _tree(folder) == before
    out = tmp_path / "coco"
    assert run_cli(*convert, "--split", "val", "--out", out).exit_code == 0
    assert run_cli(*convert, "--split", "train", "--out", out).exit_code == 0
    assert (out / "ImageSets/val.txt").is_file() and (out / "ImageSets/train.txt").is_file()


def test_sample_refuses_a_users_folder(tmp_path):
    folder = tmp_path / "my-maps"
    before = _user_folder(folder)
    _refused(run_cli("sample", "--path", folder), folder)
    assert _tree(folder) == before


# ------------------------------------------------------------------ submit and fetch


def _train_maps_zip(sample_root: Path, path: Path) -> Path:
    ids = (sample_root / "VOC2012/ImageSets/Segmentation/train.txt").read_text().split()
    with tarfile.open(path, "w") as handle:
        for image_id in ids:
            handle.add(sample_root / NPZ / f"{image_id}.npz", f"maps/{image_id}.npz")
    return path


def test_submit_refuses_a_users_folder_in_its_place(sample_root, tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("WSSSBED_HOME", str(home))
    archive = _train_maps_zip(sample_root, tmp_path / "maps.tar")
    command = ("submit", archive, "--dataset", "voc2012", "--data-root", sample_root,
               "--split", "train", "--format", "npz", "--name", "mine")  # fmt: skip
    folder = tmp_path / "my-maps"
    before = _user_folder(folder)
    _refused(run_cli(*command, "--out", folder), folder)
    assert _tree(folder) == before
    unpacked = home / "maps/mine/1.0.0"
    before = _user_folder(unpacked)
    _refused(run_cli(*command, "--out", tmp_path / "r"), unpacked)
    assert _tree(unpacked) == before
    shutil.rmtree(unpacked)
    stale = OutputFolder.claim(unpacked, "submit")  # what a killed earlier try leaves
    with stale.staging() as staged:
        (staged / "maps").mkdir()
        (staged / "maps/old.npz").write_bytes(b"stale")
        stale.commit(staged)
    done = run_cli(*command, "--out", tmp_path / "r")
    assert done.exit_code == 0, done.stderr
    assert not (unpacked / "maps/old.npz").exists() and len(list(unpacked.glob("maps/*"))) == 48
