"""Downloads over a real loopback HTTP server (127.0.0.1 only): resume, retry, refusal.

The server honours `Range` and `If-Range` as GitHub's release storage does, and can be
told to cut a transfer short, answer 503 a few times, or ignore ranges.
"""

from __future__ import annotations

import dataclasses
import hashlib
import http.server
import os
import shutil
import threading
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from typer.testing import CliRunner

import wsssbed.catalogue.download
from wsssbed.catalogue.download import DownloadError, download
from wsssbed.catalogue.fetch import fetch
from wsssbed.catalogue.lookup import local_folder, resolve, write_manifest
from wsssbed.catalogue.manifest import ChangelogEntry, Content, Manifest, Source
from wsssbed.cli import app
from wsssbed.errors import InputError, WsssbedError


@dataclass
class Behaviour:
    """What the server does; requests are logged as (path, Range header)."""

    files: dict[str, bytes] = field(default_factory=dict)
    cut_after: list[int] = field(default_factory=list)  # per request: bytes sent, then close
    unavailable: int = 0  # answer 503 this many times first
    ranges: bool = True
    log: list[tuple[str, str | None]] = field(default_factory=list)

    def etag(self, path: str) -> str:
        return '"' + hashlib.sha256(self.files[path]).hexdigest()[:16] + '"'


def _handler(behaviour: Behaviour) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:  # keep pytest output clean
            pass

        def do_GET(self) -> None:
            behaviour.log.append((self.path, self.headers.get("Range")))
            if behaviour.unavailable:
                behaviour.unavailable -= 1
                self.send_error(503)
                return
            body = behaviour.files.get(self.path)
            if body is None:
                self.send_error(404)
                return
            start = 0
            wanted = self.headers.get("Range")
            same = self.headers.get("If-Range") in (None, behaviour.etag(self.path))
            if behaviour.ranges and wanted and same:
                start = int(wanted.removeprefix("bytes=").rstrip("-"))
                if start >= len(body):
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(body)}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
            else:
                self.send_response(200)
            self.send_header("Content-Length", str(len(body) - start))
            self.send_header("ETag", behaviour.etag(self.path))
            self.end_headers()
            payload = body[start:]
            if behaviour.cut_after:
                payload = payload[: behaviour.cut_after.pop(0)]
                self.close_connection = True
            self.wfile.write(payload)

    return Handler


@pytest.fixture
def server(monkeypatch):
    """(behaviour, base address) of a loopback server; retries wait 10 ms, not seconds."""
    monkeypatch.setattr(wsssbed.catalogue.download, "BACKOFF_S", 0.01)
    behaviour = Behaviour()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(behaviour))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield behaviour, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


BODY = os.urandom(3 * 2**20 + 12345)


def test_an_interrupted_transfer_resumes_where_it_stopped(server, tmp_path):
    behaviour, base = server
    behaviour.files["/maps.zip"] = BODY
    behaviour.cut_after = [2**20]  # the first response stops after 1 MiB
    seen = []
    sha = download(f"{base}/maps.zip", tmp_path / "maps.zip", lambda d, t: seen.append((d, t)))
    assert (tmp_path / "maps.zip").read_bytes() == BODY
    assert sha == hashlib.sha256(BODY).hexdigest()
    assert behaviour.log == [("/maps.zip", None), ("/maps.zip", f"bytes={2**20}-")]
    assert seen[-1] == (len(BODY), len(BODY))  # byte progress reaches the whole size
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
    assert not list(tmp_path.glob("*.part*"))


def test_a_later_run_resumes_the_part_an_earlier_one_left(server, tmp_path, monkeypatch):
    behaviour, base = server
    behaviour.files["/maps.zip"] = BODY
    monkeypatch.setattr(wsssbed.catalogue.download, "ATTEMPTS", 1)
    behaviour.cut_after = [2**21]
    with pytest.raises(DownloadError, match="after 1 attempts"):
        download(f"{base}/maps.zip", tmp_path / "maps.zip")
    assert (tmp_path / "maps.zip.part").stat().st_size == 2**21
    assert not (tmp_path / "maps.zip").exists()  # nothing looks complete
    download(f"{base}/maps.zip", tmp_path / "maps.zip")
    assert (tmp_path / "maps.zip").read_bytes() == BODY
    assert behaviour.log[-1] == ("/maps.zip", f"bytes={2**21}-")


