"""Reading TOML and JSON files (specs, manifests, records, reported numbers, box prompts,
model configs): one place for the `tomllib`/`tomli` choice and for errors that name the
file."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from wsssbed.errors import InputError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def parse_toml(text: str, where: Path | str, what: str) -> dict:
    """Parse TOML text; a syntax error names `where` and says it is not a valid `what`."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"not a valid TOML {what}: {exc}", where) from exc


def read_toml(path: Path, what: str) -> dict:
    """Read and parse a TOML file (`what` names it in errors: "dataset spec", ...)."""
    return parse_toml(_read_text(path, what), path, what)


def read_json(path: Path, what: str) -> object:
    """Read and parse a JSON file (`what` names it in errors: "box file", ...)."""
    try:
        return json.loads(_read_text(path, what))
    except json.JSONDecodeError as exc:
        raise InputError(f"not a valid JSON {what}: {exc}", path) from exc


def _read_text(path: Path, what: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise InputError(f"{what} not found", path) from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read the {what}: {exc}", path) from exc
