"""`wsssbed submit`: validate a stranger's activation maps, pin them, sweep them.

Order of work, so that a refused submission leaves nothing behind:

1. the name and version are checked (a new name, or a version above the existing one);
2. an archive is extracted safely (`archive.py`) into `$WSSSBED_HOME/maps/<name>/<version>`
   (a folder `submit` claims: `wsssbed.io.ownership`);
3. the folder is digested (plain files only);
4. the default sweep reads every map through the engine's validation: the exact image
   set of the split (nothing missing, nothing extra), sizes equal to the ground truth,
   finite values in [0, 1], keys within each image's labels; a split given as an id-list
   file is recorded as a subset of the split holding its images (`Subset`);
5. only then are the manifest and the run written.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from wsssbed.activation import digest_maps, list_activation_ids
from wsssbed.catalogue.lookup import manifest_path, resolve, write_manifest
from wsssbed.catalogue.manifest import (
    ChangelogEntry,
    Content,
    Manifest,
    Source,
    Subset,
    check_name,
    validate,
    version_key,
)
from wsssbed.catalogue.methods import ResolvedMethod, UsedManifest
from wsssbed.datasets.fingerprint import split_digest
from wsssbed.datasets.local import LocalDataset
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
        subset = _subset(job.dataset, folder, job.activation_format)
        split = job.dataset.split if subset is None else _split_holding(job.dataset)
        spec = job.dataset.spec
        today = date.today().isoformat()
        log = [] if previous is None else list(previous.changelog)
        manifest = Manifest(
            name=submission.name,
            version=submission.version,
            kind="activation",
            dataset=spec.name,
            split=split,
            description=submission.description,
            license=submission.license,
            paper=submission.paper,
            code=submission.code,
            source=Source(path=str(folder)),
            content=Content(job.activation_format, found.digest, found.files, "submission"),
            subset=subset,
            changelog=[*log, ChangelogEntry(submission.version, today, submission.note)],
        )
        validate(manifest)  # before `path` is set: an error names no file that is not there
        manifest.path = manifest_path(manifest)
        used = ResolvedMethod(
            submission.name,
            spec.name,
            split,
            None,
            UsedManifest(manifest, folder, True),
        )
        summary = compute_run(job, stage="activation", progress=progress, extra=used.provenance())
        summary.save(out)
    except BaseException as error:
        if extracted is None:
            raise
        extracted.clear()
        remove_empty_parents(extracted.root, home())
        where = error.path if isinstance(error, InputError) else None
        if where is not None and where.is_relative_to(extracted.root):
            # the extracted copy is gone: name the archive and its member, as `prepare` does
            member = where.relative_to(extracted.root).as_posix()
            raise InputError(f"{member}: {error.problem}", maps) from None
        raise
    write_manifest(manifest)  # last: a failure above leaves nothing that blocks a retry
    return manifest, summary


def _subset(dataset: LocalDataset, folder: Path, fmt: str) -> Subset | None:
    """The subset an id-list split names (None for a split of the dataset); its maps must
    be exactly those images' (the sweep allows extra maps for id files, a submission not).
    """
    if dataset.id_file is None:
        return None
    extra = sorted(set(list_activation_ids(folder, fmt)) - set(dataset.ids))
    if extra:
        raise InputError(
            f"{len(extra):,} maps are for images {dataset.id_file.name} does not list (first: "
            f"{', '.join(extra[:5])}); a submission holds the maps of its images exactly",
            folder,
        )
    return Subset(dataset.id_file.name, split_digest(dataset.ids), len(dataset.ids))


def _split_holding(dataset: LocalDataset) -> str:
    """The smallest split of the dataset (under the same data root) that lists every
    image of an id-list file: what its subset is a subset of.

    Raises:
        InputError: no split lists them all.
    """
    wanted = set(dataset.ids)
    holding = []
    for name in dataset.spec.splits:
        try:
            ids = LocalDataset(dataset.spec, dataset.data_root, name).ids
        except InputError:  # a split this copy does not have
            continue
        if wanted <= set(ids):
            holding.append((len(ids), name))
    if not holding:
        raise InputError(
            f"no split of {dataset.spec.name} below {dataset.data_root} lists every image of "
            "this id file; a submission covers a split or a subset of one",
            dataset.id_file,
        )
    return min(holding)[1]
