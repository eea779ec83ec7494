"""Downloads, results folders, the leaderboard, Ray, box files, full disks and the Python
API under hostile input: a real loopback HTTP server that trickles, never ends or
announces terabytes; crafted rows in a results folder; a Ray cluster's sockets read
from /proc; a real full file system where one can be mounted."""

from __future__ import annotations

import errno
import http.server
import io
import json
import math
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import run_cli
from peak_memory import measure

import wsssbed
import wsssbed.catalogue.download as dl
from wsssbed.catalogue.download import DownloadError, download
from wsssbed.datasets import get_dataset
from wsssbed.errors import InputError
from wsssbed.io.imageio import write_atomic
from wsssbed.models.boxes import MAX_BOXES, Box, read_boxes

VOC = get_dataset("voc2012")

# --- downloads ----------------------------------------------------------------------------


class _Hostile(http.server.BaseHTTPRequestHandler):
    """`/trickle`: 2,000 bytes announced, one sent every 20 ms; `/endless`: no length,
    64 KiB blocks until the client leaves; `/huge`: announces a terabyte; `/ok`: 100 KiB."""

    protocol_version = "HTTP/1.0"
    requests: ClassVar[list[str]] = []

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        self.requests.append(self.path)
        try:
            if self.path == "/trickle":
                self._head(2000)
                for _ in range(2000):
                    self.wfile.write(b"x")
                    self.wfile.flush()
                    time.sleep(0.02)
            elif self.path == "/endless":
                self._head(None)
                while True:
                    self.wfile.write(bytes(1 << 16))
            elif self.path == "/huge":
                self._head(10**12)
            else:
                self._head(100 << 10)
                self.wfile.write(bytes(100 << 10))
        except (BrokenPipeError, ConnectionResetError):  # the client gave up: as it should
            pass

    def _head(self, length: int | None) -> None:
        self.send_response(200)
        if length is not None:
            self.send_header("Content-Length", str(length))
        self.end_headers()


