"""Checking where output will go before any work starts, and OS errors in plain words."""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from wsssbed.errors import InputError

_ADVICE = {
    errno.ENOSPC: "the disk is full: free some space or choose another location",
    errno.EDQUOT: "the disk quota is used up: free some space or choose another location",
    errno.EROFS: "the file system is read-only: choose another location",
    errno.EACCES: "no permission to write here: choose another location",
    errno.EPERM: "no permission to write here: choose another location",
}


def _current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


UMASK = _current_umask()  # read once: os.umask can only be read by setting it


def follow_umask(path: Path) -> None:
    """Give a temporary file or folder (created 0600/0700 by `tempfile`) the permissions
    a plain `open` or `mkdir` would, before it is renamed into place."""
    os.chmod(path, (0o777 if path.is_dir() else 0o666) & ~UMASK)


def check_output_folder(folder: Path, what: str = "output folder") -> None:
    """Refuse an output location that cannot work, before anything is computed.

    The folder itself may not exist yet (it is created when the first file is written);
    then its nearest existing parent must be a writable folder.

    Raises:
        InputError: `folder` is a file, or sits below a file or a folder that cannot be
            written.
    """
    if folder.exists() and not folder.is_dir():
        raise InputError(f"the {what} is a file, not a folder; choose another location", folder)
    parent = folder
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise InputError(f"the {what} would be inside a file, {parent}", folder)
    if not os.access(parent, os.W_OK | os.X_OK):
        raise InputError(f"no permission to write the {what} in {parent}", folder)


def inside(root: Path, *parts: str, base: Path | None = None) -> Path:
    """`root / parts...`, checked to lie below `root` once links and `..` are resolved.

    Every path wsssbed writes from a name it read (an image id, a run id) goes through
    here, whatever checked the name before.

    Args:
        base: `root.resolve()`, when the caller resolved it once for many paths.

    Raises:
        InputError: the path would leave `root`, or cannot be resolved (a link loop),
            naming the path.
    """
    path = root.joinpath(*parts)
    base = root.resolve() if base is None else base
    name = parts[0] if len(parts) == 1 else ""
    plain = name not in ("", ".", "..") and not any(s in name for s in (os.sep, os.altsep) if s)
    # one plain name that is not a link resolves below the resolved root: no walk
    try:
        resolved = base / name if plain and not os.path.islink(path) else path.resolve()
    except (RuntimeError, OSError) as exc:  # a link loop (RuntimeError before Python 3.13)
        raise InputError(f"cannot be resolved: {exc}", path) from exc
    if resolved == base or not resolved.is_relative_to(base):
        raise InputError(f"leaves its folder {root} (it resolves to {resolved})", path)
    return path


def check_output_file(path: Path, what: str = "output file") -> None:
    """`check_output_folder` for a single file, before anything is computed: refuse a
    folder in its place, a parent that cannot hold it, and an existing file. A single
    file carries no marker (`wsssbed.io.ownership`), so an existing one could be
    anybody's: wsssbed never replaces it."""
    if path.is_dir():
        raise InputError(f"the {what} is a folder, not a file; choose another location", path)
    if os.path.lexists(path):
        raise InputError(
            f"the {what} already exists; wsssbed never replaces a file it cannot tell it "
            "wrote: choose a new name, or move the old file away",
            path,
        )
    check_output_folder(path.parent, f"folder of the {what}")


@contextmanager
def naming(path: Path) -> Iterator[None]:
    """An OS error raised in the block without a file name gets `path` as its file name.

    A write that fills the disk fails in `write()` or `close()`, whose errors name no
    file; every writer wraps its writes in this, so the message says which file."""
    try:
        yield
    except OSError as error:
        if error.filename is None:
            error.filename = str(path)
        raise


def os_error_message(error: OSError) -> str:
    """An OS error as one line: the file, what happened, and what to do."""
    where = f"{error.filename}: " if error.filename else ""
    reason = error.strerror or str(error)
    advice = _ADVICE.get(error.errno or 0)
    return f"{where}{reason}" + (f"; {advice}" if advice else "")


def remove_empty_parents(path: Path, stop: Path) -> None:
    """Remove `path`'s parent folders up to (not including) `stop` while they are empty."""
    for parent in path.parents:
        if parent == stop or stop not in parent.parents:
            return
        try:
            parent.rmdir()
        except OSError:  # not empty (or gone): stop climbing
            return
