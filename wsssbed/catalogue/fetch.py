"""`wsssbed fetch`: get a manifest's files (download or a local copy), verify, register.

A download (`wsssbed.catalogue.download`: resumable, retried) lands in
`$WSSSBED_HOME/downloads/`, is checked against the manifest's archive sha256 when it has
one, extracted and verified in a staging folder inside its destination
`$WSSSBED_HOME/maps/<name>/<version>`, and only then moved into place, so a bad download
never replaces a good copy. The destination is an output folder of `fetch`
(`wsssbed.io.ownership`): a re-fetch replaces the files the last fetch wrote, and a
folder holding anything else is refused before the download. Registering writes the
user's copy of the manifest with `source.path` set to the folder and, the first time a
copy is verified, `source.sha256`, `content.digest` and `content.files` filled. Later
fetches must match both exactly.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

from wsssbed.activation import digest_maps
from wsssbed.catalogue.download import DownloadError, download
from wsssbed.catalogue.lookup import resolve, write_manifest
from wsssbed.catalogue.manifest import Content, Manifest
from wsssbed.catalogue.methods import check_digest
from wsssbed.errors import InputError, WsssbedError
from wsssbed.io.archive import extract, single_folder
from wsssbed.io.home import home
from wsssbed.io.ownership import OutputFolder

Progress = Callable[[int, int], None]


def pinned_content(manifest: Manifest, folder: Path, progress: Progress | None = None) -> Content:
    """`folder` checked against the manifest's digest, or digested when it has none yet."""
    if manifest.content.digest:
        found = check_digest(manifest, folder, progress)
    else:
        found = digest_maps(folder, manifest.content.format, progress)
    return Content(manifest.content.format, found.digest, found.files)


def register(manifest: Manifest, folder: Path, content: Content, sha256: str = "") -> Manifest:
    """Write the user's copy of `manifest` with its local folder and pinned content."""
    source = dataclasses.replace(
        manifest.source, path=str(folder), sha256=sha256 or manifest.source.sha256
    )
    registered = dataclasses.replace(manifest, source=source, content=content)
    write_manifest(registered)
    return registered


def download_archive(manifest: Manifest, progress: Progress | None = None) -> tuple[Path, str]:
    """The manifest's archive in `$WSSSBED_HOME/downloads/` and its sha256 (checked when pinned).

    An interrupted download stays there as `.part` and is resumed by the next call.
    """
    url = manifest.source.url
    suffix = "".join(PurePosixPath(urlsplit(url).path).suffixes[-2:]) or ".archive"
    target = home() / "downloads" / f"{manifest.name}-{manifest.version}{suffix}"
    try:
        sha256 = download(url, target, progress)
    except DownloadError as exc:
        raise WsssbedError(
            f"{exc}. If you already have these maps, register your copy with "
            f"`wsssbed fetch {manifest.name} --path FOLDER`"
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
) -> list[Manifest]:
    """Fetch one map manifest, or both sources of a pipeline; returns the registered copies.

    Args:
        progress: called with (files done, total) while digesting.
        download_progress: called with (bytes done, total) while downloading.
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
            for registered in fetch(source, None, progress, download_progress)
        ]
    if path is not None:
        folder = path.expanduser().resolve()
        return [register(manifest, folder, pinned_content(manifest, folder, progress))]
    if not manifest.source.url:
        raise InputError(f"{manifest.ref} has no download address; give --path", manifest.path)
    destination = home() / "maps" / manifest.name / manifest.version
    maps = OutputFolder.claim(destination, "fetch", "maps folder", remedy="move it away")
    archive, sha256 = download_archive(manifest, download_progress)
    try:
        with maps.staging() as scratch:
            staged = extract(archive, scratch / "maps")
            content = pinned_content(manifest, single_folder(staged), progress)
            inner = single_folder(staged).relative_to(staged)
            maps.commit(staged)  # an earlier copy's files, replaced only by verified ones
    finally:  # a verified archive is extracted; a bad one is not worth keeping
        archive.unlink(missing_ok=True)
    return [register(manifest, destination / inner, content, sha256)]
