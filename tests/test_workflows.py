"""Every workflow the README shows runs end to end: studies over results that hold label
maps, submissions of part of a split, named sweeps, and Ctrl-C that says what it kept."""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
from conftest import run_cli

import wsssbed
from wsssbed.catalogue.lookup import resolve
from wsssbed.errors import InputError
from wsssbed.io import imageio
from wsssbed.io.ownership import MARKER
from wsssbed.report.figures import FORMATS as FIGURE_FORMATS

ROOT = Path(__file__).resolve().parents[1]


def _ids(root, split):
    return (root / f"VOC2012/ImageSets/Segmentation/{split}.txt").read_text().split()


@pytest.fixture
def results(sample_root, tmp_path):
    """What the README's workflow leaves: two named sweeps with per-image counts, and
    pseudo-labels at one threshold scored by `evaluate`."""
    out = tmp_path / "results"
    for name, fmt in (("cam-npz", "npz"), ("cam-png", "png-per-class")):
        swept = run_cli("sweep", "--data-root", sample_root, "--split", "train", "--activation",
                        sample_root / f"activation/sample-cam/{fmt}", "--activation-format", fmt,
                        "--allow-extra-maps", "--thresholds", "0:0.6:0.05", "--per-image",
                        "--no-boundary", "--name", name, "--out", out)  # fmt: skip
        assert swept.exit_code == 0, swept.stderr
    labels = tmp_path / "pl"
    made = run_cli("pseudo-labels", "--data-root", sample_root, "--split", "train",
                   "--activation", sample_root / "activation/sample-cam/npz",
                   "--activation-format", "npz", "--generator", "bg-threshold",
                   "--threshold", "0.25", "--out", labels)  # fmt: skip
    assert made.exit_code == 0, made.stderr
    scored = run_cli("evaluate", "--pred", labels, "--data-root", sample_root, "--split", "train",
                     "--no-boundary", "--out", out)  # fmt: skip
    assert scored.exit_code == 0, scored.stderr
    return out


def test_sensitivity_shows_evaluated_label_maps_as_single_points(results, tmp_path):
    study = tmp_path / "study"
    result = run_cli("sensitivity", "--results", results, "--out", study, "--halves", "2",
                     "--draws", "50", "--compare", "cam-npz", "--compare", "cam-png")  # fmt: skip
    assert result.exit_code == 0, result.output
    note = " ".join(result.stderr.split())
    assert "note: pl (voc2012/train" in note and "no grid" in note
    stats = pd.read_parquet(study / "stats.parquet").set_index("label")
    runs = pd.read_parquet(results / "runs.parquet").set_index("method")
    sweeps = pd.read_parquet(results / "sweeps.parquet")
    evaluated = stats.loc["pl"]
    assert evaluated.points == 1 and pd.isna(evaluated.axis) and pd.isna(evaluated.auc)
    assert evaluated.best_miou == sweeps[sweeps.run_id == runs.loc["pl"].run_id].miou.iloc[0]
    # pseudo-labels at 0.25 score what the sweep scored at 0.25 (an independent path)
    at = sweeps[(sweeps.run_id == runs.loc["cam-npz"].run_id) & (sweeps.threshold == 0.25)]
    assert evaluated.best_miou == pytest.approx(at.miou.iloc[0], abs=1e-12)
    assert stats.loc["cam-npz"].axis == "threshold" and stats.loc["cam-npz"].points == 13
    compared = pd.read_parquet(study / "comparison.parquet").iloc[0]
    assert (compared["first"], compared["second"]) == ("cam-npz", "cam-png")
    figures = [f"curves_miou_voc2012_train_threshold.{fmt}" for fmt in FIGURE_FORMATS]
    assert sorted(p.name for p in study.iterdir()) == sorted(
        [MARKER, "comparison.parquet", *figures, "stats.parquet"]
    )


