"""Faults (issue 16, class 6): killed sweeps, torn appends, damaged resumes, refused
submissions, full disks and bad label lists. (A Ray worker killed mid-task is covered by
tests/test_distributed.py; concurrent appends by tests/test_results.py.)"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image
from typer.testing import CliRunner

import wsssbed
from wsssbed.cli import app
from wsssbed.errors import InputError
from wsssbed.results.store import read_table

SLOW_SWEEP = """
import sys, time
from pathlib import Path
import wsssbed
import wsssbed.eval.inputs as inputs
original = inputs.SweepInputs.__getitem__
def slow(self, index):  # a worker busy in one long read: torch's watchdog never runs
    time.sleep(600)
    return original(self, index)
inputs.SweepInputs.__getitem__ = slow
root = Path(sys.argv[1])
wsssbed.sweep(data_root=root, activation=root / "activation/sample-cam/npz",
              activation_format="npz", allow_extra_maps=True, workers=2, boundary=False,
              out=sys.argv[2])
"""


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie has exited; only its entry waits for a reaper


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_workers_die_with_a_killed_sweep_and_the_results_stay_readable(sample_root, tmp_path):
    results = tmp_path / "results"
    wsssbed.sweep(
        data_root=sample_root, activation=sample_root / "activation/sample-cam/npz",
        activation_format="npz", allow_extra_maps=True, boundary=False, out=results,
    )  # fmt: skip
    sweep = subprocess.Popen([sys.executable, "-c", SLOW_SWEEP, str(sample_root), str(results)])
    deadline = time.monotonic() + 120
    workers: list[int] = []
    while len(workers) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
        workers = _children(sweep.pid)
    assert len(workers) >= 2, "the sweep never started its decoding workers"
    os.kill(sweep.pid, signal.SIGKILL)
    sweep.wait()
    deadline = time.monotonic() + 20
    while any(_alive(w) for w in workers) and time.monotonic() < deadline:
        time.sleep(0.2)
    survivors = [w for w in workers if _alive(w)]
    for worker in survivors:  # never leave them running, even when the test fails
        os.kill(worker, signal.SIGKILL)
    assert not survivors, "decoding workers outlived their parent"
    assert len(read_table(results, "runs")) == 1  # the earlier run, intact


def test_rows_of_a_torn_append_are_removed_by_repair_and_by_the_next_append(sample_root, tmp_path):
    results = tmp_path / "results"
    common = dict(data_root=sample_root, activation=sample_root / "activation/sample-cam/npz",
                  activation_format="npz", allow_extra_maps=True, boundary=False)  # fmt: skip
    wsssbed.sweep(out=results, thresholds="0.1,0.2", **common)

    def tear() -> None:  # what a kill between the table renames leaves: rows, no run
        for name in ("sweeps", "per_class"):
            table = pq.read_table(results / f"{name}.parquet")
            orphan = table.slice(0, 2).set_column(
                table.schema.get_field_index("run_id"), "run_id", pa.array(["torn"] * 2)
            )
            pq.write_table(pa.concat_tables([table, orphan]), results / f"{name}.parquet")

    tear()
    assert "torn" not in set(read_table(results, "sweeps").run_id)  # readers never saw them
    repaired = CliRunner().invoke(app, ["results", "repair", "--results", str(results)])
    assert repaired.exit_code == 0, repaired.output
    assert "removed 4 rows" in repaired.output
    for name in ("sweeps", "per_class"):
        assert "torn" not in set(pd.read_parquet(results / f"{name}.parquet").run_id)
    tear()
    wsssbed.sweep(out=results, thresholds="0.3", **common)
    raw = pd.read_parquet(results / "sweeps.parquet")
    assert "torn" not in set(raw.run_id) and raw.run_id.nunique() == 2


def test_a_damaged_label_file_is_regenerated_on_resume(sample_root, tmp_path):
    common = ["--data-root", str(sample_root), "--activation",
              str(sample_root / "activation/sample-cam/npz"), "--activation-format", "npz",
              "--generator", "bg-threshold", "--threshold", "0.3"]  # fmt: skip
    runner = CliRunner()
    fresh = runner.invoke(app, ["pseudo-labels", *common, "--out", str(tmp_path / "fresh")])
    assert fresh.exit_code == 0, fresh.output
    damaged = tmp_path / "damaged"
    shutil.copytree(tmp_path / "fresh", damaged)
    (damaged / "wsssbed-labels.toml").unlink(missing_ok=True)
    record = next(damaged.glob("*.toml"))
    record.write_text(record.read_text().replace("complete = true", "complete = false"))
    victim = sorted(damaged.glob("*.png"))[3]
    victim.write_bytes(victim.read_bytes()[:60])  # truncated mid-file
    resumed = runner.invoke(app, ["pseudo-labels", *common, "--out", str(damaged)])
    assert resumed.exit_code == 0, resumed.output
    text = " ".join(resumed.output.split())
    assert victim.name in text and "generating it again" in text and "1 written" in text
    digest = next(line for line in record.read_text().splitlines() if line.startswith("digest"))
    assert digest in next((tmp_path / "fresh").glob("*.toml")).read_text()


def _maps_zip(folder: Path, archive: Path, broken: str | None = None) -> Path:
    with zipfile.ZipFile(archive, "w") as handle:
        for path in sorted(folder.glob("*.npz")):
            data = b"not an npz" if path.stem == broken else path.read_bytes()
            handle.writestr(f"maps/{path.name}", data)
    return archive


def test_submissions_check_outputs_first_and_leave_nothing_behind(
    sample_root, tmp_path, monkeypatch
):
    home = tmp_path / "home"
    monkeypatch.setenv("WSSSBED_HOME", str(home))
    maps = tmp_path / "train-maps"
    maps.mkdir()
    train = (sample_root / "VOC2012/ImageSets/Segmentation/train.txt").read_text().split()
    for image_id in train:
        shutil.copy(sample_root / "activation/sample-cam/npz" / f"{image_id}.npz", maps)
    command = ["submit", "--dataset", "voc2012", "--data-root", str(sample_root), "--split",
               "train", "--format", "npz", "--name", "mine"]  # fmt: skip
    occupied = tmp_path / "results-file"
    occupied.write_text("x")
    good = _maps_zip(maps, tmp_path / "good.zip")
    refused = CliRunner().invoke(
        app, [*command[:1], str(good), *command[1:], "--out", str(occupied)]
    )
    assert refused.exit_code == 2 and "is a file" in refused.output
    assert not (home / "maps").exists() and not (home / "manifests").exists()

    bad = _maps_zip(maps, tmp_path / "bad.zip", broken=train[5])
    crashed = CliRunner().invoke(
        app, ["submit", str(bad), *command[1:], "--out", str(tmp_path / "r")]
    )
    assert crashed.exit_code == 2 and train[5] in crashed.output
    assert not (home / "maps").exists(), "a refused submission left extracted maps"
    message = " ".join(crashed.output.split())
    assert f"{bad}: " in message and str(home / "maps") not in message  # the archive, named

    retry = CliRunner().invoke(
        app, ["submit", str(good), *command[1:], "--out", str(tmp_path / "r")]
    )
    assert retry.exit_code == 0, retry.output
    assert (home / "maps/mine/1.0.0").is_dir()


def test_an_archive_beyond_the_free_space_is_refused_as_such(tmp_path, monkeypatch):
    from wsssbed.io import archive

    source = tmp_path / "a.zip"
    with zipfile.ZipFile(source, "w", zipfile.ZIP_DEFLATED) as handle:
        handle.writestr("maps/a.png", bytes(1 << 20))
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(archive.shutil, "disk_usage", lambda path: usage._replace(free=1000))
    destination = tmp_path / "out/maps"
    with pytest.raises(InputError, match="archive expands beyond the free space"):
        archive.extract(source, destination)
    assert not destination.exists() and not any((tmp_path / "out").iterdir())


@pytest.mark.parametrize(
    "line,message",
    [
        (b"2007_000032 \xff\xfe 3\n", "line 2: not UTF-8"),
        (b"2007_000032 99999999999999999999999999\n", "line 2: class index '9999"),
        (b"2007_000032 \xc2\xb2\n", "line 2: class index"),  # a superscript two
        (b"2007_000032 -1\n", "line 2: class index '-1'"),
    ],
)
def test_bad_label_lists_name_the_line(tmp_path, line, message):
    from wsssbed.datasets import get_dataset
    from wsssbed.datasets.local import read_label_list

    path = tmp_path / "labels.txt"
    path.write_bytes(b"2007_000027 14\n" + line)
    with pytest.raises(InputError, match=message) as info:
        read_label_list(path, get_dataset("voc2012"))
    assert str(path) in str(info.value)


def test_a_png_cut_inside_its_pixels_is_refused(tmp_path):
    """What the resume check relies on: a PNG cut inside its pixel data does not decode."""
    path = tmp_path / "a.png"
    Image.fromarray(np.arange(256, dtype=np.uint8).reshape(16, 16)).save(path)
    path.write_bytes(path.read_bytes()[:45])  # 8 signature + 25 IHDR + part of IDAT
    from wsssbed.io.imageio import read_png_array

    with pytest.raises(InputError):
        read_png_array(path)