@pytest.fixture
def hostile(monkeypatch):
    monkeypatch.setattr(dl, "BACKOFF_S", 0.01)
    _Hostile.requests = []
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hostile)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def _left(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_a_trickling_server_meets_the_deadline_and_leaves_nothing(hostile, tmp_path, monkeypatch):
    monkeypatch.setattr(dl, "DEADLINE_S", 0.6)
    started = time.monotonic()
    with pytest.raises(DownloadError, match=r"did not finish within 1 s.*partial file was delet"):
        download(f"{hostile}/trickle", tmp_path / "maps.zip")
    assert time.monotonic() - started < 5
    assert _left(tmp_path) == []


def test_a_stalled_transfer_is_retried_then_named(hostile, tmp_path, monkeypatch):
    """Slower than MIN_RATE over a STALL_S window: an interrupted attempt (the `.part`
    stays to be resumed, as after a dropped connection)."""
    monkeypatch.setattr(dl, "STALL_S", 0.3)
    monkeypatch.setattr(dl, "MIN_RATE", 1000)
    monkeypatch.setattr(dl, "ATTEMPTS", 2)
    with pytest.raises(DownloadError, match="after 2 attempts: the transfer stalled"):
        download(f"{hostile}/trickle", tmp_path / "maps.zip")
    assert _Hostile.requests == ["/trickle", "/trickle"]
    assert not (tmp_path / "maps.zip").exists()


def test_an_endless_response_is_cut_at_the_cap(hostile, tmp_path, monkeypatch):
    monkeypatch.setattr(dl, "MAX_BYTES", 1 << 20)
    with pytest.raises(DownloadError, match=r"sent more than 1,048,576 bytes \(the documented"):
        download(f"{hostile}/endless", tmp_path / "maps.zip")
    assert _left(tmp_path) == []
    with pytest.raises(DownloadError, match=r"more than 65,536 bytes \(the declared size\)"):
        download(f"{hostile}/endless", tmp_path / "maps.zip", max_bytes=1 << 16)
    assert _left(tmp_path) == []
    assert download(f"{hostile}/ok", tmp_path / "ok.zip") == _sha(bytes(100 << 10))


def _sha(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


def test_an_announced_terabyte_is_refused_before_a_byte_is_written(hostile, tmp_path):
    written = []
    with pytest.raises(DownloadError, match="announces 1,000,000,000,000 bytes"):
        download(f"{hostile}/huge", tmp_path / "maps.zip", lambda d, t: written.append(d))
    assert written == [] and _left(tmp_path) == []


def test_a_download_leaves_the_disk_its_reserve(hostile, tmp_path, monkeypatch):
    real = shutil.disk_usage

    def nearly_full(path):
        usage = real(path)
        return usage._replace(free=dl.RESERVE_BYTES + 200_000)

    monkeypatch.setattr(dl.shutil, "disk_usage", nearly_full)
    with pytest.raises(DownloadError, match=r"more than 200,000 bytes \(the free space"):
        download(f"{hostile}/endless", tmp_path / "maps.zip")
    assert _left(tmp_path) == []


def test_a_disk_that_fills_anyway_names_the_file(hostile, tmp_path, monkeypatch):
    class Full(io.BytesIO):
        def write(self, data):
            raise OSError(errno.ENOSPC, "No space left on device")

    def opener(path, mode="r", *args, **kwargs):
        Path(path).touch()
        return Full()

    monkeypatch.setattr(dl, "open", opener, raising=False)
    with pytest.raises(DownloadError, match=r"the disk filled while writing .*maps\.zip\.part"):
        download(f"{hostile}/ok", tmp_path / "maps.zip")
    assert _left(tmp_path) == []


# --- results folders and the leaderboard --------------------------------------------------


def test_repair_refuses_a_folder_that_is_not_a_results_folder(tmp_path):
    missing = tmp_path / "missing"
    result = run_cli("results", "repair", "--results", missing)
    assert result.exit_code == 2 and "not a results folder" in result.stderr
    assert not missing.exists()
    system = tmp_path / "etc"
    system.mkdir()
    (system / "passwd").write_text("root:x:0:0\n")
    result = run_cli("results", "repair", "--results", system)
    assert result.exit_code == 2 and "no runs.parquet" in result.stderr
    assert _left(system) == ["passwd"]


def _results_with_bad_rows(tmp_path: Path) -> tuple[Path, list[str]]:
    """Three runs of the sample; the first gets an unknown dataset, the second a grid
    that does not parse."""
    results = tmp_path / "results"
    for thresholds in ("0:0.6:0.1", "0:0.5:0.1", "0.1,0.3"):
        wsssbed.sweep(thresholds=thresholds, boundary=False, out=results)
    runs = pq.read_table(results / "runs.parquet")
    frame = runs.to_pandas()
    ids = frame.run_id.tolist()
    frame.loc[0, "dataset"] = "my-private-dataset"
    frame.loc[1, "grid"] = '{"threshold": [0.1, '
    table = pa.Table.from_pandas(frame, schema=runs.schema, preserve_index=False)
    pq.write_table(table.replace_schema_metadata(runs.schema.metadata), results / "runs.parquet")
    return results, ids


def test_one_bad_run_is_skipped_with_a_note_not_the_whole_leaderboard(tmp_path):
    results, (unknown, malformed, good) = _results_with_bad_rows(tmp_path)
    site = tmp_path / "site"
    result = run_cli("leaderboard", "--results", results, "--out", site, "--draws", "10")
    assert result.exit_code == 0, result.output
    warnings = " ".join(result.stderr.split())
    assert f"run {unknown} is not shown" in warnings and "my-private-dataset" in warnings
    assert f"run {malformed} is not shown" in warnings and "JSONDecodeError" in warnings
    index = (site / "index.html").read_text()
    assert "Runs not shown" in index and unknown in index and malformed in index
    assert f'data-run="{good}"' in index and (site / "runs" / f"{good}.html").is_file()
    assert not (site / "runs" / f"{unknown}.html").exists()


# --- Ray ----------------------------------------------------------------------------------

LISTENING = """
import os
from wsssbed.distributed import connect
connect(None)
import ray
assert ray.get(ray.remote(lambda: 7).remote()) == 7
def tree(root):
    children = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = open(f"/proc/{pid}/stat").read()
        except OSError:
            continue
        children.setdefault(int(stat.rsplit(")", 1)[1].split()[1]), []).append(int(pid))
    found, todo = set(), [root]
    while todo:
        pid = todo.pop()
        found.add(pid)
        todo += children.get(pid, [])
    return found
def listening(pids):
    inodes = {}
    for family in ("tcp", "tcp6"):
        for line in open(f"/proc/net/{family}").read().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A":  # LISTEN
                inodes[fields[9]] = fields[1].rsplit(":", 1)[0]
    found = []
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
            name = open(f"/proc/{pid}/comm").read().strip()
        except OSError:
            continue
        for fd in fds:
            try:
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if link.startswith("socket:[") and link[8:-1] in inodes:
                found.append([name, inodes[link[8:-1]]])
    return found
sockets = listening(tree(os.getpid()))
ray.shutdown()
report(sockets=sockets)
"""


def _loopback(hex_address: str) -> bool:
    """Whether a /proc/net address (little-endian hex) is on the loopback interface."""
    if len(hex_address) == 8:  # IPv4: 127.0.0.0/8
        return hex_address[6:8] == "7F"
    words = [hex_address[i : i + 8] for i in range(0, 32, 8)]
    if words == ["00000000"] * 3 + ["01000000"]:  # ::1
        return True
    return words[:3] == ["00000000", "00000000", "FFFF0000"] and words[3][6:8] == "7F"


def test_the_ray_cluster_wsssbed_starts_listens_on_loopback_only():
    pytest.importorskip("ray")
    sockets = measure(LISTENING, timeout=240)["sockets"]
    print(sockets)
    names = {name for name, _ in sockets}
    assert {"gcs_server", "raylet"} <= names, sockets
    assert all(_loopback(address) for _, address in sockets), sockets
    assert _loopback("0100007F") and not _loopback("00000000")
    assert not _loopback("00000000000000000000000000000000")


# --- box files ----------------------------------------------------------------------------


def _boxes(tmp_path: Path, content: object) -> Path:
    path = tmp_path / "boxes.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


def test_a_box_file_reads_as_written(tmp_path):
    cat = {"box": [1, 2, 30.5, 40], "label": "cat", "score": 0.5, "phrase": "cat"}
    path = _boxes(tmp_path, {"a": [cat, {"box": [0, 0, 5, 5]}], "b": []})
    found = read_boxes(path, VOC, ["a", "b", "c"])
    assert found == {"a": [Box(1.0, 2.0, 30.5, 40.0, VOC.classes.index("cat"), 0.5),
                           Box(0.0, 0.0, 5.0, 5.0, None, 1.0)], "b": []}  # fmt: skip


BAD_BOXES = {
    "outside the split": ({"zzz": []}, "1 image ids are not in the split (first: 'zzz')"),
    "booleans": ({"a": [{"box": [True, 0, 5, 5]}]}, "`box` must be an array of numbers"),
    "401 digits": ({"a": [{"box": [0, 0, 10**400, 5]}]}, "'box' must be four finite numbers"),
    "list label": ({"a": [{"box": [0, 0, 5, 5], "label": ["cat"]}]}, "`label` must be a string"),
    "dict label": ({"a": [{"box": [0, 0, 5, 5], "label": {"x": 1}}]}, "`label` must be a string"),
    "score text": ({"a": [{"box": [0, 0, 5, 5], "score": "high"}]}, "`score` must be a number"),
    "unknown field": ({"a": [{"box": [0, 0, 5, 5], "lable": "cat"}]}, "unknown fields ['lable']"),
    "three corners": ({"a": [{"box": [0, 0, 5]}]}, "four finite numbers"),
    "nan score": ('{"a": [{"box": [0, 0, 5, 5], "score": NaN}]}', "'score' must be a finite"),
    "deep": ("[" * 100_000 + "]" * 100_000, "nested too deep"),
    "too many": ({"a": [{"box": [0, 0, 5, 5]}] * (MAX_BOXES + 1)}, f"above the {MAX_BOXES}"),
}


@pytest.mark.parametrize("case", sorted(BAD_BOXES))
def test_a_bad_box_file_names_the_file_and_the_box(tmp_path, case):
    content, message = BAD_BOXES[case]
    path = _boxes(tmp_path, content)
    with pytest.raises(InputError) as info:
        read_boxes(path, VOC, ["a", "b"])
    assert info.value.path == path and message in str(info.value), str(info.value)
    if "box" in message or "label" in message or "score" in message:
        assert "image a, box 0" in str(info.value)


# --- full disks ---------------------------------------------------------------------------


def test_a_write_that_fills_the_disk_names_the_file(tmp_path, monkeypatch, sample_root):
    def full(stream):
        raise OSError(errno.ENOSPC, "No space left on device")  # as write() raises it: no name

    with pytest.raises(OSError) as info:
        write_atomic(tmp_path / "x.png", full)
    assert info.value.filename == str(tmp_path / "x.png") and _left(tmp_path) == []

    def no_room(table, stream, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("wsssbed.results.store.pq.write_table", no_room)
    result = run_cli("sweep", "--thresholds", "0.1,0.2", "--no-boundary", "--out", tmp_path / "r")
    text = " ".join(result.stderr.split())
    assert result.exit_code == 2 and "per_class.parquet: No space left on device" in text


def _mount_command() -> list[str] | None:
    """How to run a shell with a private mount namespace here, or None."""
    if shutil.which("unshare") is None:
        return None
    for command in (["unshare", "--mount"], ["unshare", "--user", "--map-root-user", "--mount"]):
        probe = subprocess.run([*command, "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt"],
                               capture_output=True)  # fmt: skip
        if probe.returncode == 0:
            return command
    return None


@pytest.mark.parametrize("command", ["sweep", "leaderboard"])
def test_a_really_full_disk_names_the_file(tmp_path, command):
    """On a real 8 KiB file system (a tmpfs in a private mount namespace)."""
    namespace = _mount_command()
    if namespace is None:
        pytest.skip("no private mount namespace here (unshare and mount are not permitted)")
    results = tmp_path / "results"
    wsssbed.sweep(thresholds="0.1,0.2", boundary=False, out=results)
    full = tmp_path / "full"
    full.mkdir()
    args = {"sweep": ["sweep", "--no-boundary", "--out", f"{full}/r"],
            "leaderboard": ["leaderboard", "--results", str(results), "--out", f"{full}/site",
                            "--gallery", "0", "--draws", "10"]}[command]  # fmt: skip
    cli = " ".join([sys.executable, "-m", "wsssbed.cli", *args])
    script = f"mount -t tmpfs -o size=8k tmpfs {full} && exec {cli}"
    result = subprocess.run([*namespace, "sh", "-c", script], capture_output=True, text=True,
                            timeout=300)  # fmt: skip
    text = " ".join(result.stderr.split())
    assert result.returncode == 2, text
    assert f"{full}/" in text and ": No space left on device; the disk is full" in text
    assert "unexpected" not in text and "Traceback" not in text


# --- the Python API -----------------------------------------------------------------------

API_CASES = {
    "infinite threshold": (dict(thresholds=[0.1, math.inf]), "not finite"),
    "infinite range": (dict(thresholds="0:inf:0.1"), "not finite"),
    "NaN threshold": (dict(thresholds=[math.nan]), "not finite"),
    "huge integer": (dict(thresholds=[10**400]), "not finite"),
    "boolean grid": (dict(thresholds=True), "`thresholds` must be a string grid"),
    "boolean points": (dict(thresholds=[True, False]), "`thresholds` holds True"),
    "text points": (dict(thresholds=["0.1"]), "`thresholds` holds '0.1'"),
    "workers text": (dict(workers="2"), "`workers` must be a non-negative integer"),
    "workers negative": (dict(workers=-1), "`workers` must be a non-negative integer"),
    "workers boolean": (dict(workers=True), "`workers` must be a non-negative integer"),
    "data_root number": (dict(data_root=5), "`data_root` must be a path"),
    "activation list": (dict(activation=["maps"]), "`activation` must be a path"),
    "labels number": (dict(labels=5), "`labels` must be a path"),
    "tolerance NaN": (dict(boundary_tolerance="nan"), "must be positive and finite"),
    "tolerance negative": (dict(boundary_tolerance=-0.1), "must be positive and finite"),
    "tolerance boolean": (dict(boundary_tolerance=True), "`boundary_tolerance` must be"),
    "ignore text": (dict(ignore_label="no"), "`ignore_label` must be True or False"),
    "per_image text": (dict(per_image="yes"), "`per_image` must be True or False"),
    "split number": (dict(split=5), "`split` must be a string"),
    "format number": (dict(activation_format=3), "`activation_format` must be a string"),
    "name with a newline": (dict(name="nl\nname"), "holds a control character"),
    "grid of a million points": (
        dict(generator="saliency-rule", sal_thresholds="0:1:0.001", thresholds="0:1:0.001"),
        "the grid has 1,002,001 points",
    ),
    "axis list too long": (
        dict(thresholds=[i / 200_001 for i in range(100_001)]),
        "100,001 points is more than 100,000",
    ),
}


@pytest.mark.parametrize("case", sorted(API_CASES))
def test_the_api_names_the_bad_argument(tmp_path, case):
    keywords, message = API_CASES[case]
    out = tmp_path / "results"
    with pytest.raises(InputError, match=message.replace("(", r"\(")):
        wsssbed.sweep(**{"out": out, "boundary": False, **keywords})
    assert not out.exists()


def test_evaluate_read_results_and_the_metric_name_their_arguments(tmp_path):
    from wsssbed.metrics import ThresholdSweep

    for call, message in (
        (lambda: wsssbed.evaluate(pred=5), "`pred` must be a path"),
        (lambda: wsssbed.evaluate(pred=tmp_path, name="a\x1b[2J"), "control character"),
        (lambda: wsssbed.evaluate(pred=tmp_path, workers=-2), "`workers`"),
        (lambda: wsssbed.evaluate(pred=tmp_path, boundary_tolerance=math.inf), "finite"),
        (lambda: wsssbed.read_results(3.5), "`folder` must be a path"),
        (lambda: ThresholdSweep(thresholds=[0.1, math.inf]), "not finite"),
        (lambda: ThresholdSweep(thresholds=[False]), "`thresholds` holds False"),
        (lambda: ThresholdSweep(dataset=5), "`dataset` must be a string"),
        (lambda: ThresholdSweep(boundary="yes"), "`boundary` must be True or False"),
    ):
        with pytest.raises(InputError, match=message):
            call()
    assert ThresholdSweep(thresholds=np.array([0.1, 0.2])).protocol.grids[0][1] == (0.1, 0.2)


def test_bfscore_names_its_bad_arguments_and_clamps_a_huge_tolerance():
    pred = np.zeros((12, 14), dtype=np.uint8)
    gt = pred.copy()
    gt[3:8, 4:9] = 1
    pred[4:9, 4:10] = 1
    for keywords, message in (
        (dict(tolerance_px=math.nan), "`tolerance_px` must be a positive finite"),
        (dict(tolerance_px=-2), "`tolerance_px` must be a positive finite"),
        (dict(tolerance_px=math.inf), "`tolerance_px` must be a positive finite"),
        (dict(tolerance_px="2"), "`tolerance_px` must be a positive finite"),
        (dict(tolerance_px=True), "`tolerance_px` must be a positive finite"),
        (dict(classes=["1"]), "`classes` must be non-negative integer"),
    ):
        with pytest.raises(InputError, match=message):
            wsssbed.bfscore(pred, gt, **keywords)
    with pytest.raises(InputError, match="`pred` must hold integer labels"):
        wsssbed.bfscore(pred + 0.5, gt)
    with pytest.raises(InputError, match="`gt` holds a negative label"):
        wsssbed.bfscore(pred, gt.astype(np.int16) - 3)
    # every pixel pair of a 12x14 image is closer than its diagonal: a tolerance of a
    # billion pixels scores as the diagonal does (and does not build a billion-wide disk)
    diagonal = wsssbed.bfscore(pred, gt, tolerance_px=math.hypot(12, 14))
    huge = wsssbed.bfscore(pred, gt, tolerance_px=1e9)
    np.testing.assert_array_equal(diagonal[0], huge[0])
    assert huge[1] == 1.0
