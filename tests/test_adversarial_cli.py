"""Failures that are not bad input (issue 16, class 3): the output location checked before
work, OS errors in plain words, and the top-level guard with --debug."""

from __future__ import annotations

import errno
import subprocess
import sys

from typer.testing import CliRunner

from wsssbed.cli import app

GUARD = """
import sys
import wsssbed.api
import wsssbed.cli as cli
def broken(**kwargs):
    raise ZeroDivisionError("a stray bug")
wsssbed.api.sweep = broken
sys.argv = ["wsssbed", *sys.argv[1:]]
cli.app(prog_name="wsssbed")
"""


def test_a_stray_exception_is_one_line_and_exit_2_and_debug_shows_it():
    quiet = subprocess.run([sys.executable, "-c", GUARD, "sweep"], capture_output=True, text=True)
    assert quiet.returncode == 2
    assert quiet.stderr.strip().count("\n") == 0, quiet.stderr
    assert "unexpected ZeroDivisionError: a stray bug" in quiet.stderr
    assert "--debug" in quiet.stderr and "Traceback" not in quiet.stderr
    loud = subprocess.run(
        [sys.executable, "-c", GUARD, "--debug", "sweep"], capture_output=True, text=True
    )
    assert loud.returncode == 1 and "Traceback" in loud.stderr and "a stray bug" in loud.stderr


def test_out_naming_a_file_is_refused_before_any_work(sample_root, tmp_path):
    occupied = tmp_path / "results"
    occupied.write_text("not a folder")
    common = ["--data-root", str(sample_root), "--activation", str(tmp_path / "no-such-maps")]
    for out in (occupied, occupied / "inside"):
        result = CliRunner().invoke(app, ["sweep", *common, "--out", str(out)])
        assert result.exit_code == 2
        text = " ".join(result.output.split())
        assert "results folder" in text and "no-such-maps" not in text  # checked first
    assert occupied.read_text() == "not a folder"


def test_an_os_error_is_a_message_that_says_what_to_do(sample_root, tmp_path, monkeypatch):
    def full(folder, tables):
        raise OSError(errno.ENOSPC, "No space left on device", str(folder / "runs.parquet"))

    monkeypatch.setattr("wsssbed.results.runs.append_run", full)
    maps = sample_root / "activation/sample-cam/irn-npy"
    result = CliRunner().invoke(
        app,
        ["sweep", "--data-root", str(sample_root), "--activation", str(maps),
         "--allow-extra-maps", "--out", str(tmp_path / "r"), "--no-boundary"],
    )  # fmt: skip
    assert result.exit_code == 2
    text = " ".join(result.output.split())
    assert "runs.parquet: No space left on device; the disk is full" in text
    assert "Traceback" not in result.output


def test_percentage_grids_are_refused_and_edge_points_warned(sample_root, tmp_path):
    """A score grid lying mostly above 1 is refused before any work (issue 23): nothing is
    stored; one stray point above 1 is only a warning; the saliency grid's hint quotes a
    saliency grid, not the activation one."""
    out = tmp_path / "r"
    common = ["sweep", "--data-root", str(sample_root), "--activation",
              str(sample_root / "activation/sample-cam/npz"), "--activation-format", "npz",
              "--allow-extra-maps", "--no-boundary", "--out", str(out)]  # fmt: skip
    percent = CliRunner().invoke(app, [*common, "--thresholds", "0:60:1"])
    assert percent.exit_code == 2
    text = " ".join(percent.output.split())
    assert "--thresholds has 59 of its 61 values outside [0, 1] (from 0 to 60)" in text
    assert "percentages? write `0:0.6:0.01`, not `0:60:1`" in text
    assert not out.exists()
    saliency = CliRunner().invoke(
        app, [*common, "--generator", "saliency-rule", "--saliency",
              str(sample_root / "saliency/sample-sal"), "--sal-thresholds", "10:50:5"],
    )  # fmt: skip
    assert saliency.exit_code == 2
    text = " ".join(saliency.output.split())
    assert "--sal-thresholds has 9 of its 9 values" in text
    assert "write `0.1:0.5:0.05`, not `10:50:5`" in text and "0:0.6:0.01" not in text
    stray = CliRunner().invoke(app, [*common, "--thresholds", "0.1,0.2,0.3,25"])
    assert stray.exit_code == 0
    assert "--thresholds has 1 of its 4 values outside [0, 1]" in " ".join(stray.output.split())
    edge = CliRunner().invoke(app, [*common, "--thresholds", "0.05:0.25:0.1"])
    assert edge.exit_code == 0
    text = " ".join(edge.output.split())
    assert "the best mIoU is at the upper edge of --thresholds (0.25)" in text
    inside = CliRunner().invoke(app, [*common, "--thresholds", "0:0.9:0.05"])
    assert inside.exit_code == 0 and "the best mIoU is at" not in inside.output


def _npz_copy(sample_root, tmp_path):
    """A copy of the sample's npz maps (the sample's own files stay untouched)."""
    import shutil

    maps = tmp_path / "maps"
    shutil.copytree(sample_root / "activation/sample-cam/npz", maps)
    return maps


def _sweep(sample_root, maps, out, *extra):
    return CliRunner().invoke(
        app,
        ["sweep", "--data-root", str(sample_root), "--activation", str(maps),
         "--activation-format", "npz", "--allow-extra-maps", "--no-boundary",
         "--out", str(out), *extra],
    )  # fmt: skip


def test_a_map_that_links_to_itself_is_named_not_a_bug(sample_root, tmp_path):
    """A link loop in a stranger's map folder is bad input, named with the file, on the
    fused and the general path (Path.resolve raises RuntimeError for a loop)."""
    maps = _npz_copy(sample_root, tmp_path)
    victim = sorted(maps.glob("*.npz"))[0]
    victim.unlink()
    victim.symlink_to(victim)
    for fused in ("1", "0"):
        result = _sweep(sample_root, maps, tmp_path / f"r{fused}", "--workers", "0")
        text = " ".join(result.output.split())
        assert result.exit_code == 2, text
        assert victim.name in text and "cannot be resolved" in text, text
        assert "unexpected" not in text
        assert not (tmp_path / f"r{fused}" / "runs.parquet").exists()


def test_a_value_just_above_one_is_shown_as_it_is(sample_root, tmp_path):
    """The range message prints the offending value with float32's precision: 1.0000001,
    not "1" (which read "span [0, 1], outside [0, 1]")."""
    import numpy as np

    maps = _npz_copy(sample_root, tmp_path)
    victim = sorted(maps.glob("*.npz"))[0]
    with np.load(victim) as data:
        arrays = dict(data)
    cams = arrays["cams"]
    cams.flat[0] = np.nextafter(np.float32(1), np.float32(2))
    np.savez(victim, **arrays)
    result = _sweep(sample_root, maps, tmp_path / "r", "--workers", "0")
    text = " ".join(result.output.split())
    assert result.exit_code == 2
    assert "1.00000012], outside [0, 1]" in text, text
