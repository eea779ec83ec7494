"""Output folders: wsssbed writes only where it may, and replaces only what it wrote.

Every command that writes a folder claims it first, before any work (`OutputFolder.claim`).
A claim succeeds for a folder that does not exist yet, an empty one, or one holding the
marker file `.wsssbed-output` of the same command (a JSON record: the command, the
wsssbed version, and the files it wrote). Anything else is refused, naming the folder:
a folder of someone's files, another command's output, a results folder. Nothing is
removed or replaced that the marker does not list.

Two ways of writing:

- *staged*, for outputs replaced as a whole (a site, a study, a prepared dataset,
  fetched maps): files are written into a staging folder, then `commit` checks that no
  file of someone else's would be replaced, records the union of old and new files,
  moves each new file into place (`os.replace`, whole files only), removes the files of
  the last run that this one did not write, and records the new set. A failure before
  the commit leaves the folder as it was; an interruption during it leaves every file
  recorded.
- *incremental*, for resumable writers (generators, the results store): `open` writes
  the marker, then the writer adds its files (`<image id>.<ext>`, the Parquet tables)
  through `inside`. Such writers never remove a file.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from wsssbed.errors import InputError
from wsssbed.io.imageio import write_atomic
from wsssbed.io.names import CONTROL
from wsssbed.io.outputs import (
    check_output_folder,
    follow_umask,
    inside,
    remove_empty_parents,
)
from wsssbed.io.staging import MARKER as STAGING_MARKER
from wsssbed.io.staging import Staging, remove_stale

MARKER = ".wsssbed-output"
STAGING = ".wsssbed-staging-"  # + random: a folder of a run in progress (io.staging)
MAX_MARKER_BYTES = 256 * 2**20  # a marker listing ten million files is still smaller


def _is_staging(entry: Path) -> bool:
    return entry.name.startswith(STAGING) and entry.is_dir() and not entry.is_symlink()


def _encodes(name: str) -> bool:
    """`name` is text a file system takes (no lone surrogate from a JSON escape)."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _relative(name: object, source: Path, what: str) -> str:
    """A file name of an output (`what` lists it): a relative POSIX path below the folder,
    not one of the names wsssbed reserves."""
    if not isinstance(name, str) or not name or CONTROL.search(name) or not _encodes(name):
        raise InputError(f"{what} {name!r}, not a file name", source)
    path = PurePosixPath(name)
    if path.is_absolute() or any(p in ("", ".", "..") for p in name.split("/")):
        raise InputError(f"{what} {name!r}, which is not a path below its folder", source)
    if path.parts[0] == MARKER or path.parts[0].startswith(STAGING):
        raise InputError(f"{what} {name!r}, a name wsssbed reserves", source)
    return name


def _read_marker(path: Path) -> tuple[str, tuple[str, ...]]:
    """(command, files) of a marker, checked."""
    if path.is_symlink() or not path.is_file():
        raise InputError("the marker is not a regular file", path)
    if path.stat().st_size > MAX_MARKER_BYTES:
        raise InputError(f"the marker is above {MAX_MARKER_BYTES:,} bytes", path)
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"the marker is not JSON: {exc}", path) from exc
    if not isinstance(record, dict) or not isinstance(record.get("command"), str):
        raise InputError("the marker has no `command`", path)
    files = record.get("files", [])
    if not isinstance(files, list):
        raise InputError("the marker's `files` is not a list", path)
    return record["command"], tuple(_relative(name, path, "the marker lists") for name in files)


def _entries(root: Path) -> list[Path]:
    """What `root` holds, except folders of wsssbed runs in progress or interrupted."""
    return sorted(e for e in root.iterdir() if not _is_staging(e))


