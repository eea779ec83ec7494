"""`wsssbed fetch`: get a manifest's files (download, or a local folder or archive), verify,
register.

A download (`wsssbed.catalogue.download`: resumable, retried) lands in
`$WSSSBED_HOME/downloads/`, is checked against the manifest's archive sha256 when it has
one, extracted and verified in a staging folder inside its destination
`$WSSSBED_HOME/maps/<name>/<version>`, and only then moved into place, so a bad download
never replaces a good copy. An archive the user already has (`--path maps.zip`) takes the
same way, and stays where it is. The destination is an output folder of `fetch`
(`wsssbed.io.ownership`): a re-fetch replaces the files the last fetch wrote, and a
folder holding anything else is refused before the download.

Registering writes the user's copy of the manifest with `source.path` set to the folder
and, the first time a copy is verified, `content.digest`, `content.files` and
`content.pinned_from` filled (and `source.sha256` for a download). A first local copy is
pinned only when it covers the manifest's split exactly (`coverage.check_coverage`,
which needs the data root). Later fetches must match the pins exactly.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

from wsssbed.activation import digest_maps
from wsssbed.catalogue.coverage import check_coverage
from wsssbed.catalogue.download import DownloadError, download
from wsssbed.catalogue.lookup import resolve, write_manifest
from wsssbed.catalogue.manifest import Content, Manifest
from wsssbed.catalogue.methods import check_digest
from wsssbed.datasets import get_dataset
from wsssbed.datasets.local import LocalDataset
from wsssbed.errors import InputError, WsssbedError
from wsssbed.io.archive import extract, single_folder
from wsssbed.io.home import home
from wsssbed.io.ownership import OutputFolder

Progress = Callable[[int, int], None]


@dataclasses.dataclass(frozen=True)
class Checks:
    """How a copy is checked before it is pinned (a pinned manifest needs none of these).

    Attributes:
        pinned_from: what the copy is (`manifest.PINNED_FROM`), recorded with the pin.
        data_root: the dataset folder to check the copy's coverage of the split against;
            required for a local copy, optional for a download.
        progress: (done, total) while digesting; coverage: while reading masks.
    """

    pinned_from: str
    data_root: Path | None = None
    progress: Progress | None = None
    coverage: Progress | None = None


def pinned_content(manifest: Manifest, folder: Path, checks: Checks) -> Content:
    """`folder` checked against the manifest's digest, or, when it has none yet, checked
    for coverage of its split (see `Checks`) and digested."""
    if manifest.content.digest:
        found = check_digest(manifest, folder, checks.progress)
        return dataclasses.replace(manifest.content, digest=found.digest, files=found.files)
    if checks.data_root is not None:
        dataset = LocalDataset(get_dataset(manifest.dataset), checks.data_root, manifest.split)
        split = dataset.split_check
        if split.official is False:  # covering another list proves nothing of the entry's
            raise InputError(
                f"{split.reason}. A first local copy is pinned as {manifest.ref} only when it "
                f"covers the official {manifest.split} list; give a data root holding it",
                folder,
            )
        check_coverage(manifest, folder, dataset, checks.coverage)
    elif checks.pinned_from == "local-copy":
        raise InputError(
            f"{manifest.ref} is not pinned yet: a first local copy is pinned only once it is "
            f"checked to cover {manifest.dataset}/{manifest.split} exactly; give "
            "`data_root` (the dataset folder holding that split's list and masks)",
            folder,
        )
    found = digest_maps(folder, manifest.content.format, checks.progress)
    return Content(manifest.content.format, found.digest, found.files, checks.pinned_from)


def register(manifest: Manifest, folder: Path, content: Content, sha256: str = "") -> Manifest:
    """Write the user's copy of `manifest` with its local folder and pinned content."""
    source = dataclasses.replace(
        manifest.source, path=str(folder), sha256=sha256 or manifest.source.sha256
    )
    registered = dataclasses.replace(manifest, source=source, content=content)
    write_manifest(registered)
    return registered


def download_target(manifest: Manifest) -> Path:
    """Where `download_archive` puts the manifest's archive:
    `$WSSSBED_HOME/downloads/<name>-<version><the URL's suffixes>`."""
    suffix = "".join(PurePosixPath(urlsplit(manifest.source.url).path).suffixes[-2:])
    return home() / "downloads" / f"{manifest.name}-{manifest.version}{suffix or '.archive'}"


