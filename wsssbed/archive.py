"""Safe extraction of zip and tar archives from strangers.

Every member is checked before anything is written: no absolute path, no `..`, no
link, device or other special file, and a budget on members and unpacked bytes (a zip
bomb is refused from its headers). Members are written into a temporary folder beside
the destination, which is renamed into place only when everything extracted: a failed
extraction leaves nothing behind.
"""

from __future__ import annotations

import shutil
import tarfile
import tempfile
import zipfile
from pathlib import Path, PurePosixPath

from wsssbed.errors import InputError

MAX_MEMBERS = 2_000_000
MAX_BYTES = 200 * 2**30


def _safe_name(name: str, archive: Path) -> PurePosixPath:
    path = PurePosixPath(name.replace("\\", "/"))
    if path.is_absolute() or name.startswith(("/", "\\")) or (path.parts and ":" in path.parts[0]):
        raise InputError(f"member {name!r} has an absolute path", archive)
    if ".." in path.parts:
        raise InputError(f"member {name!r} leaves the extraction folder (`..`)", archive)
    return path


def _check_budget(members: int, size: int, archive: Path) -> None:
    if members > MAX_MEMBERS:
        raise InputError(f"{members:,} members, above the {MAX_MEMBERS:,} budget", archive)
    if size > MAX_BYTES:
        raise InputError(f"unpacks to {size:,} bytes, above the {MAX_BYTES:,} budget", archive)


def _extract_zip(archive: Path, target: Path) -> None:
    with zipfile.ZipFile(archive) as handle:
        infos = handle.infolist()
        _check_budget(len(infos), sum(i.file_size for i in infos), archive)
        for info in infos:
            name = _safe_name(info.filename, archive)
            mode = info.external_attr >> 16
            if mode and (mode & 0o170000) not in (0o100000, 0o040000, 0):
                raise InputError(f"member {info.filename!r} is a link or special file", archive)
        for info in infos:
            name = _safe_name(info.filename, archive)
            destination = target.joinpath(*name.parts)
            if info.is_dir():
                destination.mkdir(parents=True, exist_ok=True)
                continue
            destination.parent.mkdir(parents=True, exist_ok=True)
            with handle.open(info) as source, open(destination, "wb") as sink:
                shutil.copyfileobj(source, sink, 1 << 20)


def _extract_tar(archive: Path, target: Path) -> None:
    with tarfile.open(archive) as handle:
        members = handle.getmembers()
        _check_budget(len(members), sum(m.size for m in members), archive)
        for member in members:
            _safe_name(member.name, archive)
            if not (member.isfile() or member.isdir()):
                raise InputError(f"member {member.name!r} is a link or special file", archive)
        for member in members:
            name = _safe_name(member.name, archive)
            destination = target.joinpath(*name.parts)
            if member.isdir():
                destination.mkdir(parents=True, exist_ok=True)
                continue
            destination.parent.mkdir(parents=True, exist_ok=True)
            source = handle.extractfile(member)
            with source, open(destination, "wb") as sink:
                shutil.copyfileobj(source, sink, 1 << 20)


def extract(archive: Path, destination: Path) -> Path:
    """Extract a .zip, .tar, .tar.gz or .tgz into `destination` (which must not exist).

    Returns:
        `destination`, holding the archive's members.
    """
    if destination.exists():
        raise InputError("extraction target already exists", destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=destination.parent, prefix=f".{destination.name}."))
    try:
        if zipfile.is_zipfile(archive):
            _extract_zip(archive, staging)
        elif tarfile.is_tarfile(archive):
            _extract_tar(archive, staging)
        else:
            raise InputError("not a zip or tar archive", archive)
        staging.rename(destination)
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError) as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise InputError(f"corrupt archive: {exc}", archive) from exc
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return destination


def single_folder(root: Path) -> Path:
    """The folder holding the maps: `root`, or its only sub-folder when that is all it has."""
    entries = [e for e in root.iterdir() if not e.name.startswith(".")]
    if len(entries) == 1 and entries[0].is_dir():
        return entries[0]
    return root
