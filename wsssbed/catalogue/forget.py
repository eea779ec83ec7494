"""`wsssbed forget`: undo a registration (`fetch`, `fetch --path`, `submit`).

What is removed, and only that: the user's manifest file in
`$WSSSBED_HOME/manifests/`, the maps wsssbed itself extracted for that name
(`$WSSSBED_HOME/maps/<name>/`, every version) and its leftover downloads
(`$WSSSBED_HOME/downloads/<name>-<version>.*`). A folder registered with `--path` is the
user's own and stays where it is; the catalogue's shipped manifests are never touched,
so a catalogue name means the shipped, unpinned entry again afterwards. The maps go
first and the manifest last, so a forget that fails half-way can simply be repeated.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

from wsssbed.catalogue.lookup import in_catalogue, local_folder, registered_path
from wsssbed.catalogue.manifest import Manifest, check_name, load_manifest
from wsssbed.errors import InputError
from wsssbed.io.home import home
from wsssbed.io.outputs import remove_empty_parents


@dataclass
class Forgotten:
    """What `forget` did.

    Attributes:
        manifest: the removed manifest file; ref: `name@version` ("" when it was unreadable).
        removed: the folders and files of wsssbed's own removed with it.
        kept: the registered folder, when it lies outside wsssbed's maps (the user's).
        catalogued: the catalogue has an entry of this name, which applies again.
    """

    manifest: Path
    ref: str
    removed: list[Path] = field(default_factory=list)
    kept: Path | None = None
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
    ours = maps.is_dir() and not maps.is_symlink()  # a link (made by hand) is not followed
    if folder is not None and not (ours and folder.resolve().is_relative_to(maps.resolve())):
        found.kept = folder
    if ours:
        shutil.rmtree(maps)
        remove_empty_parents(maps, home())
        found.removed.append(maps)
    downloads = home() / "downloads"
    for leftover in sorted(downloads.glob(f"{name}-*")) if downloads.is_dir() else ():
        if _is_version_download(leftover.name, name) and leftover.is_file():
            leftover.unlink()
            found.removed.append(leftover)
    path.unlink()
    remove_empty_parents(path, home())
    return found


def _folder(manifest: Manifest) -> Path | None:
    """The manifest's local folder, or None when it has none (or a bad path)."""
    try:
        return local_folder(manifest)
    except InputError:
        return None


def _is_version_download(file_name: str, name: str) -> bool:
    """`<name>-<semver>.<ext>`, as `fetch` names its downloads (not another name's
    `<name>-more-...`)."""
    rest = file_name[len(name) + 1 :]
    version = rest.split(".", 3)[:3]
    return len(version) == 3 and all(part.isdigit() for part in version)