def download_archive(manifest: Manifest, progress: Progress | None = None) -> tuple[Path, str]:
    """The manifest's archive in `$WSSSBED_HOME/downloads/` and its sha256 (checked when pinned).

    An interrupted download stays there as `.part` and is resumed by the next call.
    """
    url = manifest.source.url
    target = download_target(manifest)
    try:
        sha256 = download(url, target, progress)
    except DownloadError as exc:
        raise WsssbedError(
            f"{exc}. If you already have these maps (a folder, or this archive downloaded "
            f"another way), register them with `wsssbed fetch {manifest.name} --path PATH "
            "--data-root DATA`"
        ) from None
    pinned = manifest.source.sha256
    if pinned and sha256 != pinned:
        target.unlink()
        raise InputError(
            f"archive sha256 mismatch for {manifest.ref}: pinned {pinned}, downloaded {sha256}. "
            "The download was deleted and the registered copy is unchanged; if the publisher "
            f"changed the archive ({url}), the manifest needs a new version"
        )
    return target, sha256


def fetch(
    name: str,
    path: Path | None = None,
    progress: Progress | None = None,
    download_progress: Progress | None = None,
    data_root: Path | None = None,
    coverage_progress: Progress | None = None,
) -> list[Manifest]:
    """Fetch one map manifest, or both sources of a pipeline; returns the registered copies.

    Args:
        path: a local copy instead of a download: a folder of maps, or the archive
            (.zip, .tar, .tar.gz) holding them, extracted into `$WSSSBED_HOME/maps/`.
        data_root: the dataset folder; needed to pin a first local copy (see `Checks`).
        progress: called with (files done, total) while digesting.
        download_progress: called with (bytes done, total) while downloading.
        coverage_progress: called with (masks read, total) while checking coverage.
    """
    manifest = resolve(name)
    if manifest.kind == "pipeline":
        if path is not None:
            raise InputError(
                f"{name} is a pipeline; register its sources one by one with --path "
                f"({manifest.pipeline.activation}"
                + (f", {manifest.pipeline.saliency}" if manifest.pipeline.saliency else "")
                + ")"
            )
        names = [manifest.pipeline.activation]
        if manifest.pipeline.saliency and manifest.pipeline.with_saliency:
            names.append(manifest.pipeline.saliency)
        return [
            registered
            for source in names
            for registered in fetch(
                source, None, progress, download_progress, data_root, coverage_progress
            )
        ]
    root = None if data_root is None else data_root.expanduser()
    if path is not None:
        checks = Checks("local-copy", root, progress, coverage_progress)
        local = path.expanduser().resolve()
        if not local.is_dir():
            return [_install(manifest, local, checks, _maps_folder(manifest))]
        return [register(manifest, local, pinned_content(manifest, local, checks))]
    if not manifest.source.url:
        raise InputError(f"{manifest.ref} has no download address; give --path", manifest.path)
    maps = _maps_folder(manifest)  # claimed before the download
    archive, sha256 = download_archive(manifest, download_progress)
    checks = Checks("upstream-archive", root, progress, coverage_progress)
    try:
        return [_install(manifest, archive, checks, maps, sha256)]
    finally:  # a verified archive is extracted; a bad one is not worth keeping
        archive.unlink(missing_ok=True)


def _maps_folder(manifest: Manifest) -> OutputFolder:
    """`$WSSSBED_HOME/maps/<name>/<version>`, claimed as `fetch`'s output folder."""
    destination = home() / "maps" / manifest.name / manifest.version
    return OutputFolder.claim(destination, "fetch", "maps folder", remedy="move it away")


def _install(
    manifest: Manifest, archive: Path, checks: Checks, maps: OutputFolder, sha256: str = ""
) -> Manifest:
    """Extract `archive` into the maps folder, verify or pin it there, and register it; an
    earlier copy's files are replaced only by a verified one's."""
    if not archive.exists():
        raise InputError("no such file or folder", archive)
    with maps.staging() as scratch:
        staged = extract(archive, scratch / "maps")
        content = pinned_content(manifest, single_folder(staged), checks)
        inner = single_folder(staged).relative_to(staged)
        maps.commit(staged)
    return register(manifest, maps.root / inner, content, sha256)
