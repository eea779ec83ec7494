"""Content digests of map folders.

The digest of a folder is sha256 over the lines `<sha256 of file>  <file name>\\n`, one
per map file, sorted by name. It binds each content to its name (two swapped files
change the digest, as they change the numbers) and ignores files that are not maps
(a README beside them). Only plain files count: a symbolic link is refused, since a
submitted folder could use one to point outside itself.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from wsssbed.errors import InputError

CHUNK = 1 << 20


def map_files(folder: Path, is_map: Callable[[str], bool], kind: str) -> list[Path]:
    """The files of `folder` whose names `is_map` accepts, sorted by name; refuses links
    and missing folders (`kind` names the maps in messages, e.g. a format name)."""
    if folder.is_symlink():
        raise InputError("the map folder is a symbolic link; give the real folder", folder)
    if not folder.is_dir():
        raise InputError("map folder not found", folder)
    files = []
    for entry in folder.iterdir():
        if not is_map(entry.name):
            continue
        if entry.is_symlink():
            raise InputError("map files must be plain files, not symbolic links", entry)
        if not entry.is_file():
            raise InputError("not a regular file", entry)
        files.append(entry)
    if not files:
        raise InputError(f"no {kind} map files here", folder)
    return sorted(files, key=lambda p: p.name)


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        while chunk := stream.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class FolderDigest:
    """`digest` is `sha256:<hex>`; `files` is the number of map files it covers."""

    digest: str
    files: int


def folder_digest(
    folder: Path,
    is_map: Callable[[str], bool],
    kind: str,
    progress: Callable[[int, int], None] | None = None,
    threads: int = 4,
) -> FolderDigest:
    """Digest every map file of `folder` (see the module docstring; `map_files`)."""
    files = map_files(folder, is_map, kind)
    lines = []
    with ThreadPoolExecutor(threads) as pool:
        for done, (path, sha) in enumerate(zip(files, pool.map(file_sha256, files)), start=1):
            lines.append(f"{sha}  {path.name}\n")
            if progress is not None:
                progress(done, len(files))
    total = hashlib.sha256("".join(lines).encode()).hexdigest()
    return FolderDigest(f"sha256:{total}", len(files))
