"""Untrusted archives, a real download over loopback HTTP, and results-schema migration."""

from __future__ import annotations

import functools
import http.server
import io
import shutil
import tarfile
import threading
import zipfile

import pandas as pd
import pytest

from wsssbed.archive import extract
from wsssbed.catalogue import local_folder, resolve, write_manifest
from wsssbed.errors import InputError
from wsssbed.fetch import fetch
from wsssbed.manifest import ChangelogEntry, Content, Manifest, Source
from wsssbed.results import SCHEMA_VERSION, append_run, read_table


def _zip(path, members: dict[str, bytes], symlink: str | None = None):
    with zipfile.ZipFile(path, "w") as handle:
        for name, data in members.items():
            handle.writestr(name, data)
        if symlink is not None:
            info = zipfile.ZipInfo("link")
            info.external_attr = (0o120777 << 16) | 0
            handle.writestr(info, symlink)
    return path


def _tar(path, name: str, kind: bytes = tarfile.REGTYPE, target: str = ""):
    with tarfile.open(path, "w:gz") as handle:
        info = tarfile.TarInfo(name)
        info.type = kind
        info.linkname = target
        data = b"" if kind != tarfile.REGTYPE else b"payload"
        info.size = len(data)
        handle.addfile(info, io.BytesIO(data))
    return path


@pytest.mark.parametrize(
    "make,message",
    [
        (lambda p: _zip(p / "a.zip", {"../escape.png": b"x"}), "leaves the extraction folder"),
        (lambda p: _zip(p / "a.zip", {"/abs/escape.png": b"x"}), "absolute path"),
        (lambda p: _zip(p / "a.zip", {"ok.png": b"x"}, symlink="/etc/passwd"), "link"),
        (lambda p: _tar(p / "a.tgz", "../../escape.png"), "leaves the extraction folder"),
        (lambda p: _tar(p / "a.tgz", "link", tarfile.SYMTYPE, "/etc"), "link or special"),
        (lambda p: _tar(p / "a.tgz", "hard", tarfile.LNKTYPE, "/etc/passwd"), "link or special"),
        (lambda p: _tar(p / "a.tgz", "fifo", tarfile.FIFOTYPE), "link or special"),
        (lambda p: p.joinpath("a.zip").write_bytes(b"PK\x03\x04junk") and p / "a.zip", "archive"),
    ],
)
def test_crafted_archives_are_refused_and_nothing_lands(tmp_path, make, message):
    archive = make(tmp_path)
    destination = tmp_path / "out" / "maps"
    with pytest.raises(InputError, match=message) as info:
        extract(archive, destination)
    assert str(archive) in str(info.value)
    assert not destination.exists()
    assert not (tmp_path / "escape.png").exists() and not (tmp_path.parent / "escape.png").exists()
    assert not any((tmp_path / "out").iterdir())  # no staging folder left behind


def test_zip_bomb_is_refused_from_its_headers(tmp_path, monkeypatch):
    import wsssbed.archive

    monkeypatch.setattr(wsssbed.archive, "MAX_BYTES", 1000)
    archive = _zip(tmp_path / "bomb.zip", {"a.png": b"\0" * 5000})
    with pytest.raises(InputError, match="budget"):
        extract(archive, tmp_path / "out")


@pytest.fixture
def served(tmp_path):
    """A loopback HTTP server over `tmp_path / "www"` (nothing leaves this machine)."""
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def _register_remote(name: str, url: str) -> None:
    """A saliency manifest in the user registry with only a download address (unpinned)."""
    changelog = [ChangelogEntry("1.0.0", "2026-11-23", "test")]
    write_manifest(
        Manifest(name, "1.0.0", "saliency", "voc2012", "train", source=Source(url=url),
                 content=Content("png"), changelog=changelog)
    )  # fmt: skip


def test_fetch_downloads_extracts_pins_and_then_checks(sample_root, tmp_path, monkeypatch, served):
    monkeypatch.setenv("WSSSBED_HOME", str(tmp_path / "home"))
    root, base = served
    maps = sample_root / "saliency/sample-sal"
    shutil.make_archive(str(root / "sal"), "zip", maps.parent, maps.name)
    _register_remote("test-sal", f"{base}/sal.zip")
    (registered,) = fetch("test-sal")
    folder = local_folder(registered)
    assert folder == (tmp_path / "home/maps/test-sal/1.0.0/sample-sal").resolve()
    assert sorted(p.name for p in folder.iterdir()) == sorted(p.name for p in maps.iterdir())
    assert registered.content.files == 72 and resolve("test-sal").content.digest

    # the publisher's archive changes under the same version: the digest catches it
    (root / "sal.zip").unlink()
    _zip(root / "sal.zip", {"sample-sal/sample_0000.png": (maps / "sample_0001.png").read_bytes()})
    with pytest.raises(InputError, match="digest mismatch"):
        fetch("test-sal")
    assert sorted(p.name for p in folder.iterdir()) == sorted(p.name for p in maps.iterdir())
    assert resolve("test-sal").content == registered.content  # the good copy stays
    assert [p.name for p in folder.parent.parent.iterdir()] == ["1.0.0"]  # no staging left


def test_fetch_reports_a_failed_download(tmp_path, monkeypatch, served):
    monkeypatch.setenv("WSSSBED_HOME", str(tmp_path / "home"))
    _, base = served
    _register_remote("gone", f"{base}/missing.zip")
    with pytest.raises(InputError, match="download failed"):
        fetch("gone")
    assert not any(p.is_file() for p in (tmp_path / "home/maps").rglob("*"))


def test_results_written_by_schema_1_are_read_and_extended(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from wsssbed.results import SCHEMAS

    old_fields = [f for f in SCHEMAS["runs"] if f.name not in ("method", "manifests", "verified")]
    old_fields = [f for f in old_fields if f.name != "seed"]
    old = pa.table({f.name: pa.nulls(1, f.type) for f in old_fields}, schema=pa.schema(old_fields))
    old = old.set_column(0, "run_id", pa.array(["old-run"]))
    pq.write_table(old, tmp_path / "runs.parquet")
    for name in ("sweeps", "per_class"):
        schema = SCHEMAS[name]
        pq.write_table(schema.empty_table(), tmp_path / f"{name}.parquet")
    append_run(
        tmp_path,
        {
            "runs": pd.DataFrame({"run_id": ["new-run"], "method": ["m"], "verified": [True]}),
            "sweeps": pd.DataFrame({"run_id": ["new-run"], "point": [0], "miou": [0.5]}),
            "per_class": pd.DataFrame({"run_id": ["new-run"], "point": [0], "class_id": [0]}),
        },
    )
    runs = read_table(tmp_path, "runs")
    assert runs.run_id.tolist() == ["old-run", "new-run"]
    assert runs.method.isna().tolist() == [True, False]
    metadata = pq.read_schema(tmp_path / "runs.parquet").metadata
    assert metadata[b"wsssbed_schema_version"] == str(SCHEMA_VERSION).encode()
