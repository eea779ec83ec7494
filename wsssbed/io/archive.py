"""Safe extraction of zip and tar archives from strangers.

Every member is checked before anything is written: no absolute path, no `..`, no
link, device or other special file, and a budget on members and unpacked bytes (a zip
bomb is refused from its headers). Members are written into a temporary folder beside
the destination, which is renamed into place only when everything extracted: a failed
extraction leaves nothing behind.
"""

from __future__ import annotations

import errno
import functools
import shutil
import tarfile
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import IO

from wsssbed.errors import InputError
from wsssbed.io.imageio import regular_file
from wsssbed.io.outputs import follow_umask

MAX_MEMBERS = 2_000_000
MAX_BYTES = 200 * 2**30


def _safe_name(name: str, archive: Path) -> PurePosixPath:
    path = PurePosixPath(name.replace("\\", "/"))
    if path.is_absolute() or name.startswith(("/", "\\")) or (path.parts and ":" in path.parts[0]):
        raise InputError(f"member {name!r} has an absolute path", archive)
    if ".." in path.parts:
        raise InputError(f"member {name!r} leaves the extraction folder (`..`)", archive)
    return path


def _check_budget(members: int, size: int, archive: Path, free: int) -> None:
    if members > MAX_MEMBERS:
        raise InputError(f"{members:,} members, above the {MAX_MEMBERS:,} budget", archive)
    if size > MAX_BYTES:
        raise InputError(f"unpacks to {size:,} bytes, above the {MAX_BYTES:,} budget", archive)
    if size > free:
        raise InputError(
            f"archive expands beyond the free space: {size:,} bytes unpacked, "
            f"{free:,} bytes free on the target disk",
            archive,
        )


Member = tuple[PurePosixPath, bool, Callable[[], IO[bytes]]]  # name, is a folder, opener


def _zip_members(handle: zipfile.ZipFile, archive: Path, free: int) -> list[Member]:
    infos = handle.infolist()
    _check_budget(len(infos), sum(i.file_size for i in infos), archive, free)
    members = []
    for info in infos:
        mode = info.external_attr >> 16
        if mode and (mode & 0o170000) not in (0o100000, 0o040000, 0):
            raise InputError(f"member {info.filename!r} is a link or special file", archive)
        opener = functools.partial(handle.open, info)
        members.append((_safe_name(info.filename, archive), info.is_dir(), opener))
    return members


def _tar_members(handle: tarfile.TarFile, archive: Path, free: int) -> list[Member]:
    infos = handle.getmembers()
    _check_budget(len(infos), sum(m.size for m in infos), archive, free)
    members = []
    for info in infos:
        if not (info.isfile() or info.isdir()):
            raise InputError(f"member {info.name!r} is a link or special file", archive)
        opener = functools.partial(handle.extractfile, info)
        members.append((_safe_name(info.name, archive), info.isdir(), opener))
    return members


def _write_members(members: list[Member], target: Path) -> None:
    """Write checked members below `target` (every check has passed before the first)."""
    for name, is_folder, opener in members:
        destination = target.joinpath(*name.parts)
        if is_folder:
            destination.mkdir(parents=True, exist_ok=True)
            continue
        destination.parent.mkdir(parents=True, exist_ok=True)
        with opener() as source, open(destination, "wb") as sink:
            shutil.copyfileobj(source, sink, 1 << 20)


def extract(archive: Path, destination: Path) -> Path:
    """Extract a .zip, .tar, .tar.gz or .tgz into `destination` (which must not exist).

    Returns:
        `destination`, holding the archive's members.
    """
    regular_file(archive)
    if destination.exists():
        raise InputError("extraction target already exists", destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=destination.parent, prefix=f".{destination.name}."))
    follow_umask(staging)
    free = shutil.disk_usage(staging).free
    try:
        # tar first: `is_zipfile` looks for a zip directory near the end of the file, so
        # a tar whose last member is a zip (an `.npz` map) would pass for that zip
        if tarfile.is_tarfile(archive):
            with tarfile.open(archive) as handle:
                _write_members(_tar_members(handle, archive, free), staging)
        elif zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as handle:
                _write_members(_zip_members(handle, archive, free), staging)
        else:
            raise InputError("not a zip or tar archive", archive)
        staging.rename(destination)
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise InputError(
                "archive expands beyond the free space of the target disk", archive
            ) from exc
        raise InputError(f"corrupt archive: {exc}", archive) from exc
    except (zipfile.BadZipFile, tarfile.TarError, EOFError) as exc:
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