@dataclass
class OutputFolder:
    """A folder a command may write, claimed before any work.

    Attributes:
        root: the folder (created on the first write).
        command: the command that writes it (`leaderboard`, `pseudo-labels`, ...).
        what: how messages name it (`site folder`).
        owned: files the last run of `command` recorded here (relative POSIX paths).
    """

    root: Path
    command: str
    what: str = "output folder"
    owned: tuple[str, ...] = ()
    _created: Path | None = field(default=None, repr=False)  # topmost folder this run made

    @classmethod
    def claim(
        cls,
        root: Path,
        command: str,
        what: str = "output folder",
        adopt: Callable[[Path], bool] | None = None,
        remedy: str = "choose another folder",
    ) -> OutputFolder:
        """Check that `command` may write `root` (see the module docstring); writes nothing.

        Args:
            adopt: recognises a folder this command wrote before markers existed (for
                incremental writers: their own record file); such a folder is claimed
                with no recorded files.
            remedy: what the user can do when refused (the end of the message).

        Raises:
            InputError: a file in the folder's place, a parent that cannot be written,
                another command's output, or a folder of files wsssbed did not write.
        """
        root = Path(root)
        check_output_folder(root, what)
        folder = cls(root, command, what)
        if not root.exists():
            return folder
        found = cls.recorded(root, what)
        if found is not None:
            if found.command != command:
                raise InputError(
                    f"this folder holds the output of `wsssbed {found.command}`, so it cannot "
                    f"be the {what} of `wsssbed {command}`; {remedy}",
                    root,
                )
            folder.owned = found.owned
            return folder
        entries = _entries(root)
        if not entries or (adopt is not None and adopt(root)):
            return folder
        names = ", ".join(e.name + ("/" if e.is_dir() else "") for e in entries[:3])
        more = f" and {len(entries) - 3} more" if len(entries) > 3 else ""
        results = " (a results folder)" if (root / "runs.parquet").exists() else ""
        raise InputError(
            f"the {what} is not empty and holds files wsssbed did not write here{results}: "
            f"{names}{more}. wsssbed writes only into a new or empty folder, or one the same "
            f"command wrote before (it holds a {MARKER} marker); {remedy}",
            root,
        )

    @classmethod
    def recorded(cls, root: Path, what: str = "output folder") -> OutputFolder | None:
        """The output whose marker `root` holds (its command and files), or None when
        `root` has no marker. Raises InputError for a damaged or tampered marker."""
        marker = Path(root) / MARKER
        if not (marker.exists() or marker.is_symlink()):
            return None
        command, owned = _read_marker(marker)
        return cls(Path(root), command, what, owned)

    def path(self, *parts: str) -> Path:
        """A path below the folder, checked (`wsssbed.io.outputs.inside`)."""
        return inside(self.root, *parts)

    def _make_root(self) -> None:
        if self.root.exists():
            return
        top = self.root
        while not top.parent.exists():
            top = top.parent
        self.root.mkdir(parents=True)
        follow_umask(self.root)
        self._created = top

    def _write_marker(self, files: list[str]) -> None:
        from wsssbed import __version__

        record = {"command": self.command, "wsssbed_version": __version__,
                  "note": "written by wsssbed: the files below are its own; it replaces or "
                  "removes no other file in this folder", "files": files}  # fmt: skip
        text = json.dumps(record, indent=0, ensure_ascii=False) + "\n"
        write_atomic(self.root / MARKER, lambda stream: stream.write(text.encode()))

    def open(self) -> OutputFolder:
        """Create the folder and its marker (incremental writers); returns self."""
        self._make_root()
        if not (self.root / MARKER).exists():
            self._write_marker(list(self.owned))
        return self

    def abandon(self) -> None:
        """Remove the folder and parents this run created, when they are empty."""
        if self._created is None:
            return
        stop = self._created.parent
        for folder in (self.root, *self.root.parents):
            if folder == stop:
                break
            try:
                folder.rmdir()
            except OSError:  # not empty: someone else's now, or never ours
                break
        self._created = None

    @contextmanager
    def staging(self) -> Iterator[Path]:
        """A new folder inside `root` to write a staged output into; removed on exit.

        Staging folders of runs that died are removed first (`wsssbed.io.staging`: a
        locked marker tells them from running ones). On an error the folder is left as
        it was (created folders removed when empty).
        """
        self._make_root()
        remove_stale(self.root, STAGING)
        staged = Staging(self.root, STAGING)
        try:
            yield staged.path
        except BaseException:
            staged.discard()
            self.abandon()
            raise
        staged.discard()

    def commit(self, staged: Path, keep_others: bool = False) -> list[Path]:
        """Move every file below `staged` to the same place below `root`.

        A file there that the marker does not list is never replaced: the commit is
        refused before anything moves. Files the last run listed and this one did not
        write are removed, unless `keep_others` (an additive command).

        Returns:
            The folder's files written by this run, sorted.

        Raises:
            InputError: naming a file of someone else's that the output would replace.
        """
        found = (p.relative_to(staged).as_posix() for p in staged.rglob("*")
                 if p.is_file() and not p.is_symlink())  # fmt: skip
        new = sorted(_relative(name, staged, "the output holds")
                     for name in found if name != STAGING_MARKER)  # fmt: skip
        owned = set(self.owned)
        kept = sorted(owned | set(new)) if keep_others else new
        stale = [self.path(name) for name in sorted(owned - set(kept))]  # checked before moving
        for name in new:
            target = self.path(name)
            blocked = [p for p in (target, *target.parents) if p != self.root
                       and self.root in p.parents and (p.is_symlink() or p.is_file())]  # fmt: skip
            if name not in owned and (os.path.lexists(target) or blocked):
                raise InputError(
                    f"the {self.what} already holds {name}, which wsssbed did not write; "
                    "move it away or choose another folder (nothing was written)",
                    self.root,
                )
            if name in owned and blocked and blocked != [target]:
                raise InputError(f"{blocked[-1]} is a file where a folder is needed", self.root)
        self._make_root()
        self._write_marker(sorted(owned | set(new)))  # an interruption below leaves all listed
        for name in new:
            target = self.path(name)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(staged / name, target)
        self._remove(stale)
        self._write_marker(kept)
        self.owned = tuple(kept)
        self._created = None
        return [self.root / name for name in new]

    def _remove(self, paths: list[Path]) -> None:
        """Remove files of this folder's record (`path`-checked; never anything else) and
        the folders they leave empty."""
        for stale in paths:
            if stale.is_file() or stale.is_symlink():
                stale.unlink()
                remove_empty_parents(stale, self.root)

    def clear(self) -> None:
        """Undo this command's output: remove the files the marker lists, the marker, and
        the folder when nothing else is left in it."""
        self._remove([self.path(name) for name in self.owned])
        (self.root / MARKER).unlink(missing_ok=True)
        self.owned = ()
        with contextlib.suppress(OSError):  # someone else's files remain (or it is gone)
            self.root.rmdir()
