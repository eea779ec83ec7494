"""`--method X`: resolve manifests to local folders, verify their digests, record them."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from wsssbed.activation import digest_maps
from wsssbed.catalogue.lookup import local_folder, resolve
from wsssbed.catalogue.manifest import Manifest, PipelineSpec
from wsssbed.errors import InputError
from wsssbed.io.digest import FolderDigest

Progress = Callable[[int, int], None]


class DigestMismatch(InputError):
    """The files on disk are not the ones the manifest pins."""


@dataclass
class UsedManifest:
    """A manifest a run used, and whether its files were verified against its digest."""

    manifest: Manifest
    folder: Path
    verified: bool

    def record(self) -> dict:
        """Provenance entry stored with the run (`pinned_from`: where the digest came
        from, `manifest.PINNED_FROM`; None for a manifest pinned before it was recorded)."""
        m = self.manifest
        return {
            "name": m.name,
            "version": m.version,
            "kind": m.kind,
            "digest": m.content.digest or None,
            "files": m.content.files,
            "pinned_from": m.content.pinned_from or None,
            "verified": self.verified,
            "path": str(self.folder),
        }


@dataclass
class ResolvedMethod:
    """What `--method X` (and `--saliency Y`) stand for."""

    name: str
    dataset: str
    split: str
    pipeline: PipelineSpec | None
    activation: UsedManifest
    saliency: UsedManifest | None = None
    pipeline_manifest: Manifest | None = None

    @property
    def used(self) -> list[UsedManifest]:
        """Every map manifest involved."""
        return [u for u in (self.activation, self.saliency) if u is not None]

    @property
    def verified(self) -> bool:
        """All map folders matched their digests."""
        return all(u.verified for u in self.used)

    def provenance(self) -> dict:
        """Columns for the runs table."""
        records = [u.record() for u in self.used]
        if self.pipeline_manifest is not None:
            p = self.pipeline_manifest
            records.insert(0, {"name": p.name, "version": p.version, "kind": "pipeline"})
        return {
            "method": self.name,
            "manifests": json.dumps(records),
            "verified": self.verified,
        }


def check_digest(
    manifest: Manifest, folder: Path, progress: Progress | None = None
) -> FolderDigest:
    """Recompute the folder's digest and compare it with the manifest's.

    Raises:
        DigestMismatch: the files differ from the pinned ones.
        InputError: the manifest has no digest yet.
    """
    if not manifest.content.digest:
        raise InputError(
            f"{manifest.ref} has no digest yet; verify a copy first with "
            f"`wsssbed fetch {manifest.name} --path DIR`",
            manifest.path,
        )
    found = digest_maps(folder, manifest.content.format, progress)
    if found.digest != manifest.content.digest or found.files != manifest.content.files:
        raise DigestMismatch(
            f"digest mismatch for {manifest.ref}: the manifest pins "
            f"{manifest.content.files:,} files with {manifest.content.digest}, the folder has "
            f"{found.files:,} files with {found.digest}; the maps changed (re-submit them as a "
            "new version) or this is another copy",
            folder,
        )
    return found


def _use(manifest: Manifest, verify: bool, progress: Progress | None) -> UsedManifest:
    folder = local_folder(manifest)
    if folder is None or not folder.is_dir():
        raise InputError(
            f"no local copy of {manifest.ref}; run `wsssbed fetch {manifest.name}` "
            "(or `--path DIR` to register a copy you have)",
            manifest.path,
        )
    if verify:
        check_digest(manifest, folder, progress)
    return UsedManifest(manifest, folder, verify)


def resolve_method(
    name: str,
    saliency: str | None = None,
    verify: bool = True,
    progress: Progress | None = None,
) -> ResolvedMethod:
    """Resolve a pipeline or activation manifest (and a saliency manifest) to verified folders.

    Args:
        name: a pipeline manifest (its sources, generator and grid) or an activation
            manifest (the generator and grid then come from the caller).
        saliency: a saliency manifest to pair with an activation manifest, or to replace
            a pipeline's.
        verify: recompute digests (False: the run is recorded as unverified).
    """
    top = resolve(name, ("pipeline", "activation"))
    pipeline = top.pipeline if top.kind == "pipeline" else None
    activation = resolve(pipeline.activation, "activation") if pipeline else top
    saliency_name = saliency or (pipeline.saliency if pipeline and pipeline.with_saliency else "")
    saliency_manifest = resolve(saliency_name, "saliency") if saliency_name else None
    for used in (activation, saliency_manifest):
        if used is not None and used.dataset != top.dataset:
            raise InputError(
                f"{used.ref} is for {used.dataset}, but {top.ref} is for {top.dataset}", top.path
            )
    return ResolvedMethod(
        name=top.name,
        dataset=top.dataset,
        split=activation.split,
        pipeline=pipeline,
        activation=_use(activation, verify, progress),
        saliency=None if saliency_manifest is None else _use(saliency_manifest, verify, progress),
        pipeline_manifest=top if pipeline else None,
    )
