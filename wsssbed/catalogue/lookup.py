"""Where manifests live, and how a name resolves to one.

Two places are searched, in this order:

1. the user's registry, `$WSSSBED_HOME/manifests/<dataset>/<kind>/<name>.toml`
   (`WSSSBED_HOME` defaults to `~/.wsssbed`): manifests written by `wsssbed submit` and
   copies registered or verified by `wsssbed fetch` (with their local path and digest);
2. the catalogue shipped with wsssbed (the repository's `manifests/`, installed as
   `wsssbed.manifests`; same layout).

A name is unique within each place. Paths in a manifest cannot leave their root: a
relative `source.path` resolves inside `$WSSSBED_HOME`, and no name can contain a
separator.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from wsssbed.catalogue.manifest import Manifest, check_name, load_manifest
from wsssbed.errors import InputError
from wsssbed.io.home import home
from wsssbed.io.imageio import write_atomic

CATALOGUE = Path(str(files("wsssbed.manifests")))


def user_registry() -> Path:
    """Folder of the user's manifests."""
    return home() / "manifests"


def _index(root: Path) -> dict[str, Path]:
    found: dict[str, Path] = {}
    if not root.is_dir():
        return found
    for path in sorted(root.glob("*/*/*.toml")):
        if path.stem in found:
            raise InputError(
                f"two manifests named {path.stem!r}: {found[path.stem]} and {path}", root
            )
        found[path.stem] = path
    return found


def all_manifests() -> dict[str, Manifest]:
    """Every manifest by name; a user's copy shadows the catalogue's."""
    merged = {**_index(CATALOGUE), **_index(user_registry())}
    return {name: load_manifest(path) for name, path in sorted(merged.items())}


def registered_path(name: str) -> Path | None:
    """The user's manifest file called `name` in the registry, or None."""
    return _index(user_registry()).get(check_name(name))


def in_catalogue(name: str) -> bool:
    """Whether the shipped catalogue has a manifest called `name`."""
    return check_name(name) in _index(CATALOGUE)


def resolve(name: str, kind: str | tuple[str, ...] | None = None) -> Manifest:
    """The manifest called `name` (user registry first), optionally of a given kind."""
    check_name(name)
    for root in (user_registry(), CATALOGUE):
        path = _index(root).get(name)
        if path is None:
            continue
        manifest = load_manifest(path)
        kinds = (kind,) if isinstance(kind, str) else kind
        if kinds is not None and manifest.kind not in kinds:
            raise InputError(f"{name} is a {manifest.kind} manifest, not {' or '.join(kinds)}")
        return manifest
    raise InputError(
        f"no manifest named {name!r} (searched {user_registry()} and the catalogue); "
        "`wsssbed manifests` lists the names"
    )


def local_folder(manifest: Manifest) -> Path | None:
    """The manifest's local copy, resolved (None when it has none).

    Raises:
        InputError: a relative path that leaves `$WSSSBED_HOME`.
    """
    if not manifest.source.path:
        return None
    path = Path(manifest.source.path).expanduser()
    if path.is_absolute():
        return path
    root = home().resolve()
    resolved = (root / path).resolve()
    if not resolved.is_relative_to(root):
        raise InputError(
            f"source.path {manifest.source.path!r} leaves the registry root {root}",
            manifest.path,
        )
    return resolved


def manifest_path(manifest: Manifest) -> Path:
    """Where the user's copy of `manifest` is (or would be) written."""
    for part in (manifest.dataset, manifest.kind, manifest.name):
        check_name(part.lower())
    return user_registry() / manifest.dataset / manifest.kind / f"{manifest.name}.toml"


def write_manifest(manifest: Manifest) -> Path:
    """Write `manifest` into the user registry, atomically; returns its path."""
    path = manifest_path(manifest)
    text = manifest.to_toml()
    write_atomic(path, lambda stream: stream.write(text.encode()))
    manifest.path = path
    return path
