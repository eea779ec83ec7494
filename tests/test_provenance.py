"""Provenance that cannot be fooled by accident: a local copy is pinned as a catalogue
entry only when it covers the entry's split exactly; where each digest came from is
recorded; `fetch --path` takes the release's archive; `forget` undoes a registration."""

from __future__ import annotations

import hashlib
import json
import shutil
import zipfile

import numpy as np
import pandas as pd
import pytest
from conftest import run_cli
from PIL import Image

from wsssbed.activation import digest_maps
from wsssbed.catalogue.forget import forget
from wsssbed.catalogue.lookup import CATALOGUE, local_folder, resolve, write_manifest
from wsssbed.catalogue.manifest import ChangelogEntry, Content, Manifest, Source
from wsssbed.errors import InputError

CAM = "voc2012-cam"  # a catalogue entry: voc2012 train_aug, png-per-class, not pinned


def _ids(root, split):
    return (root / f"VOC2012/ImageSets/Segmentation/{split}.txt").read_text().split()


def _unregistered(home):
    """Nothing of the refused copy was written: the name resolves to the catalogue's."""
    assert resolve(CAM).path.is_relative_to(CATALOGUE)
    assert not (home / "manifests").exists() and not (home / "maps").exists()


def _per_class_files(sample_root, ids):
    """The png-per-class files the sample's masks call for: `<id>_<key>.png` per label,
    read from each mask with numpy (independent of wsssbed's own reader)."""
    names = set()
    for image_id in ids:
        mask = np.asarray(Image.open(sample_root / f"VOC2012/SegmentationClass/{image_id}.png"))
        present = [c for c in np.unique(mask).tolist() if 1 <= c <= 20]
        names |= {f"{image_id}_{c - 1}.png" for c in present}
    return names


def test_the_sample_maps_are_exactly_what_train_aug_calls_for(sample_root, sample_train_aug):
    """The fixture the other tests stand on: the sample's per-class files are exactly the
    labels of the 72 images its train_aug lists."""
    ids = _ids(sample_train_aug, "train_aug")
    assert len(ids) == 72
    folder = sample_root / "activation/sample-cam/png-per-class"
    assert {p.name for p in folder.glob("*.png")} == _per_class_files(sample_root, ids)


def test_val_maps_registered_as_train_aug_are_refused_with_counts(
    sample_root, sample_train_aug, tmp_path, wsssbed_home
):
    """The case that fooled `verify`: maps of another split under a catalogue name."""
    val = tmp_path / "val-maps"
    val.mkdir()
    source = sample_root / "activation/sample-cam/png-per-class"
    for image_id in _ids(sample_root, "val"):
        for path in source.glob(f"{image_id}_*.png"):
            shutil.copy(path, val)
    result = run_cli("fetch", CAM, "--path", val, "--data-root", sample_train_aug)
    message = " ".join(result.stderr.split())
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "the split has 72 images" in message and "maps (<id>_<class>.png) of 24" in message
    assert "48 images of the split without maps" in message and str(val) in message
    _unregistered(wsssbed_home)
    assert run_cli("verify", CAM).exit_code == 2  # nothing to call "ok"


@pytest.mark.parametrize(
    "damage,expected",
    [
        (
            "drop-label",
            "missing maps of labelled classes for 1 image (image and keys: sample_0002 [14])",
        ),
        ("extra-label", "not labelled with for 1 image (sample_0002 [5])"),
        ("extra-image", "maps of 1 image outside the split (zz_extra)"),
        ("drop-image", "1 image of the split without maps (sample_0071)"),
    ],
)
def test_a_copy_that_differs_from_the_split_by_one_file_is_refused(
    sample_root, sample_train_aug, tmp_path, wsssbed_home, damage, expected
):
    folder = tmp_path / "maps"
    shutil.copytree(sample_root / "activation/sample-cam/png-per-class", folder)
    first = folder / "sample_0002_14.png"  # sample_0002 is labelled 12 and 14
    if damage == "drop-label":
        first.unlink()
    elif damage == "extra-label":
        shutil.copy(first, folder / "sample_0002_5.png")
    elif damage == "extra-image":
        shutil.copy(first, folder / "zz_extra_14.png")
    else:
        for path in folder.glob("sample_0071_*.png"):
            path.unlink()
    (folder / "README.txt").write_text("not a map: ignored, as the digest ignores it")
    result = run_cli("fetch", CAM, "--path", folder, "--data-root", sample_train_aug)
    message = " ".join(result.stderr.split())
    assert result.exit_code == 2, result.output
    assert expected in message
    _unregistered(wsssbed_home)


