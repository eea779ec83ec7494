"""Reading TOML and JSON files (specs, manifests, records, reported numbers, box prompts,
model configs): one place for the `tomllib`/`tomli` choice, for errors that name the
file, and for checking a parsed table against a schema (`from_table`)."""

from __future__ import annotations

import dataclasses
import functools
import json
import sys
import types
import typing
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
    """Read and parse a JSON file (`what` names it in errors: "box file", ...).

    Raises:
        InputError: unreadable, not JSON, nested deeper than Python's recursion limit, or
            an integer longer than Python converts (4,300 digits).
    """
    text = _read_text(path, what)
    try:
        return json.loads(text)
    except RecursionError:
        raise InputError(f"not a valid JSON {what}: nested too deep", path) from None
    except ValueError as exc:  # JSONDecodeError, and integers beyond int's digit limit
        raise InputError(f"not a valid JSON {what}: {exc}", path) from exc


def _read_text(path: Path, what: str) -> str:
    from wsssbed.io.imageio import regular_file

    if path.exists():
        regular_file(path)  # a pipe named like a spec would block the read forever
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise InputError(f"{what} not found", path) from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read the {what}: {exc}", path) from exc


T = typing.TypeVar("T")


def from_table(
    cls: type[T], data: object, where: Path | str, section: str, *, extra: bool = False
) -> T:
    """Build dataclass `cls` from a parsed TOML table, checked against its annotations.

    One mechanism for every file wsssbed reads a schema from (manifests, dataset specs,
    reported numbers, COCO annotations, box prompts): the table must be a table, name
    only known fields (with `extra`, other fields are dropped: formats that others
    extend), give every field without a default, and give each a value of the
    annotated type (`int` is not `bool`; `float` takes ints; `list[...]`,
    `tuple[..., ...]`, `dict[str, ...]` and `X | None` are checked element by element).
    Nested dataclass fields stay tables, built by the caller.

    Raises:
        InputError: naming `where`, the section and the field.
    """
    if not isinstance(data, dict):
        raise InputError(f"[{section}] must be a table, got {_kind(data)}", where)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields), key=str)
    if unknown and not extra:
        raise InputError(
            f"[{section}] has unknown fields {unknown}; known: {sorted(fields)}", where
        )
    if unknown:
        data = {k: v for k, v in data.items() if k in fields}
    hints = _hints(cls)
    for name, spec in fields.items():
        required = (
            spec.default is dataclasses.MISSING and spec.default_factory is dataclasses.MISSING
        )
        if name not in data:
            if required:
                raise InputError(f"[{section}] required field `{name}` is missing", where)
            continue
        if not _conforms(data[name], hints[name]):
            raise InputError(
                f"[{section}] `{name}` must be {_describe(hints[name])}, got {_kind(data[name])} "
                f"{data[name]!r:.60}",
                where,
            )
    return cls(**data)


@functools.cache
def _hints(cls: type) -> dict[str, object]:
    return typing.get_type_hints(cls)


def _kind(value: object) -> str:
    return {dict: "a table", list: "an array", str: "a string", bool: "a boolean",
            int: "an integer", float: "a float"}.get(type(value), type(value).__name__)  # fmt: skip


def _conforms(value: object, hint: object) -> bool:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_conforms(value, a) for a in args)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if origin in (list, tuple):
        return isinstance(value, list) and all(_conforms(v, args[0]) for v in value)
    if origin is dict:
        return isinstance(value, dict) and all(
            isinstance(k, str) and _conforms(v, args[1]) for k, v in value.items()
        )
    if dataclasses.is_dataclass(hint) or hint is dict:
        return isinstance(value, dict)
    return hint is typing.Any or hint is object


_NAMES = {type(None): ("absent", "absent"), bool: ("a boolean", "booleans"),
          int: ("an integer", "integers"), float: ("a number", "numbers"),
          str: ("a string", "strings"), dict: ("a table", "tables")}  # fmt: skip


def _describe(hint: object, plural: bool = False) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a, plural) for a in args)
    if origin in (list, tuple):
        return "arrays" if plural else f"an array of {_describe(args[0], True)}"
    if origin is dict:
        return "tables" if plural else f"a table of {_describe(args[1], True)}"
    if dataclasses.is_dataclass(hint):
        return "tables" if plural else "a table"
    names = _NAMES.get(hint)  # type: ignore[call-overload]
    return str(hint) if names is None else names[plural]
