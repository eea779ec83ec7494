"""Manifests, the catalogue, submissions, digests and provenance, end to end."""

from __future__ import annotations

import dataclasses
import json
import shutil

import numpy as np
import pandas as pd
import pytest
from conftest import run_cli

from wsssbed.catalogue.lookup import CATALOGUE, all_manifests, local_folder, resolve
from wsssbed.catalogue.manifest import Manifest, load_manifest, parse_manifest
from wsssbed.errors import InputError
from wsssbed.grids import parse_grid


@pytest.fixture
def train_maps(sample_root, tmp_path):
    """The sample's npz maps for exactly the train split (a valid submission)."""
    ids = (sample_root / "VOC2012/ImageSets/Segmentation/train.txt").read_text().split()
    folder = tmp_path / "submission"
    folder.mkdir()
    for image_id in ids:
        shutil.copy(sample_root / f"activation/sample-cam/npz/{image_id}.npz", folder)
    return folder


def _submit(sample_root, folder, out, *extra, name="my-cam"):
    return run_cli(
        "submit", folder, "--dataset", "voc2012", "--data-root", sample_root,
        "--split", "train", "--format", "npz", "--name", name, "--out", out, *extra,
    )  # fmt: skip


# ----------------------------------------------------------------------------- catalogue


def test_catalogue_validates_and_holds_the_wsssbed_release():
    manifests = all_manifests()
    kinds = pd.Series([m.kind for m in manifests.values()]).value_counts().to_dict()
    assert kinds == {"activation": 87, "saliency": 43, "pipeline": 11}
    for method in ("cam", "oaa", "mcis", "drs", "edam", "eps-move", "l2g-move"):
        assert manifests[f"voc2012-{method}"].content.format == "png-per-class"
    for sod in ("dss", "pfan", "poolnet", "vst"):
        for data in ("msra", "msra-hku", "duts", "coco", "coco20"):
            assert manifests[f"voc2012-sal-{sod}-{data}"].kind == "saliency"
    for name in ("voc2012-sal-move", "voc2012-sal-deepusps", "coco2014-cam", "coco2014-sal-move"):
        assert name in manifests
    for m in manifests.values():
        assert m.path.is_relative_to(CATALOGUE / m.dataset / m.kind)
        if m.kind != "pipeline":
            assert m.source.url.startswith("https://") and m.source.upstream_name
            assert m.content.digest == ""  # filled when a copy is first verified


@pytest.mark.parametrize(
    "method,threshold,with_saliency",
    [("cam", 0.1, True), ("oaa", 0.3, True), ("mcis", 0.5, True), ("drs", 0.5, True),
     ("edam", 0.5, True), ("eps", 0.2, False), ("l2g", 0.3, False)],
)  # fmt: skip
def test_pipelines_carry_the_recommended_settings(method, threshold, with_saliency):
    pipeline = resolve(f"voc2012-{method}-wsssbed", "pipeline")
    spec = pipeline.pipeline
    assert spec.recommended_threshold == threshold
    assert spec.with_saliency is with_saliency and spec.ignore_label is with_saliency
    assert threshold in parse_grid(spec.thresholds)  # the grid is around the setting
    if with_saliency:
        assert spec.recommended_sal_threshold == 0.2
        assert 0.2 in parse_grid(spec.sal_thresholds)
        assert resolve(spec.saliency, "saliency").dataset == "voc2012"
    assert resolve(spec.activation, "activation").split == pipeline.split


# ----------------------------------------------------------------------------- schema


def _manifest_text(**changes) -> str:
    manifest = dataclasses.replace(resolve("voc2012-cam"), **changes)
    return manifest.to_toml()


def test_manifest_round_trips():
    original = resolve("voc2012-cam-wsssbed")
    again = parse_manifest(original.to_toml(), original.path)
    assert again == original


