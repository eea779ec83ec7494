"""Untrusted archives and results-schema migration (downloads: test_download.py)."""

from __future__ import annotations

import io
import tarfile
import zipfile

import pandas as pd
import pytest

from wsssbed.errors import InputError
from wsssbed.io.archive import extract
from wsssbed.results.store import SCHEMA_VERSION, append_run, read_table


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
    import wsssbed.io.archive

    monkeypatch.setattr(wsssbed.io.archive, "MAX_BYTES", 1000)
    archive = _zip(tmp_path / "bomb.zip", {"a.png": b"\0" * 5000})
    with pytest.raises(InputError, match="budget"):
        extract(archive, tmp_path / "out")


def test_results_written_by_schema_1_are_read_and_extended(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from wsssbed.results.store import SCHEMAS

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


def test_a_tar_ending_in_a_zip_member_is_read_as_the_tar(tmp_path):
    """`zipfile.is_zipfile` finds the directory of a tar's last `.npz` member: a tar of
    npz maps once extracted as that one npz's `keys.npy` and `cams.npy`."""
    import numpy as np

    buffer = io.BytesIO()
    np.savez(buffer, keys=np.array([1]), cams=np.zeros((1, 2, 2), np.float32))
    archive = tmp_path / "maps.tar"
    with tarfile.open(archive, "w") as handle:
        for name in ("maps/a.npz", "maps/b.npz"):
            info = tarfile.TarInfo(name)
            info.size = len(buffer.getvalue())
            handle.addfile(info, io.BytesIO(buffer.getvalue()))
    assert zipfile.is_zipfile(archive)  # the trap
    out = extract(archive, tmp_path / "out")
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.*")) == [
        "maps/a.npz",
        "maps/b.npz",
    ]