def test_a_copy_covering_an_unofficial_list_is_not_pinned(
    sample_root, sample_train_aug, tmp_path, wsssbed_home
):
    """A real data root whose train_aug.txt lists 72 ids is not VOC's train_aug (10,582):
    maps covering it exactly prove nothing of the catalogue entry, so nothing is pinned.
    (The sample's own root is marked synthetic: its lists are its own.)"""
    from wsssbed.datasets.sanity import SYNTHETIC

    root = tmp_path / "real-looking"
    shutil.copytree(sample_train_aug, root, symlinks=True)
    (root / SYNTHETIC).unlink()
    folder = sample_root / "activation/sample-cam/png-per-class"
    result = run_cli("fetch", CAM, "--path", folder, "--data-root", root)
    message = " ".join(result.stderr.split())
    assert result.exit_code == 2, result.output
    assert "72 images, not the official voc2012 train_aug (10,582 images)" in message
    assert "pinned as voc2012-cam@" in message and "official train_aug list" in message
    _unregistered(wsssbed_home)


def test_a_first_local_copy_needs_the_data_root_to_be_pinned(sample_root, wsssbed_home):
    folder = sample_root / "activation/sample-cam/png-per-class"
    result = run_cli("fetch", CAM, "--path", folder)
    assert result.exit_code == 2 and "--data-root" in result.stderr
    _unregistered(wsssbed_home)
    # another split's list under the data root: named in the error
    result = run_cli("fetch", CAM, "--path", folder, "--data-root", sample_root)
    assert result.exit_code == 2 and "train_aug" in result.stderr
    _unregistered(wsssbed_home)


def test_saliency_copies_are_checked_image_by_image(sample_root, sample_train_aug, tmp_path):
    folder = tmp_path / "sal"
    shutil.copytree(sample_root / "saliency/sample-sal", folder)
    (folder / "sample_0005.png").unlink()
    result = run_cli("fetch", "voc2012-sal-move", "--path", folder, "--data-root", sample_train_aug)
    assert result.exit_code == 2 and "1 image of the split without maps" in result.stderr
    shutil.copy(sample_root / "saliency/sample-sal/sample_0005.png", folder)
    good = run_cli("fetch", "voc2012-sal-move", "--path", folder, "--data-root", sample_train_aug)
    assert good.exit_code == 0, good.stderr
    assert resolve("voc2012-sal-move").content.files == 72


def test_where_each_digest_came_from_is_in_the_manifest_and_the_runs(
    sample_root, sample_train_aug, tmp_path
):
    folder = sample_root / "activation/sample-cam/png-per-class"
    fetched = run_cli("fetch", CAM, "--path", folder, "--data-root", sample_train_aug)
    assert fetched.exit_code == 0, fetched.stderr
    assert "pinned from a first local copy" in " ".join(fetched.stdout.split())
    pinned = resolve(CAM)
    assert pinned.content.pinned_from == "local-copy"
    assert pinned.content.digest == digest_maps(folder, "png-per-class").digest
    assert 'pinned_from = "local-copy"' in pinned.path.read_text()
    listed = json.loads(run_cli("manifests", "--kind", "activation", "--json").stdout)
    assert {r["name"]: r["pinned_from"] for r in listed}[CAM] == "local-copy"
    # a later copy is checked against the pin (no data root needed) and keeps its origin
    again = run_cli("fetch", CAM, "--path", folder)
    assert again.exit_code == 0 and resolve(CAM).content.pinned_from == "local-copy"

    out = tmp_path / "results"
    swept = run_cli("sweep", "--method", CAM, "--data-root", sample_root, "--split", "train",
                    "--thresholds", "0.1,0.3", "--no-boundary", "--out", out)  # fmt: skip
    assert swept.exit_code == 0, swept.stderr
    record = json.loads(pd.read_parquet(out / "runs.parquet").manifests.iloc[0])[0]
    assert record["name"] == CAM and record["pinned_from"] == "local-copy"
    assert record["verified"] is True


def test_a_submission_records_that_its_digest_is_the_submitters(sample_root, tmp_path):
    maps = tmp_path / "mine"
    maps.mkdir()
    for image_id in _ids(sample_root, "train"):
        shutil.copy(sample_root / f"activation/sample-cam/npz/{image_id}.npz", maps)
    result = run_cli("submit", maps, "--dataset", "voc2012", "--data-root", sample_root,
                     "--split", "train", "--format", "npz", "--name", "mine", "--out",
                     tmp_path / "r")  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert resolve("mine").content.pinned_from == "submission"
    record = json.loads(pd.read_parquet(tmp_path / "r/runs.parquet").manifests.iloc[0])[0]
    assert record["pinned_from"] == "submission"


def test_pinned_from_is_validated(tmp_path):
    manifest = Manifest("odd", "1.0.0", "saliency", "voc2012", "train",
                        source=Source(path=str(tmp_path)), content=Content("png", "", 0, "x"),
                        changelog=[ChangelogEntry("1.0.0", "2026-11-29", "t")])  # fmt: skip
    write_manifest(manifest)
    with pytest.raises(InputError, match="pinned_from"):
        resolve("odd")