def test_a_failed_study_writes_nothing(results, tmp_path, monkeypatch):
    study = tmp_path / "study"
    refused = run_cli("sensitivity", "--results", results, "--out", study, "--halves", "0",
                      "--compare", "cam-npz", "--compare", "pl")  # fmt: skip
    assert refused.exit_code == 2 and "no per-image counts" in refused.stderr
    assert not study.exists()  # the figures were computed, never written
    done = run_cli("sensitivity", "--results", results, "--out", study, "--halves", "0")
    assert done.exit_code == 0, done.output
    before = {p.name: p.read_bytes() for p in study.iterdir()}

    from wsssbed.report.study import StudyOptions, run_study

    writes, original = [], imageio.os.fdopen

    def full_disk(handle, mode):  # the disk fills up at the second file
        writes.append(handle)
        if len(writes) == 2:
            raise OSError(28, "No space left on device")
        return original(handle, mode)

    monkeypatch.setattr(imageio.os, "fdopen", full_disk)
    with pytest.raises(OSError, match="No space"):
        run_study(results, study, StudyOptions(halves=0, recommended={"threshold": 0.3}))
    monkeypatch.undo()
    assert {p.name: p.read_bytes() for p in study.iterdir()} == before
    assert len(writes) == 2 and not [p for p in study.iterdir() if p.name.startswith(".")
                                     and p.name != MARKER]  # fmt: skip


def test_submit_takes_an_id_list_and_records_the_subset(sample_root, tmp_path):
    ids = _ids(sample_root, "train")[5:17]
    id_file = tmp_path / "lists" / "hard.txt"
    id_file.parent.mkdir()
    id_file.write_text("\n".join(ids) + "\n")
    maps = tmp_path / "maps"
    maps.mkdir()
    for image_id in ids:
        shutil.copy(sample_root / f"activation/sample-cam/npz/{image_id}.npz", maps)
    command = ["submit", maps, "--dataset", "voc2012", "--data-root", sample_root,
               "--split", id_file, "--format", "npz", "--name", "hard-cams"]  # fmt: skip
    result = run_cli(*command, "--out", tmp_path / "r")
    assert result.exit_code == 0, result.output
    manifest = resolve("hard-cams")
    assert manifest.split == "train" and manifest.subset.name == "hard.txt"
    expected = (
        "sha256:" + hashlib.sha256("".join(f"{i}\n" for i in sorted(ids)).encode()).hexdigest()
    )
    assert manifest.subset.split_digest == expected and manifest.subset.images == 12
    run = pd.read_parquet(tmp_path / "r/runs.parquet").iloc[0]
    assert run.split_digest == expected and run.n_images == 12

    # the pinned method needs its subset named; given, it scores the submission's numbers
    with pytest.raises(InputError, match=r"12 images listed in hard\.txt"):
        wsssbed.sweep(method="hard-cams", data_root=sample_root)
    again = wsssbed.sweep(method="hard-cams", data_root=sample_root, split=str(id_file))
    submitted = pd.read_parquet(tmp_path / "r/sweeps.parquet")
    assert again.points.miou.tolist() == submitted.miou.tolist()

    # a map of an image the list does not name is refused, and nothing is pinned
    shutil.copy(sample_root / f"activation/sample-cam/npz/{_ids(sample_root, 'train')[0]}.npz",
                maps)  # fmt: skip
    extra = run_cli(*command[:-1], "other-cams", "--out", tmp_path / "r2")
    assert extra.exit_code == 2 and "hard.txt does not list" in extra.stderr
    assert not (tmp_path / "r2").exists()
    with pytest.raises(InputError, match="no manifest named 'other-cams'"):
        resolve("other-cams")


def test_sweep_takes_a_name_like_evaluate(sample_root, tmp_path):
    maps = sample_root / "activation/sample-cam/npz"
    out = tmp_path / "r"
    result = run_cli("sweep", "--data-root", sample_root, "--split", "val", "--activation", maps,
                     "--activation-format", "npz", "--allow-extra-maps", "--thresholds", "0.2",
                     "--name", "my cams v2", "--out", out)  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert "best point of my cams v2" in " ".join(result.stdout.split())
    api = wsssbed.sweep(data_root=sample_root, split="val", activation=maps,
                        activation_format="npz", allow_extra_maps=True, thresholds="0.2",
                        name="from-python", out=out)  # fmt: skip
    assert api.run.method == "from-python"
    assert pd.read_parquet(out / "runs.parquet").method.tolist() == ["my cams v2", "from-python"]
    shown = run_cli("results", "show", "--results", out, "--method", "my cams v2", "--json")
    assert [r["method"] for r in json.loads(shown.stdout)] == ["my cams v2"]
    with pytest.raises(InputError, match="`name` or `method`"):
        wsssbed.sweep(method="voc2012-cam", name="x", data_root=sample_root)


