"""Staging folders that a later run can tell from anything else, and clean up.

A command that builds an output as a whole (a prepared dataset, a site, a study) writes
into a hidden staging folder first and moves the result into place at the end, so a
failure leaves nothing that looks finished. A process killed with SIGKILL cannot remove
its staging folder, so each one holds a marker file, locked (`flock`) for as long as its
process lives: the kernel drops the lock when the process dies, however it dies (a
process id could be reused; a lock cannot outlive its holder). `remove_stale` removes
the staging folders of a prefix whose marker is not locked, and nothing else: no folder
without the marker, no folder a running process holds.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
from pathlib import Path

from wsssbed.io.outputs import follow_umask

MARKER = ".wsssbed-staging"
_MARK_TEXT = b"wsssbed staging folder; removed by the next run when no process holds it\n"


def beside(out: Path) -> tuple[Path, str]:
    """(parent, prefix) of the staging folders of an output built beside itself."""
    return out.parent, f".{out.name}.partial-"


class Staging:
    """A new, marked and locked staging folder `path` in `parent`, named `prefix...`.

    Its files are the output's, but for the marker (`MARKER`, at the top). `discard()`
    removes it and releases the lock.
    """

    def __init__(self, parent: Path, prefix: str) -> None:
        parent.mkdir(parents=True, exist_ok=True)
        self.path = Path(tempfile.mkdtemp(dir=parent, prefix=prefix))
        follow_umask(self.path)
        self._marker = os.open(self.path / MARKER, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        fcntl.flock(self._marker, fcntl.LOCK_EX)
        os.write(self._marker, _MARK_TEXT)

    def discard(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)
        if self._marker >= 0:
            os.close(self._marker)
            self._marker = -1


def remove_stale(parent: Path, prefix: str) -> list[Path]:
    """Remove the staging folders `parent/prefix*` left by killed processes; returns them."""
    removed: list[Path] = []
    if not parent.is_dir():
        return removed
    for folder in sorted(parent.glob(prefix + "*")):
        if folder.is_symlink() or not folder.is_dir():
            continue
        try:
            handle = os.open(folder / MARKER, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:  # no marker (not ours), or a link in its place
            continue
        try:
            if os.read(handle, len(_MARK_TEXT) + 1) != _MARK_TEXT:
                continue
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:  # a running process holds it
                continue
            shutil.rmtree(folder)
            removed.append(folder)
        finally:
            os.close(handle)
    return removed