@pytest.mark.parametrize(
    "edit,message",
    [
        (lambda t: t.replace('version = "1.1.0"\nkind', 'version = "1.1"\nkind'), "semver"),
        (lambda t: t.replace('kind = "activation"', 'kind = "maps"'), "kind 'maps'"),
        (lambda t: t.replace('name = "voc2012-cam"', 'name = "../../etc"'), "manifest name"),
        (lambda t: t.replace('format = "png-per-class"', 'format = "jpg"'), "content.format"),
        (
            lambda t: t.replace('digest = ""', 'digest = "md5:00"').replace(
                "files = 0", "files = 3"
            ),
            "digest",
        ),
        (lambda t: t.replace('dataset = "voc2012"', 'dataset = "imagenet"'), "imagenet"),
        (lambda t: t.replace('license = "Apache-2.0"', 'licence = "x"'), "unknown fields"),
        (lambda t: t.replace('split = "train_aug"\n', ""), "`split` is missing"),
        (lambda t: t.replace('version = "1.1.0"\ndate', 'version = "0.9.0"\ndate'), "changelog"),
        (lambda t: t.replace('sha256 = ""', 'sha256 = "abc"'), "source.sha256"),
        (lambda t: t.replace("schema = 1", "schema = 7"), "schema"),
        (lambda t: t + "\n[[[", "not a valid TOML manifest"),
        (lambda t: t.replace('url = "https://', 'url = "file:///'), "http"),
    ],
)
def test_bad_manifests_are_refused_with_the_file_named(tmp_path, edit, message):
    path = tmp_path / "voc2012-cam.toml"
    text = edit(_manifest_text())
    with pytest.raises(InputError, match=message) as info:
        parse_manifest(text, path)
    assert str(path) in str(info.value)


def test_manifest_paths_cannot_escape_the_registry(wsssbed_home):
    escaping = dataclasses.replace(
        resolve("voc2012-cam"), source=dataclasses.replace(resolve("voc2012-cam").source)
    )
    escaping.source.path = "maps/../../outside"
    with pytest.raises(InputError, match="leaves the registry root"):
        local_folder(escaping)
    inside = dataclasses.replace(escaping, source=dataclasses.replace(escaping.source))
    inside.source.path = "maps/cam"
    assert local_folder(inside) == (wsssbed_home / "maps/cam").resolve()


# ----------------------------------------------------------------------------- submit / sweep


def test_submit_then_method_reproduces_the_numbers(sample_root, train_maps, tmp_path):
    out = tmp_path / "results"
    submitted = _submit(sample_root, train_maps, out)
    assert submitted.exit_code == 0, submitted.stderr
    manifest = resolve("my-cam")
    assert manifest.kind == "activation" and manifest.content.files == 48
    assert manifest.content.digest.startswith("sha256:") and manifest.split == "train"

    swept = run_cli("sweep", "--method", "my-cam", "--data-root", sample_root, "--out", out)
    assert swept.exit_code == 0, swept.stderr
    runs = pd.read_parquet(out / "runs.parquet")
    assert len(runs) == 2 and runs.method.tolist() == ["my-cam", "my-cam"]
    assert runs.verified.tolist() == [True, True]
    for record in runs.manifests:
        (used,) = json.loads(record)
        assert used["name"] == "my-cam" and used["version"] == "1.0.0"
        assert used["digest"] == manifest.content.digest and used["verified"]
    assert runs.wsssbed_version.notna().all() and runs.packages.str.contains("torch").all()
    assert runs.device.tolist() == ["cpu", "cpu"] and runs.wall_time_s.gt(0).all()
    first, second = runs.run_id
    per_class = pd.read_parquet(out / "per_class.parquet")
    counts = ["point", "class_id", "tp", "fp", "fn", "intersection", "union", "bf_pred_matched"]
    a = per_class[per_class.run_id == first][counts].reset_index(drop=True)
    b = per_class[per_class.run_id == second][counts].reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b)

    shown = run_cli("results", "show", "--results", out, "--method", "my-cam", "--json")
    rows = json.loads(shown.stdout)
    assert [r["run_id"] for r in rows] == [first, second]
    sweeps = pd.read_parquet(out / "sweeps.parquet")
    assert rows[0]["miou"] == sweeps[sweeps.run_id == first].miou.max()
    assert rows[0]["per_class_iou"]["background"] > 0.5


