"""Manifests: TOML files that pin what users compare, validated on load.

Three kinds (`manifests/<dataset>/<kind>/<name>.toml`):

- `activation`: a method's activation maps for one dataset split (format, digest).
- `saliency`: a saliency source's maps for one dataset split (PNG, digest).
- `pipeline`: activation + optional saliency + generator + its grid and recommended point.

Every manifest has a semver `version` and a `changelog`; a change that moves numbers
(new files, another grid) must bump the version. `content.digest` is empty until a
copy has been verified once (`wsssbed fetch`), then pins the files (see `wsssbed.io.digest`);
`content.pinned_from` says where that first copy came from.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

import tomli_w

from wsssbed.errors import InputError
from wsssbed.io.configio import from_table, parse_toml, read_toml
from wsssbed.saliency.maps import SALIENCY_FORMAT

MANIFEST_SCHEMA = 1
KINDS = ("activation", "saliency", "pipeline")
NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]{0,99}$")
SEMVER_PATTERN = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)$")
DIGEST_PATTERN = re.compile(r"^sha256:[0-9a-f]{64}$")
SHA256_PATTERN = re.compile(r"^[0-9a-f]{64}$")
# where a pinned digest came from: the publisher's archive, a user's first local copy
# (checked against the split before pinning), or a submission (validated by its sweep)
PINNED_FROM = ("upstream-archive", "local-copy", "submission")


@dataclass
class Source:
    """Where the files come from.

    Attributes:
        url: download address of an archive (zip or tar), or "".
        path: local folder of the files: absolute, or relative to the registry root
            (it may not leave that root); "" when there is no local copy yet.
        sha256: the archive's sha256 (64 hex digits), recorded when a download is first
            verified and checked on every later download; "" until then.
        upstream_name: the name the publisher uses (e.g. WSSS-BED's `VOC2012_CAM`).
    """

    url: str = ""
    path: str = ""
    sha256: str = ""
    upstream_name: str = ""


@dataclass
class Content:
    """What the files are.

    Attributes:
        format: the map format (`irn-npy`, `png-per-class`, `npz`; `png` for saliency).
        digest: the folder digest (`wsssbed.io.digest`), "" until a copy is verified.
        files: the number of map files the digest covers (0 until then).
        pinned_from: where the copy that set the digest came from (`PINNED_FROM`); ""
            until pinned, and in manifests pinned before wsssbed recorded it.
    """

    format: str = ""
    digest: str = ""
    files: int = 0
    pinned_from: str = ""


@dataclass
class Subset:
    """Maps that cover part of a split: the images an id-list file named at submission.

    Attributes:
        name: the id file's name, for reading (`hard.txt`).
        split_digest: `wsssbed.datasets.fingerprint.split_digest` of its ids, which
            identifies the subset (a run on the same images has the same one).
        images: how many images it lists.
    """

    name: str
    split_digest: str
    images: int


@dataclass
class PipelineSpec:
    """A full pseudo-label pipeline: sources, generator, grid and recommended point.

    Grids use the CLI's syntax (`start:stop:step` with stop included, or a comma list);
    a grid left out is the default (`wsssbed.eval.axes`). `wsssbed.protocol.build_protocol`
    applies it below options given explicitly.
    """

    activation: str
    generator: str = "bg-threshold"
    saliency: str = ""
    with_saliency: bool = True
    ignore_label: bool = False
    thresholds: str | None = None
    sal_thresholds: str | None = None
    alphas: str | None = None
    recommended_threshold: float | None = None
    recommended_sal_threshold: float | None = None


@dataclass
class ChangelogEntry:
    """One released version: what changed and why."""

    version: str
    date: str
    note: str


@dataclass
class Manifest:
    """A validated manifest (see module docstring)."""

    name: str
    version: str
    kind: str
    dataset: str
    split: str
    description: str = ""
    license: str = ""
    paper: str = ""
    code: str = ""
    source: Source = field(default_factory=Source)
    content: Content = field(default_factory=Content)
    subset: Subset | None = None
    pipeline: PipelineSpec | None = None
    changelog: list[ChangelogEntry] = field(default_factory=list)
    path: Path | None = field(default=None, compare=False)

    @property
    def ref(self) -> str:
        """`name@version`, how results refer to it."""
        return f"{self.name}@{self.version}"

    def to_toml(self) -> str:
        """Serialise (the inverse of `parse_manifest`)."""
        data = {"schema": MANIFEST_SCHEMA, **asdict(self)}
        data.pop("path")
        if self.subset is None:
            data.pop("subset")
        if self.pipeline is None:
            data.pop("pipeline")
        else:
            data["pipeline"] = {k: v for k, v in data["pipeline"].items() if v is not None}
            data.pop("content")
            data.pop("source")
        return tomli_w.dumps(data)


def version_key(version: str) -> tuple[int, int, int]:
    """Semver as a comparable tuple."""
    match = SEMVER_PATTERN.match(version)
    if match is None:
        raise InputError(f"version {version!r} is not semver MAJOR.MINOR.PATCH")
    return tuple(int(part) for part in match.groups())  # type: ignore[return-value]


def check_name(name: str, where: Path | str | None = None) -> str:
    """Refuse names that are not safe file names (they become paths in the registry)."""
    if not NAME_PATTERN.match(name):
        raise InputError(
            f"manifest name {name!r} must be lower-case letters, digits, '.', '_' or '-' "
            "(at most 100, starting with a letter or digit)",
            where,
        )
    return name


def parse_manifest(text: str, where: Path) -> Manifest:
    """Parse and validate a manifest's TOML text; errors name `where` and the field."""
    return _manifest_from(parse_toml(text, where, "manifest"), where)


def _manifest_from(data: dict, where: Path) -> Manifest:
    """A validated manifest from parsed TOML (consumes `data`)."""
    schema = data.pop("schema", None)
    if schema != MANIFEST_SCHEMA:
        raise InputError(f"schema = {schema!r}; this wsssbed reads schema {MANIFEST_SCHEMA}", where)
    source = from_table(Source, data.pop("source", {}), where, "source")
    content = from_table(Content, data.pop("content", {}), where, "content")
    raw_subset = data.pop("subset", None)
    subset = None if raw_subset is None else from_table(Subset, raw_subset, where, "subset")
    raw_pipeline = data.pop("pipeline", None)
    pipeline = (
        None if raw_pipeline is None else from_table(PipelineSpec, raw_pipeline, where, "pipeline")
    )
    raw_log = data.pop("changelog", [])
    if not isinstance(raw_log, list):
        raise InputError("changelog must be an array of tables", where)
    changelog = [from_table(ChangelogEntry, e, where, "changelog") for e in raw_log]
    manifest = from_table(Manifest, data, where, "manifest")
    manifest.source, manifest.content, manifest.pipeline = source, content, pipeline
    manifest.subset = subset
    manifest.changelog, manifest.path = changelog, where
    validate(manifest)
    return manifest


def validate(manifest: Manifest) -> None:
    """Check every field's type and value; raise `InputError` naming the manifest file."""
    where = manifest.path or manifest.name
    check_name(manifest.name, where)
    try:
        version_key(manifest.version)
    except InputError as exc:
        raise InputError(exc.problem, where) from None
    if manifest.kind not in KINDS:
        raise InputError(f"kind {manifest.kind!r} is not one of {', '.join(KINDS)}", where)
    from wsssbed.datasets import get_dataset

    try:
        spec = get_dataset(manifest.dataset)
    except InputError as exc:
        raise InputError(exc.problem, where) from None
    if manifest.split not in spec.splits and not NAME_PATTERN.match(manifest.split):
        raise InputError(f"split {manifest.split!r} is not a valid split name", where)
    if not manifest.changelog:
        raise InputError("changelog is empty: every version needs an entry", where)
    if manifest.changelog[-1].version != manifest.version:
        raise InputError(
            f"the last changelog entry is for {manifest.changelog[-1].version}, "
            f"not for the manifest's version {manifest.version}",
            where,
        )
    for entry in manifest.changelog:
        version_key(entry.version)
    if manifest.kind == "pipeline":
        _validate_pipeline(manifest, where)
    else:
        _validate_maps(manifest, where)


def _validate_maps(manifest: Manifest, where: Path | str) -> None:
    if manifest.pipeline is not None:
        raise InputError(f"a {manifest.kind} manifest has no [pipeline] table", where)
    from wsssbed.activation import FORMATS

    allowed = FORMATS.names() if manifest.kind == "activation" else (SALIENCY_FORMAT,)
    if manifest.content.format not in allowed:
        raise InputError(
            f"content.format {manifest.content.format!r} is not one of {', '.join(allowed)}",
            where,
        )
    if manifest.content.digest and not DIGEST_PATTERN.match(manifest.content.digest):
        raise InputError("content.digest must be `sha256:` and 64 hex digits, or empty", where)
    if bool(manifest.content.digest) != (manifest.content.files > 0):
        raise InputError("content.digest and content.files are set together", where)
    pinned_from = manifest.content.pinned_from
    if pinned_from and (pinned_from not in PINNED_FROM or not manifest.content.digest):
        raise InputError(
            f"content.pinned_from {pinned_from!r} must be one of {', '.join(PINNED_FROM)}, "
            "and only with a digest",
            where,
        )
    subset = manifest.subset
    if subset is not None and (
        not DIGEST_PATTERN.match(subset.split_digest) or subset.images < 1 or not subset.name
    ):
        raise InputError(
            "subset needs a name, split_digest (`sha256:` and 64 hex digits) and images >= 1",
            where,
        )
    if not manifest.source.url and not manifest.source.path:
        raise InputError("source needs a url, a path, or both", where)
    if manifest.source.url and not manifest.source.url.startswith(("https://", "http://")):
        raise InputError("source.url must be an http(s) address", where)
    if manifest.source.sha256 and not SHA256_PATTERN.match(manifest.source.sha256):
        raise InputError("source.sha256 must be 64 lower-case hex digits, or empty", where)


def _validate_pipeline(manifest: Manifest, where: Path | str) -> None:
    from wsssbed.eval.rules import RULES
    from wsssbed.grids import parse_grid
    from wsssbed.registry import unknown_name

    spec = manifest.pipeline
    if spec is None:
        raise InputError("a pipeline manifest needs a [pipeline] table", where)
    if manifest.subset is not None:
        raise InputError("a pipeline manifest has no [subset] table (its sources do)", where)
    check_name(spec.activation, where)
    if spec.saliency:
        check_name(spec.saliency, where)
    if spec.generator not in RULES:
        raise InputError(unknown_name(spec.generator, RULES.names(), "pipeline.generator"), where)
    if spec.generator == "saliency-rule" and spec.with_saliency and not spec.saliency:
        raise InputError("a saliency-rule pipeline with saliency names pipeline.saliency", where)
    for name in ("thresholds", "sal_thresholds", "alphas"):
        if getattr(spec, name) is None:
            continue
        try:
            parse_grid(getattr(spec, name), name=f"pipeline.{name}")
        except InputError as exc:
            raise InputError(exc.problem, where) from None


def load_manifest(path: Path) -> Manifest:
    """Read and validate one manifest file."""
    manifest = _manifest_from(read_toml(path, "manifest"), path)
    if path.stem != manifest.name:
        raise InputError(f"file is named {path.name} but holds manifest {manifest.name!r}", path)
    return manifest