def test_a_file_changed_since_the_part_starts_over(server, tmp_path, monkeypatch):
    behaviour, base = server
    behaviour.files["/maps.zip"] = BODY
    monkeypatch.setattr(wsssbed.catalogue.download, "ATTEMPTS", 1)
    behaviour.cut_after = [2**20]
    with pytest.raises(DownloadError):
        download(f"{base}/maps.zip", tmp_path / "maps.zip")
    changed = os.urandom(len(BODY))
    behaviour.files["/maps.zip"] = changed  # new ETag: If-Range makes the server send it all
    download(f"{base}/maps.zip", tmp_path / "maps.zip")
    assert (tmp_path / "maps.zip").read_bytes() == changed


@pytest.mark.parametrize("state", [b"", b"[]", b"{", b'{"url": 5}', b"\xff" * 10, None])
def test_a_damaged_state_file_restarts_the_download_from_zero(server, tmp_path, state):
    """Red-team finding 11: an empty or non-dict `<target>.part.json` (a kill or a full
    disk while it was written) ended every later fetch in "unexpected JSONDecodeError".
    Without a readable validator nothing is spliced: the transfer starts over."""
    behaviour, base = server
    behaviour.files["/maps.zip"] = BODY
    (tmp_path / "maps.zip.part").write_bytes(b"stale bytes of some version")
    if state is not None:
        (tmp_path / "maps.zip.part.json").write_bytes(state)
    assert download(f"{base}/maps.zip", tmp_path / "maps.zip") == hashlib.sha256(BODY).hexdigest()
    assert (tmp_path / "maps.zip").read_bytes() == BODY
    assert behaviour.log == [("/maps.zip", None)]  # no Range: started from zero


def test_a_server_without_ranges_is_read_from_the_start(server, tmp_path):
    behaviour, base = server
    behaviour.files["/maps.zip"] = BODY
    behaviour.ranges = False
    behaviour.cut_after = [2**20]
    download(f"{base}/maps.zip", tmp_path / "maps.zip")
    assert (tmp_path / "maps.zip").read_bytes() == BODY  # not the first MiB twice


def test_transient_errors_are_retried_and_permanent_ones_are_not(server, tmp_path):
    behaviour, base = server
    behaviour.files["/maps.zip"] = BODY
    behaviour.unavailable = 2
    download(f"{base}/maps.zip", tmp_path / "maps.zip")
    assert len(behaviour.log) == 3 and (tmp_path / "maps.zip").read_bytes() == BODY
    behaviour.log.clear()
    with pytest.raises(DownloadError, match="HTTP 404"):
        download(f"{base}/gone.zip", tmp_path / "gone.zip")
    assert len(behaviour.log) == 1


# --- fetch: archive sha256 and map digest pinned on first verification -----------------


def _register_remote(name: str, url: str) -> None:
    """A saliency manifest in the user registry with only a download address (unpinned)."""
    changelog = [ChangelogEntry("1.0.0", "2026-11-23", "test")]
    write_manifest(
        Manifest(name, "1.0.0", "saliency", "voc2012", "train", source=Source(url=url),
                 content=Content("png"), changelog=changelog)
    )  # fmt: skip


def _zip_folder(folder: Path) -> bytes:
    archive = shutil.make_archive(
        str(folder.parent / "tmp-archive"), "zip", folder.parent, folder.name
    )
    data = Path(archive).read_bytes()
    Path(archive).unlink()
    return data


@pytest.fixture
def home(wsssbed_home) -> Path:
    return wsssbed_home