# --- Ctrl-C: a real SIGINT to a real process ---------------------------------------------

STALL = """
import sys, time
import {module} as target

def stall(*args, **kwargs):
    print("working", flush=True)
    time.sleep(120)

target.{function} = stall
from wsssbed.cli import app
sys.argv = ["wsssbed", *sys.argv[1:]]
app()
"""


def _interrupt(process: subprocess.Popen, ready) -> tuple[int, str]:
    """Wait until `ready()` holds, send SIGINT, return (exit code, stderr)."""
    deadline = time.monotonic() + 120
    while not ready():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "the command never started working"
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    return process.returncode, " ".join(stderr.split())


def _start(tmp_path, arguments, module="", function=""):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), *sys.path]), "COLUMNS": "200"}
    if module:
        script = tmp_path / "stalled.py"
        script.write_text(STALL.format(module=module, function=function))
        command = [sys.executable, str(script)]
    else:
        command = [sys.executable, "-m", "wsssbed.cli"]
    return subprocess.Popen([*command, *map(str, arguments)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)  # fmt: skip


def test_ctrl_c_during_a_sweep_says_nothing_was_written(sample_root, tmp_path):
    out = tmp_path / "results"
    process = _start(tmp_path, ["sweep", "--data-root", sample_root, "--activation",
                                sample_root / "activation/sample-cam/npz", "--activation-format",
                                "npz", "--allow-extra-maps", "--out", out],
                     "wsssbed.results.runs", "run_sweep")  # fmt: skip
    first = process.stdout.readline
    code, stderr = _interrupt(process, lambda: first().strip() == "working")
    assert code == 130 and stderr == "interrupted; nothing was written"
    assert not out.exists()


SENT = 2 << 20  # two of the downloader's 1 MiB reads


class _Stalling(http.server.BaseHTTPRequestHandler):
    """Serves half of a 4 MiB body, then stops sending (a stalled transfer)."""

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(2 * SENT))
        self.end_headers()
        self.wfile.write(b"\0" * SENT)
        self.wfile.flush()
        time.sleep(60)


def test_ctrl_c_during_a_download_says_the_part_is_kept(tmp_path, wsssbed_home):
    from wsssbed.catalogue.lookup import write_manifest
    from wsssbed.catalogue.manifest import ChangelogEntry, Content, Manifest, Source

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Stalling)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/maps.zip"
    write_manifest(Manifest("slow-sal", "1.0.0", "saliency", "voc2012", "train",
                            source=Source(url=url), content=Content("png"),
                            changelog=[ChangelogEntry("1.0.0", "2026-11-29", "t")]))  # fmt: skip
    part = wsssbed_home / "downloads/slow-sal-1.0.0.zip.part"
    process = _start(tmp_path, ["fetch", "slow-sal"])
    try:
        code, stderr = _interrupt(process, lambda: part.is_file() and part.stat().st_size >= SENT)
    finally:
        server.shutdown()
    assert code == 130, stderr
    assert stderr.startswith("interrupted; nothing was registered; a partial download stays")
    assert "`wsssbed fetch slow-sal` resumes it" in stderr
    assert part.stat().st_size == SENT and not (wsssbed_home / "maps").exists()


def test_ctrl_c_during_generation_says_the_whole_files_stay(sample_root, tmp_path):
    out = tmp_path / "labels"
    process = _start(tmp_path, ["pseudo-labels", "--data-root", sample_root, "--split", "train",
                                "--activation", sample_root / "activation/sample-cam/npz",
                                "--activation-format", "npz", "--generator", "bg-threshold",
                                "--threshold", "0.25", "--out", out],
                     "wsssbed.generators.writer", "generate")  # fmt: skip
    first = process.stdout.readline
    code, stderr = _interrupt(process, lambda: first().strip() == "working")
    assert code == 130
    assert stderr == (
        f"interrupted; the files already written in {out} are whole and stay; the same "
        "command skips them and writes the rest"
    )
