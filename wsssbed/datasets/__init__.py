"""Dataset specs: the five built-in datasets and user-supplied spec files."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from wsssbed.datasets.spec import (
    DatasetSpec,
    GroundTruthSource,
    load_spec,
    spec_from_table,
    voc_palette,
)
from wsssbed.errors import InputError
from wsssbed.io.configio import parse_toml

SPEC_DIR = Path(__file__).with_name("specs")
BUILTIN = ("voc2012", "coco2014", "context", "context59", "ade20k", "cocostuff")


@cache
def _builtin(name: str) -> DatasetSpec:
    return load_spec(SPEC_DIR / f"{name}.toml")


def get_dataset(name_or_path: str) -> DatasetSpec:
    """A built-in spec by name, or a user's spec from a `.toml` path."""
    if name_or_path in BUILTIN:
        return _builtin(name_or_path)
    if name_or_path.endswith(".toml"):
        return load_spec(name_or_path)
    raise InputError(
        f"unknown dataset {name_or_path!r}; built-in: {', '.join(BUILTIN)} "
        "(or give the path of a spec .toml file)"
    )


def recorded_spec(spec: DatasetSpec) -> str | None:
    """The TOML text a run records for a user's spec (None for a built-in one)."""
    if not spec.source or Path(spec.source).parent == SPEC_DIR:
        return None
    return Path(spec.source).read_text(encoding="utf-8")


def spec_of_run(run) -> DatasetSpec:
    """The spec a stored run was scored with: built-in by name, else the text it recorded.

    Raises:
        InputError: a user's spec that the run did not record (stored before schema 4).
    """
    text = run.get("dataset_spec")
    if isinstance(text, str):
        where = f"the dataset spec recorded by run {run.run_id}"
        return spec_from_table(parse_toml(text, where, "dataset spec"), where)
    if run.dataset in BUILTIN:
        return _builtin(run.dataset)
    raise InputError(
        f"run {run.run_id} used a dataset spec {run.dataset!r} that it did not record "
        "(stored before results schema 4); re-run it to report it"
    )


def dataset_title(run) -> str:
    """A stored run's dataset as people name it (`PASCAL VOC 2012`); its `dataset` name
    when the spec is unknown (a user's spec the run did not record)."""
    try:
        return spec_of_run(run).title
    except InputError:
        return str(run.dataset)


def builtin_datasets() -> list[DatasetSpec]:
    """All built-in specs, in a stable order."""
    return [_builtin(name) for name in BUILTIN]


__all__ = [
    "BUILTIN",
    "DatasetSpec",
    "GroundTruthSource",
    "builtin_datasets",
    "dataset_title",
    "get_dataset",
    "load_spec",
    "recorded_spec",
    "spec_of_run",
    "voc_palette",
]
