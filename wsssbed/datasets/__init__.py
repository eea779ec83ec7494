"""Dataset specs: the five built-in datasets and user-supplied spec files."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from wsssbed.datasets.spec import DatasetSpec, GroundTruthSource, load_spec, voc_palette
from wsssbed.errors import InputError

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


def builtin_datasets() -> list[DatasetSpec]:
    """All built-in specs, in a stable order."""
    return [_builtin(name) for name in BUILTIN]


__all__ = [
    "BUILTIN",
    "DatasetSpec",
    "GroundTruthSource",
    "builtin_datasets",
    "get_dataset",
    "load_spec",
    "voc_palette",
]