def test_fetch_pins_archive_and_maps_then_refuses_changes(sample_root, home, server):
    behaviour, base = server
    maps = sample_root / "saliency/sample-sal"
    good = _zip_folder(maps)
    behaviour.files["/sal.zip"] = good
    behaviour.cut_after = [len(good) // 2]  # and it resumes on the way
    _register_remote("test-sal", f"{base}/sal.zip")
    (registered,) = fetch("test-sal")
    folder = local_folder(registered)
    assert folder == (home / "maps/test-sal/1.0.0/sample-sal").resolve()
    assert sorted(p.name for p in folder.iterdir()) == sorted(p.name for p in maps.iterdir())
    pinned = resolve("test-sal")
    assert pinned.source.sha256 == hashlib.sha256(good).hexdigest()
    assert pinned.content.files == 72 and pinned.content.digest
    assert not any((home / "downloads").iterdir())  # the archive is gone once extracted

    # the same archive again: accepted, nothing changes
    fetch("test-sal")
    assert resolve("test-sal") == pinned

    # corrupted in transit or replaced upstream: refused, the registered copy stays
    corrupt = bytearray(good)
    corrupt[len(corrupt) // 3] ^= 0xFF
    behaviour.files["/sal.zip"] = bytes(corrupt)
    with pytest.raises(InputError, match="sha256 mismatch"):
        fetch("test-sal")
    assert sorted(p.name for p in folder.iterdir()) == sorted(p.name for p in maps.iterdir())
    assert resolve("test-sal") == pinned
    assert not any((home / "downloads").iterdir())
    assert [p.name for p in folder.parent.parent.iterdir()] == ["1.0.0"]  # no staging left


def test_a_changed_archive_with_other_maps_fails_the_digest(sample_root, home, server):
    behaviour, base = server
    maps = sample_root / "saliency/sample-sal"
    behaviour.files["/sal.zip"] = _zip_folder(maps)
    _register_remote("test-sal", f"{base}/sal.zip")
    (registered,) = fetch("test-sal")
    # the same files' digest pinned, the archive sha256 forgotten: the map digest still holds
    write_manifest(
        Manifest("test-sal", "1.0.0", "saliency", "voc2012", "train",
                 source=Source(url=f"{base}/sal.zip", path=registered.source.path),
                 content=registered.content, changelog=registered.changelog)
    )  # fmt: skip
    buffer = Path(home / "other.zip")
    with zipfile.ZipFile(buffer, "w") as handle:
        handle.writestr("sample-sal/sample_0000.png", (maps / "sample_0001.png").read_bytes())
    behaviour.files["/sal.zip"] = buffer.read_bytes()
    with pytest.raises(InputError, match="digest mismatch"):
        fetch("test-sal")
    assert resolve("test-sal").content == registered.content


def test_an_offline_fetch_names_the_address_and_suggests_path(home, server, monkeypatch):
    _, base = server
    monkeypatch.setattr(wsssbed.catalogue.download, "ATTEMPTS", 2)
    closed = "http://127.0.0.1:9/sal.zip"  # the discard port: nothing listens there
    _register_remote("offline-sal", closed)
    result = CliRunner().invoke(app, ["fetch", "offline-sal"])
    assert result.exit_code == 2
    message = " ".join(result.output.split())
    assert closed in message and "after 2 attempts" in message
    assert "wsssbed fetch offline-sal --path PATH --data-root DATA" in message
    assert "Traceback" not in result.output
    _register_remote("gone", f"{base}/missing.zip")
    with pytest.raises(WsssbedError, match="HTTP 404"):
        fetch("gone")
    assert not any(p.is_file() for p in (home / "maps").rglob("*"))


def test_catalogue_names_only_the_upstream_release_addresses():
    from wsssbed.catalogue.lookup import CATALOGUE, all_manifests

    release = "https://github.com/clovaai/WSSS-BED/releases/download"
    folders = {"activation": "act_maps", "saliency": "sal_maps"}
    sources = [m for m in all_manifests().values() if m.kind != "pipeline"]
    assert len(sources) == 130
    for m in sources:
        assert m.path.is_relative_to(CATALOGUE)
        assert m.source.url == f"{release}/{folders[m.kind]}/{m.source.upstream_name}.zip"
        assert m.version == "1.1.0" and m.changelog[-1].version == "1.1.0"


# --- fetch writes only its own folder (issue 24, section 1) ----------------------------


def test_fetch_refuses_a_folder_it_did_not_write_before_downloading(home, server):
    behaviour, base = server
    _register_remote("test-sal", f"{base}/sal.zip")
    destination = home / "maps/test-sal/1.0.0"
    destination.mkdir(parents=True)
    (destination / "my-maps.npy").write_bytes(b"precious")
    with pytest.raises(InputError, match="wsssbed did not write") as info:
        fetch("test-sal")
    assert info.value.path == destination and behaviour.log == []  # before any download
    assert [p.name for p in destination.iterdir()] == ["my-maps.npy"]
    assert (destination / "my-maps.npy").read_bytes() == b"precious"


def test_a_refetch_replaces_only_the_files_of_the_last_fetch(sample_root, home, server, tmp_path):
    behaviour, base = server
    maps = tmp_path / "sal"
    shutil.copytree(sample_root / "saliency/sample-sal", maps)
    (maps / "extra.txt").write_text("in the first release only")
    behaviour.files["/sal.zip"] = _zip_folder(maps)
    _register_remote("test-sal", f"{base}/sal.zip")
    fetch("test-sal")
    destination = home / "maps/test-sal/1.0.0"
    assert (destination / "sal/extra.txt").is_file()
    (destination / "mine.txt").write_text("mine")
    (maps / "extra.txt").unlink()
    behaviour.files["/sal.zip"] = _zip_folder(maps)  # the same maps, one file fewer
    pinned = resolve("test-sal")  # a new archive of the same maps: forget its sha256
    write_manifest(
        dataclasses.replace(pinned, source=dataclasses.replace(pinned.source, sha256=""))
    )
    fetch("test-sal")
    assert not (destination / "sal/extra.txt").exists()
    assert (destination / "mine.txt").read_text() == "mine"
    assert len(list((destination / "sal").glob("*.png"))) == 72
