"""Reports from strangers' names and specs (issue 16, classes 4 and 5): a run on a user's
dataset spec renders anywhere (it records the spec), mathtext in folder names is plain
text, and only http(s) sources become links."""

from __future__ import annotations

import shutil

from typer.testing import CliRunner

from wsssbed.cli import app
from wsssbed.datasets import SPEC_DIR
from wsssbed.report.leaderboard import render_site

EVIL = "cams $\\foo{$ <b>x"  # mathtext and markup, no path separator


def test_a_user_spec_and_a_mathtext_name_render_everywhere(sample_root, tmp_path):
    spec = tmp_path / "specs/my-voc.toml"
    spec.parent.mkdir()
    spec.write_text(
        (SPEC_DIR / "voc2012.toml").read_text().replace('name = "voc2012"', 'name = "my-voc"')
    )
    maps = tmp_path / EVIL
    shutil.copytree(sample_root / "activation/sample-cam/npz", maps)
    results = tmp_path / "results"
    runner = CliRunner()
    for split in ("train", "val"):
        swept = runner.invoke(
            app,
            ["sweep", "--dataset", str(spec), "--data-root", str(sample_root), "--split", split,
             "--activation", str(maps), "--activation-format", "npz", "--allow-extra-maps",
             "--per-image", "--out", str(results)],
        )  # fmt: skip
        assert swept.exit_code == 0, swept.output
    shutil.rmtree(spec.parent)  # the spec file is gone: the runs recorded it
    site = tmp_path / "site"
    render_site(results, site, gallery_images=1, draws=20)
    html = (site / "index.html").read_text()
    assert "my-voc" in html and "<b>x" not in html and "&lt;b&gt;x" in html
    study = runner.invoke(
        app,
        ["sensitivity", "--results", str(results), "--out", str(tmp_path / "study"),
         "--halves", "2", "--draws", "20"],
    )  # fmt: skip
    assert study.exit_code == 0, study.output
    svgs = list((tmp_path / "study").rglob("*.svg"))
    assert svgs and any("foo{" in p.read_text() for p in svgs)  # shown as typed
    assert runner.invoke(app, ["leaderboard", "--results", str(results), "--out",
                               str(tmp_path / "site2")]).exit_code == 0  # fmt: skip


def test_only_web_addresses_become_links(tmp_path):
    from wsssbed.report.leaderboard import _environment

    template = _environment().from_string(
        "{% if s is web_address %}<a href='{{ s }}'>{{ s }}</a>{% else %}{{ s }}{% endif %}"
    )
    assert template.render(s="javascript:alert(1)") == "javascript:alert(1)"
    assert template.render(s="data:text/html,x") == "data:text/html,x"
    assert template.render(s="https://x.org").startswith("<a href='https://x.org'>")


def _swept_sample(sample_root, results):
    """A results folder holding one sweep of the sample's CAMs."""
    swept = CliRunner().invoke(
        app,
        ["sweep", "--data-root", str(sample_root), "--activation",
         str(sample_root / "activation/sample-cam/npz"), "--activation-format", "npz",
         "--allow-extra-maps", "--no-boundary", "--out", str(results)],
    )  # fmt: skip
    assert swept.exit_code == 0, swept.output
    return results


def test_report_outputs_naming_a_file_are_refused_and_the_file_kept(tmp_path, sample_root):
    results = _swept_sample(sample_root, tmp_path / "results")
    precious = tmp_path / "notes.txt"
    precious.write_text("mine")
    for command in ("leaderboard", "sensitivity"):
        result = CliRunner().invoke(
            app, [command, "--results", str(results), "--out", str(precious)]
        )
        assert result.exit_code == 2 and "is a file" in result.output, result.output
    assert precious.read_text() == "mine"


def test_outputs_follow_the_umask(sample_root, tmp_path):
    """Results, the site and fetched or prepared folders are as readable as `umask` says."""
    import os

    import wsssbed.io.outputs

    previous = os.umask(0o027)
    try:
        wsssbed.io.outputs.UMASK = 0o027
        results = _swept_sample(sample_root, tmp_path / "results")
        render_site(results, tmp_path / "site", gallery_images=0, draws=10)
    finally:
        os.umask(previous)
        wsssbed.io.outputs.UMASK = previous
    assert (results / "runs.parquet").stat().st_mode & 0o777 == 0o640
    assert (tmp_path / "site").stat().st_mode & 0o777 == 0o750
    assert (tmp_path / "site/index.html").stat().st_mode & 0o777 == 0o640