def _zip(folder, archive, inner="VOC2012_CAM"):
    """An archive laid out as WSSS-BED's release zips are: one folder of maps."""
    with zipfile.ZipFile(archive, "w") as handle:
        for path in sorted(folder.iterdir()):
            handle.write(path, f"{inner}/{path.name}")
    return archive


def test_fetch_path_takes_the_release_archive_itself(
    sample_root, sample_train_aug, tmp_path, wsssbed_home
):
    folder = sample_root / "activation/sample-cam/png-per-class"
    archive = _zip(folder, tmp_path / "VOC2012_CAM.zip")
    kept = hashlib.sha256(archive.read_bytes()).hexdigest()
    result = run_cli("fetch", CAM, "--path", archive, "--data-root", sample_train_aug)
    assert result.exit_code == 0, result.stderr
    pinned = resolve(CAM)
    extracted = local_folder(pinned)
    assert extracted == wsssbed_home.resolve() / f"maps/{CAM}/{pinned.version}/VOC2012_CAM"
    assert pinned.content.digest == digest_maps(folder, "png-per-class").digest
    assert pinned.content.pinned_from == "local-copy" and pinned.source.sha256 == ""
    assert hashlib.sha256(archive.read_bytes()).hexdigest() == kept  # the user's file stays

    # another archive with one map changed: refused by the pin, the registered copy stays
    changed = tmp_path / "changed"
    shutil.copytree(folder, changed)
    first = sorted(changed.glob("*.png"))[0]
    first.write_bytes(sorted(changed.glob("*.png"))[1].read_bytes())
    refused = run_cli("fetch", CAM, "--path", _zip(changed, tmp_path / "changed.zip"))
    assert refused.exit_code == 2 and "digest mismatch" in refused.stderr
    assert resolve(CAM) == pinned and digest_maps(extracted, "png-per-class") == digest_maps(
        folder, "png-per-class"
    )


def test_a_partial_or_unsafe_archive_leaves_nothing(
    sample_root, sample_train_aug, tmp_path, wsssbed_home
):
    partial = tmp_path / "partial"
    partial.mkdir()
    for path in sorted((sample_root / "activation/sample-cam/png-per-class").iterdir())[:30]:
        shutil.copy(path, partial)
    refused = run_cli("fetch", CAM, "--path", _zip(partial, tmp_path / "p.zip"),
                      "--data-root", sample_train_aug)  # fmt: skip
    assert refused.exit_code == 2 and "of the split without maps" in refused.stderr
    _unregistered(wsssbed_home)
    unsafe = tmp_path / "unsafe.zip"
    with zipfile.ZipFile(unsafe, "w") as handle:
        handle.writestr("../escape_0.png", b"x")
    refused = run_cli("fetch", CAM, "--path", unsafe, "--data-root", sample_train_aug)
    assert refused.exit_code == 2 and "leaves the extraction folder" in refused.stderr
    assert not (tmp_path / "escape_0.png").exists()
    _unregistered(wsssbed_home)
    missing = run_cli("fetch", CAM, "--path", tmp_path / "nothing.zip")
    assert missing.exit_code == 2 and "no such file" in missing.stderr


