"""`wsssbed fetch`: get a manifest's files (download or a local copy), verify, register.

A download is extracted and verified in a staging folder beside its destination and
only then moved into place, so a bad download never replaces a good copy.
Registering writes the user's copy of the manifest with `source.path` set to the folder
and, the first time a copy is verified, `content.digest` and `content.files` filled.
Later copies must match that digest exactly.
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
import urllib.request
from collections.abc import Callable
from pathlib import Path

from wsssbed.archive import extract, single_folder
from wsssbed.catalogue import resolve, write_manifest
from wsssbed.digest import folder_digest
from wsssbed.errors import InputError
from wsssbed.home import home
from wsssbed.manifest import Content, Manifest
from wsssbed.methods import check_digest

Progress = Callable[[int, int], None]


def pinned_content(manifest: Manifest, folder: Path, progress: Progress | None = None) -> Content:
    """`folder` checked against the manifest's digest, or digested when it has none yet."""
    if manifest.content.digest:
        found = check_digest(manifest, folder, progress)
    else:
        found = folder_digest(folder, manifest.content.format, progress)
    return Content(manifest.content.format, found.digest, found.files)


def register(manifest: Manifest, folder: Path, content: Content) -> Manifest:
    """Write the user's copy of `manifest` with its local folder and pinned content."""
    source = dataclasses.replace(manifest.source, path=str(folder))
    registered = dataclasses.replace(manifest, source=source, content=content)
    write_manifest(registered)
    return registered


def download(url: str, target: Path, progress: Progress | None = None) -> None:
    """Download `url` to `target` (written beside it first, renamed when complete)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".part")
    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(partial, "wb") as sink:
            total = int(response.headers.get("Content-Length") or 0)
            done = 0
            while chunk := response.read(1 << 20):
                sink.write(chunk)
                done += len(chunk)
                if progress is not None:
                    progress(done, total or done)
        partial.rename(target)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise InputError(f"download failed: {exc}", url) from exc


def fetch(name: str, path: Path | None = None, progress: Progress | None = None) -> list[Manifest]:
    """Fetch one map manifest, or both sources of a pipeline; returns the registered copies."""
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
        return [registered for source in names for registered in fetch(source, None, progress)]
    if path is not None:
        folder = path.expanduser().resolve()
        return [register(manifest, folder, pinned_content(manifest, folder, progress))]
    if not manifest.source.url:
        raise InputError(f"{manifest.ref} has no download address; give --path", manifest.path)
    destination = home() / "maps" / manifest.name / manifest.version
    destination.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=destination.parent) as scratch:
        archive = Path(scratch) / "download"
        download(manifest.source.url, archive, progress)
        staged = extract(archive, Path(scratch) / "maps")
        content = pinned_content(manifest, single_folder(staged), progress)
        inner = single_folder(staged).relative_to(staged)
        if destination.exists():  # an earlier copy, replaced only by a verified one
            shutil.rmtree(destination)
        staged.rename(destination)
    return [register(manifest, destination / inner, content)]