def test_a_second_submission_needs_a_higher_version(sample_root, train_maps, tmp_path):
    out = tmp_path / "results"
    assert _submit(sample_root, train_maps, out).exit_code == 0
    again = _submit(sample_root, train_maps, out)
    assert again.exit_code == 2 and "higher --version" in again.stderr
    bumped = _submit(sample_root, train_maps, out, "--version", "1.1.0", "--note", "re-run")
    assert bumped.exit_code == 0
    manifest = resolve("my-cam")
    assert manifest.version == "1.1.0"
    assert [e.version for e in manifest.changelog] == ["1.0.0", "1.1.0"]


class _Exploit:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (open, (self.target, "w"))


@pytest.mark.parametrize(
    "damage,message",
    [
        ("extra", "outside the split"),
        ("missing", "have no activation maps"),
        ("nan", "NaN"),
        ("size", "differs from the ground truth"),
        ("pickle", "unsafe or corrupt pickle refused"),
        ("link", "symbolic link"),
    ],
)
def test_bad_submissions_write_nothing(sample_root, train_maps, tmp_path, damage, message):
    victim = sorted(train_maps.iterdir())[3]
    pwned = tmp_path / "pwned"
    fmt = "npz"
    if damage == "extra":
        shutil.copy(sample_root / "activation/sample-cam/npz/sample_0060.npz", train_maps)
    elif damage == "missing":
        victim.unlink()
    elif damage in ("nan", "size"):
        with np.load(victim) as archive:
            keys, cams = archive["keys"], archive["cams"]
        cams = cams[:, :-2] if damage == "size" else np.where(cams > 0.5, np.nan, cams)
        np.savez(victim, keys=keys, cams=cams)
    elif damage == "link":
        victim.unlink()
        victim.symlink_to(sample_root / f"activation/sample-cam/npz/{victim.name}")
    else:  # a crafted irn-npy submission
        fmt = "irn-npy"
        for path in list(train_maps.iterdir()):
            with np.load(path) as archive:
                payload = {"keys": archive["keys"], "high_res": archive["cams"]}
            if path == victim:
                payload["x"] = _Exploit(str(pwned))
            np.save(train_maps / f"{path.stem}.npy", np.array(payload, dtype=object))
            path.unlink()
    out = tmp_path / "results"
    result = run_cli(
        "submit", train_maps, "--dataset", "voc2012", "--data-root", sample_root,
        "--split", "train", "--format", fmt, "--name", "bad-cam", "--out", out,
    )  # fmt: skip
    assert result.exit_code == 2
    assert message in result.stderr.replace("\n", "")
    assert not pwned.exists()
    assert not out.exists() or not any(out.glob("*.parquet"))
    with pytest.raises(InputError, match="no manifest named"):
        resolve("bad-cam")


def test_digest_mismatch_stops_the_run_and_no_verify_is_recorded(sample_root, train_maps, tmp_path):
    out = tmp_path / "results"
    assert _submit(sample_root, train_maps, out).exit_code == 0
    assert run_cli("verify", "my-cam").exit_code == 0
    before = {p.name: p.read_bytes() for p in out.glob("*.parquet")}
    victim = sorted(train_maps.iterdir())[0]
    with np.load(victim) as archive:
        keys, cams = archive["keys"], archive["cams"]
    np.savez(victim, keys=keys, cams=cams * np.float32(0.5))  # still valid maps, other numbers

    swept = run_cli("sweep", "--method", "my-cam", "--data-root", sample_root, "--out", out)
    assert swept.exit_code == 2 and "digest mismatch" in swept.stderr
    assert {p.name: p.read_bytes() for p in out.glob("*.parquet")} == before
    drift = run_cli("verify", "--all")
    assert drift.exit_code == 1 and "digest mismatch" in drift.stdout.replace("\n", "")

    unverified = run_cli(
        "sweep", "--method", "my-cam", "--data-root", sample_root, "--out", out, "--no-verify"
    )
    assert unverified.exit_code == 0 and "NOT checked" in unverified.stderr
    runs = pd.read_parquet(out / "runs.parquet")
    assert runs.verified.tolist() == [True, False]
    assert json.loads(runs.manifests.iloc[1])[0]["verified"] is False