def _tree(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def test_forget_removes_the_registration_and_wsssbeds_copy_only(
    sample_root, sample_train_aug, tmp_path, wsssbed_home
):
    catalogue_file = CATALOGUE / "voc2012/activation/voc2012-cam.toml"
    shipped = catalogue_file.read_bytes()
    # a folder registered with --path is the user's: the manifest goes, the folder stays
    folder = tmp_path / "my-cams"
    shutil.copytree(sample_root / "activation/sample-cam/png-per-class", folder)
    before = _tree(folder)
    assert run_cli("fetch", CAM, "--path", folder, "--data-root", sample_train_aug).exit_code == 0
    result = run_cli("forget", CAM)
    assert result.exit_code == 0, result.stderr
    assert "kept your folder" in result.stdout and _tree(folder) == before
    assert resolve(CAM).path == catalogue_file and not resolve(CAM).content.digest
    # maps wsssbed extracted from an archive, and leftover downloads of that name, go
    archive = _zip(folder, tmp_path / "cam.zip")
    assert run_cli("fetch", CAM, "--path", archive, "--data-root", sample_train_aug).exit_code == 0
    downloads = wsssbed_home / "downloads"
    downloads.mkdir()
    (downloads / f"{CAM}-1.1.0.zip.part").write_bytes(b"partial")
    (downloads / f"{CAM}-1.1.0.zip.part.json").write_bytes(b"{}")
    (downloads / f"{CAM}-wsssbed-1.1.0.zip.part").write_bytes(b"another name's")
    # the user's files that merely share the prefix are not fetch's (red team, last round)
    (downloads / f"{CAM}-1.1.0.thesis.tex").write_bytes(b"precious")
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"linked")
    (downloads / f"{CAM}-1.1.0.zip").symlink_to(victim)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.png").write_bytes(b"x")
    result = run_cli("forget", CAM)
    assert result.exit_code == 0, result.stderr
    assert not (wsssbed_home / "maps").exists() and not (wsssbed_home / "manifests").exists()
    assert sorted(p.name for p in downloads.iterdir()) == [
        f"{CAM}-1.1.0.thesis.tex",
        f"{CAM}-1.1.0.zip",
        f"{CAM}-wsssbed-1.1.0.zip.part",
    ]
    assert victim.read_bytes() == b"linked"
    assert archive.is_file() and (outside / "keep.png").is_file()
    assert catalogue_file.read_bytes() == shipped
    # only the catalogue's entry is left: refused, and the shipped file is untouched
    again = run_cli("forget", CAM)
    assert again.exit_code == 2 and "only the catalogue's entry exists" in again.stderr
    assert catalogue_file.read_bytes() == shipped
    unknown = run_cli("forget", "never-registered")
    assert unknown.exit_code == 2 and "no manifest named 'never-registered'" in unknown.stderr
    assert run_cli("forget", "../etc").exit_code == 2  # names are never paths


def test_forget_keeps_a_registered_folder_below_the_maps_and_every_file_it_did_not_write(
    sample_root, sample_train_aug, tmp_path, wsssbed_home
):
    """Red-team finding 1 (data loss): a folder the user registered below
    `maps/<name>/`, and a file of theirs beside the maps `fetch` extracted, stay; what
    `fetch` wrote (the files its marker lists) goes."""
    source = sample_root / "activation/sample-cam/png-per-class"
    archive = _zip(source, tmp_path / "cam.zip")
    assert run_cli("fetch", CAM, "--path", archive, "--data-root", sample_train_aug).exit_code == 0
    maps = wsssbed_home / "maps" / CAM
    (version,) = maps.iterdir()
    extracted = list(version.rglob("*.png"))
    assert len(extracted) == len(list(source.glob("*.png")))
    (version / "NOTES.md").write_text("my notes beside the fetched maps")
    mine = maps / "mine"  # unpacked by hand where wsssbed puts fetched maps
    shutil.copytree(source, mine)
    (mine / "README.txt").write_text("my own copy")
    before = _tree(mine)
    result = run_cli("fetch", CAM, "--path", mine, "--data-root", sample_train_aug)
    assert result.exit_code == 0, result.output
    assert local_folder(resolve(CAM)) == mine

    result = run_cli("forget", CAM)
    assert result.exit_code == 0, result.stderr
    assert _tree(mine) == before  # the registered folder, untouched
    assert (version / "NOTES.md").read_text() == "my notes beside the fetched maps"
    assert not any(p.exists() for p in extracted)  # what fetch wrote is gone
    assert sorted(p.name for p in version.iterdir()) == ["NOTES.md"]
    text = " ".join(result.stdout.split())
    assert f"kept your folder {mine}" in text and f"kept {version}" in text
    assert resolve(CAM).path.is_relative_to(CATALOGUE)  # the registration is gone


def test_forget_never_follows_a_link_out_of_the_home(tmp_path, wsssbed_home):
    """A `maps/<name>` that is a link (made by hand) is not followed: its target stays."""
    target = tmp_path / "elsewhere"
    target.mkdir()
    (target / "precious_0.png").write_bytes(b"x")
    changelog = [ChangelogEntry("1.0.0", "2026-11-29", "t")]
    write_manifest(Manifest("linked", "1.0.0", "saliency", "voc2012", "train",
                            source=Source(path=str(target)), content=Content("png"),
                            changelog=changelog))  # fmt: skip
    (wsssbed_home / "maps").mkdir()
    (wsssbed_home / "maps/linked").symlink_to(target, target_is_directory=True)
    done = forget("linked")
    assert (target / "precious_0.png").is_file() and done.kept == target
    with pytest.raises(InputError, match="no manifest named 'linked'"):
        resolve("linked")


def test_a_damaged_manifest_can_be_forgotten(wsssbed_home):
    broken = wsssbed_home / "manifests/voc2012/activation/broken.toml"
    broken.parent.mkdir(parents=True)
    broken.write_text("schema = [")
    assert run_cli("manifests").exit_code == 2  # it blocks every listing
    result = run_cli("forget", "broken")
    assert result.exit_code == 0, result.stderr
    assert not broken.exists() and run_cli("manifests").exit_code == 0
