"""`wsssbed submit`: validate a stranger's activation maps, pin them, sweep them.

Order of work, so that a refused submission leaves nothing behind:

1. the name and version are checked (a new name, or a version above the existing one);
2. an archive is extracted safely (`archive.py`) into `$WSSSBED_HOME/maps/<name>/<version>`
   (a folder `submit` claims: `wsssbed.io.ownership`);
3. the folder is digested (plain files only);
4. the default sweep reads every map through the engine's validation: the exact image
   set of the split (nothing missing, nothing extra), sizes equal to the ground truth,
   finite values in [0, 1], keys within each image's labels;
5. only then are the manifest and the run written.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from wsssbed.activation import digest_maps
from wsssbed.catalogue.lookup import manifest_path, resolve, write_manifest
from wsssbed.catalogue.manifest import (
    ChangelogEntry,
    Content,
    Manifest,
    Source,
    check_name,
    validate,
    version_key,
)
from wsssbed.catalogue.methods import ResolvedMethod, UsedManifest
from wsssbed.errors import InputError
from wsssbed.eval.job import SweepJob
from wsssbed.io.archive import extract, single_folder
from wsssbed.io.home import home
from wsssbed.io.outputs import remove_empty_parents
from wsssbed.io.ownership import OutputFolder
from wsssbed.results.runs import SweepResult, compute_run
from wsssbed.results.store import results_folder

Progress = Callable[[int, int], None]


@dataclass
class Submission:
    """What a submitter gives besides the maps."""

    name: str
    fmt: str = "auto"
    version: str = "1.0.0"
    paper: str = ""
    code: str = ""
    license: str = ""
    description: str = ""
    note: str = "submitted"


def _previous(name: str, version: str) -> Manifest | None:
    try:
        previous = resolve(name)
    except InputError as exc:
        if "no manifest named" in exc.problem:
            return None
        raise
    if version_key(version) <= version_key(previous.version):
        raise InputError(
            f"{name} exists at version {previous.version}; submit with a higher --version "
            "(a change of maps moves numbers, so it is a new version)",
            previous.path,
        )
    if previous.kind != "activation":
        raise InputError(f"{name} is a {previous.kind} manifest, not activation maps")
    return previous


def submit(
    maps: Path,
    job: SweepJob,
    submission: Submission,
    out: Path,
    progress: Progress | None = None,
) -> tuple[Manifest, SweepResult]:
    """Validate, digest, pin and sweep a folder (or archive) of activation maps.

    Args:
        maps: folder of maps, or a .zip / .tar(.gz) holding them.
        job: the default sweep over the submission's split; its `activation` is set here
            and extra maps are never allowed.
        out: results folder.
    """
    check_name(submission.name)
    results_folder(out)  # before any extraction or sweeping
    previous = _previous(submission.name, submission.version)
    if not maps.exists():
        raise InputError("no such file or folder", maps)
    extracted: OutputFolder | None = None
    if maps.is_file():
        # this version is not registered (`_previous` checked): maps left by a refused or
        # killed earlier try carry submit's marker and are replaced; other files refuse
        where = home() / "maps" / submission.name / submission.version
        extracted = OutputFolder.claim(where, "submit", "maps folder", remedy="move it away")
    try:
        if extracted is not None:
            with extracted.staging() as staged:
                extracted.commit(extract(maps, staged / "maps"))
            folder = single_folder(extracted.root)
        else:
            folder = maps.resolve()
        job = dataclasses.replace(  # `auto` becomes the format the files hold
            job, activation=folder, activation_format=submission.fmt, allow_extra=False
        )
        found = digest_maps(folder, job.activation_format)
        spec = job.dataset.spec
        today = date.today().isoformat()
        log = [] if previous is None else list(previous.changelog)
        manifest = Manifest(
            name=submission.name,
            version=submission.version,
            kind="activation",
            dataset=spec.name,
            split=job.dataset.split,
            description=submission.description,
            license=submission.license,
            paper=submission.paper,
            code=submission.code,
            source=Source(path=str(folder)),
            content=Content(job.activation_format, found.digest, found.files),
            changelog=[*log, ChangelogEntry(submission.version, today, submission.note)],
        )
        manifest.path = manifest_path(manifest)
        validate(manifest)
        used = ResolvedMethod(
            submission.name,
            spec.name,
            job.dataset.split,
            None,
            UsedManifest(manifest, folder, True),
        )
        summary = compute_run(job, stage="activation", progress=progress, extra=used.provenance())
        summary.save(out)
    except BaseException:
        if extracted is not None:
            extracted.clear()
            remove_empty_parents(extracted.root, home())
        raise
    write_manifest(manifest)  # last: a failure above leaves nothing that blocks a retry
    return manifest, summary
