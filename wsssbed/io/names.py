"""Names that come from data, and the paths built from them.

Image ids (split lists, label lists, COCO `file_name`s, boxes JSON keys), run ids and
image ids of results tables become file names: `<root>/<id>.png`, `runs/<run_id>.html`.
`id_problem` is the one rule for all of them, applied where a list or table is read:

- text, not empty, at most `MAX_ID_BYTES` bytes of UTF-8 (a file name holds 255, and
  suffixes such as `_20.png` need room);
- no `/` or `\\` (no separators: an id names one file, never a folder);
- no leading `.` (no `.`, `..` or hidden file; an inner dot as in `a.b` is harmless);
- no control character (U+0000-U+001F, U+007F-U+009F: NUL ends a C path, a newline
  breaks the lists wsssbed writes) and no lone surrogate (not text a file system takes).

An id that passes is a single, visible path component, so `<root>/<id><suffix>` lies in
`<root>`. `wsssbed.io.outputs.inside` checks that anyway for every written path (after
resolving links), so a rule missed at one reader cannot become a write elsewhere.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

from wsssbed.errors import InputError
from wsssbed.io.imageio import regular_file

MAX_ID_BYTES = 200
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def id_problem(value: object) -> str | None:
    """Why `value` cannot name a file (see the module docstring), or None when it can."""
    if not isinstance(value, str):
        return f"is not text but {type(value).__name__}"
    if not value:
        return "is empty"
    if "/" in value or "\\" in value:
        return "holds a path separator"
    if value.startswith("."):
        return "starts with a dot (`.`, `..` or a hidden file)"
    if CONTROL.search(value):
        return "holds a control character"
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:
        return "is not valid Unicode text"
    if size > MAX_ID_BYTES:
        return f"is {size} bytes long, above the {MAX_ID_BYTES}-byte limit of a file name"
    return None


def check_id(value: object, what: str = "image id", source: Path | None = None,
             where: str = "") -> str:  # fmt: skip
    """`value` when it can name a file, else an `InputError` naming `source` and the id.

    Args:
        what: what the value is, for the message (`image id`, `run_id`).
        source: the list or table it was read from.
        where: a prefix locating it in `source` (`line 3: `).
    """
    problem = id_problem(value)
    if problem is not None:
        shown = repr(value)  # a long one shows its start and its end
        shown = shown if len(shown) <= 160 else f"{shown[:100]}...{shown[-40:]}"
        raise InputError(f"{where}{what} {shown} {problem}; ids become file names", source)
    return value  # type: ignore[return-value]


def check_ids(values: Iterable[object], what: str, source: Path | None = None) -> None:
    """`check_id` on every value (a table's column: each distinct value once)."""
    for value in dict.fromkeys(values):
        check_id(value, what, source)


def read_lines(path: Path, what: str) -> list[tuple[int, list[str]]]:
    """The non-empty lines of a text list as (line number, whitespace-split tokens).

    UTF-8 with or without a byte-order mark (Windows editors write one), with LF or CRLF
    endings.

    Raises:
        InputError: not a regular file, or a line that is not UTF-8 (by line number).
    """
    regular_file(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read the {what}: {exc.strerror}", path) from exc
    raw = raw.removeprefix(b"\xef\xbb\xbf")
    lines = []
    for number, line in enumerate(raw.splitlines(), start=1):
        try:
            tokens = line.decode("utf-8").split()
        except UnicodeDecodeError as exc:
            raise InputError(f"line {number}: not UTF-8 text ({exc.reason})", path) from exc
        if tokens:
            lines.append((number, tokens))
    return lines