def test_fetch_path_pins_a_catalogued_source_once(
    sample_root, sample_train_aug, tmp_path, wsssbed_home
):
    folder = sample_root / "activation/sample-cam/png-per-class"
    first = run_cli("fetch", "voc2012-cam", "--path", folder, "--data-root", sample_train_aug)
    assert first.exit_code == 0, first.stderr
    pinned = resolve("voc2012-cam")
    assert pinned.path.is_relative_to(wsssbed_home)  # the user's copy shadows
    assert pinned.content.digest and local_folder(pinned) == folder.resolve()
    catalogued = load_manifest(CATALOGUE / "voc2012/activation/voc2012-cam.toml")
    assert pinned.source.url == catalogued.source.url and pinned.version == catalogued.version
    other = tmp_path / "other"
    shutil.copytree(folder, other)
    next(other.glob("*.png")).write_bytes((sample_root / "saliency/sample-sal").joinpath(
        "sample_0000.png").read_bytes())  # fmt: skip
    second = run_cli("fetch", "voc2012-cam", "--path", other)
    assert second.exit_code == 2 and "digest mismatch" in second.stderr
    assert local_folder(resolve("voc2012-cam")) == folder.resolve()


def test_pipeline_method_uses_its_generator_grid_and_saliency(
    sample_root, sample_train_aug, tmp_path
):
    sample = sample_root
    for name, folder in (
        ("voc2012-cam", sample / "activation/sample-cam/png-per-class"),
        ("voc2012-sal-move", sample / "saliency/sample-sal"),
    ):
        fetched = run_cli("fetch", name, "--path", folder, "--data-root", sample_train_aug)
        assert fetched.exit_code == 0, fetched.stderr
    out = tmp_path / "results"
    result = run_cli(
        "sweep", "--method", "voc2012-cam-wsssbed", "--data-root", sample, "--split", "train",
        "--out", out, "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    run = pd.read_parquet(out / "runs.parquet").iloc[0]
    assert run.generator == "saliency-rule" and bool(run.ignore_label)
    grid = json.loads(run.grid)
    assert len(grid["sal_threshold"]) == 7 and len(grid["threshold"]) == 15
    names = [m["name"] for m in json.loads(run.manifests)]
    assert names == ["voc2012-cam-wsssbed", "voc2012-cam", "voc2012-sal-move"]


def test_method_errors_are_clear(sample_root, tmp_path):
    no_root = run_cli("sweep", "--method", "voc2012-cam", "--out", tmp_path)
    assert no_root.exit_code == 2 and "--data-root" in no_root.stderr
    unknown = run_cli("sweep", "--method", "nope", "--data-root", sample_root, "--out", tmp_path)
    assert unknown.exit_code == 2 and "no manifest named 'nope'" in unknown.stderr
    no_copy = run_cli("sweep", "--method", "voc2012-cam", "--data-root", sample_root)
    assert no_copy.exit_code == 2 and "no local copy" in no_copy.stderr.replace("\n", "")


def test_manifest_listing(tmp_path):
    listed = json.loads(run_cli("manifests", "--kind", "pipeline", "--json").stdout)
    assert len(listed) == 11 and all(row["kind"] == "pipeline" for row in listed)
    assert isinstance(resolve("voc2012-cam"), Manifest)
