"""Reading TOML (specs, manifests, records, reported numbers): one place for the
`tomllib`/`tomli` choice and for errors that name the file."""

from __future__ import annotations

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
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise InputError(f"{what} not found", path) from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read the {what}: {exc}", path) from exc
    return parse_toml(text, path, what)
