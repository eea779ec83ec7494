"""Staging folders that a later run can tell from anything else, and clean up.

A command that builds a folder (`datasets prepare`) writes into a hidden staging folder
beside its output and renames it into place at the end, so a failure leaves nothing
that looks finished. A process killed with SIGKILL cannot remove its staging folder,
so each one holds a marker file, locked (`flock`) for as long as its process lives: the
kernel drops the lock when the process dies, however it dies. `remove_stale` removes
the folders beside an output whose marker is not locked, and nothing else: no folder
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


def _prefix(out: Path) -> str:
    return f".{out.name}.partial-"


class Staging:
    """A new, marked and locked staging folder beside `out` (`path`).

    `commit()` renames it to `out` (which must be absent or an empty folder);
    `discard()` removes it. Either releases the lock.
    """

    def __init__(self, out: Path) -> None:
        out.parent.mkdir(parents=True, exist_ok=True)
        self.out = out
        self.path = Path(tempfile.mkdtemp(dir=out.parent, prefix=_prefix(out)))
        follow_umask(self.path)
        self._marker = os.open(self.path / MARKER, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        fcntl.flock(self._marker, fcntl.LOCK_EX)
        os.write(self._marker, _MARK_TEXT)

    def commit(self) -> None:
        (self.path / MARKER).unlink()  # the lock stays on the open file until closed
        if self.out.exists():
            self.out.rmdir()
        self.path.rename(self.out)
        os.close(self._marker)

    def discard(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)
        os.close(self._marker)


def remove_stale(out: Path) -> list[Path]:
    """Remove staging folders of `out` left by killed processes; returns them."""
    removed: list[Path] = []
    if not out.parent.is_dir():
        return removed
    for folder in sorted(out.parent.glob(_prefix(out) + "*")):
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
