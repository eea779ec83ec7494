"""`wsssbed forget`: undo a registration (`fetch`, `fetch --path`, `submit`).

What is removed, and only that: the user's manifest file in
`$WSSSBED_HOME/manifests/`, the files `fetch` and `submit` wrote for that name (those
the `.wsssbed-output` marker of each `$WSSSBED_HOME/maps/<name>/<version>/` lists:
`wsssbed.io.ownership`) and what `fetch` downloaded for the manifest's version: its
archive in `$WSSSBED_HOME/downloads/`, named from the manifest (`fetch.download_target`),
and that archive's `.part` and `.part.json` (`download.written_files`). Nothing else is
touched: a folder registered with `--path` is the user's own and stays where it is, even
below `maps/<name>/`, and so does any other file of the user's there. The catalogue's
shipped manifests are never touched, so a catalogue name means the shipped, unpinned
entry again afterwards. The maps go first and the manifest last, so a forget that fails
half-way can simply be repeated.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from wsssbed.catalogue.download import written_files
from wsssbed.catalogue.fetch import download_target
from wsssbed.catalogue.lookup import in_catalogue, local_folder, registered_path
from wsssbed.catalogue.manifest import SEMVER_PATTERN, Manifest, check_name, load_manifest
from wsssbed.errors import InputError
from wsssbed.io.home import home
from wsssbed.io.outputs import remove_empty_parents
from wsssbed.io.ownership import STAGING, OutputFolder
from wsssbed.io.staging import remove_stale

WRITERS = ("fetch", "submit")  # the commands whose maps folders `forget` undoes


@dataclass
class Forgotten:
    """What `forget` did.

    Attributes:
        manifest: the removed manifest file; ref: `name@version` ("" when it was unreadable).
        removed: the maps folders (their listed files) and downloads of wsssbed's own
            removed with it.
        kept: the registered folder, when it is still there (the user's: wsssbed did not
            write it).
        left: other entries of `maps/<name>/` that wsssbed did not write, kept.
        catalogued: the catalogue has an entry of this name, which applies again.
    """

    manifest: Path
    ref: str
    removed: list[Path] = field(default_factory=list)
    kept: Path | None = None
    left: list[Path] = field(default_factory=list)
    catalogued: bool = False


def forget(name: str) -> Forgotten:
    """Remove the user's registration of `name` (see the module docstring).

    Raises:
        InputError: nothing of that name is registered (naming the registry), also when
            only the catalogue has it.
    """
    path = registered_path(name)
    catalogued = in_catalogue(name)
    if path is None:
        where = home() / "manifests"
        if catalogued:
            raise InputError(
                f"{name} is not registered: only the catalogue's entry exists, which ships "
                "with wsssbed and is not removed",
                where,
            )
        raise InputError(f"no manifest named {name!r} is registered", where)
    manifest: Manifest | None
    try:
        manifest = load_manifest(path)
    except InputError:  # a damaged manifest file is removed all the same
        manifest = None
    maps = home() / "maps" / check_name(name)
    found = Forgotten(path, "" if manifest is None else manifest.ref, catalogued=catalogued)
    folder = None if manifest is None else _folder(manifest)
    if maps.is_dir() and not maps.is_symlink():  # a link (made by hand) is not followed
        found.removed += _remove_written(maps)
        if maps.is_dir():
            found.left = [entry for entry in sorted(maps.iterdir())
                          if folder is None or not _holds(entry, folder)]  # fmt: skip
    if folder is not None and (folder.exists() or folder.is_symlink()):
        found.kept = folder
    if manifest is not None and manifest.source.url:  # what `fetch` downloaded, by name
        for leftover in written_files(download_target(manifest)):
            if leftover.is_file() and not leftover.is_symlink():
                leftover.unlink()
                found.removed.append(leftover)
    path.unlink()
    remove_empty_parents(path, home())
    return found


def _remove_written(maps: Path) -> list[Path]:
    """Undo `fetch`'s and `submit`'s outputs in `maps/<name>/`: in each `<version>/` folder
    holding their marker, the files it lists (`OutputFolder.clear`) and staging folders of
    runs that died; then the folders left empty. Returns the version folders undone."""
    undone = []
    for version in sorted(maps.iterdir()):
        if version.is_symlink() or not version.is_dir() or not SEMVER_PATTERN.match(version.name):
            continue
        output = OutputFolder.recorded(version, "maps folder")
        if output is None or output.command not in WRITERS:
            continue
        remove_stale(version, STAGING)
        output.clear()
        remove_empty_parents(version, home())
        undone.append(version)
    return undone


def _holds(entry: Path, folder: Path) -> bool:
    """`folder` is `entry` or lies below it (links resolved)."""
    return folder.resolve().is_relative_to(entry.resolve())


def _folder(manifest: Manifest) -> Path | None:
    """The manifest's local folder, or None when it has none (or a bad path)."""
    try:
        return local_folder(manifest)
    except InputError:
        return None
