"""`--activation-format auto`: the format a folder of maps holds, recognised from its files.

File names set the formats apart (`<id>.npz`, `<id>_<class>.png`, `<id>.npy`); a folder
whose map files have more than one kind of name is refused. For `.npy` files the layout
(IRN, SEAM, PuzzleCAM, CLIP-ES) is in the pickled dict's keys, which are read from the
pickle's structure without its arrays' data (`safe_pickle.read_structure`: a few hundred
bytes whatever the file's size), in two files: the first and the last by name. They must
agree.

Two files are enough because they are not the only check: every file's layout is checked
again when the sweep reads it (`PickledNpy.read_raw`, at no cost: its dict is in memory
then), so a folder that mixes layouts is refused at its first file of another layout,
with both files named, and nothing is read twice. Looking at the first and the last file
refuses the common mix (maps of two runs in one folder) before any image is scored.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from wsssbed.activation.base import FORMATS, map_format
from wsssbed.activation.formats.pickled import layout_of
from wsssbed.errors import InputError
from wsssbed.io.safe_pickle import read_structure

AUTO = "auto"


@dataclass(frozen=True)
class Detection:
    """A recognised format.

    Attributes:
        name: the registered format.
        evidence: what it was recognised from (a file and what it holds), for messages.
    """

    name: str
    evidence: str


def detect_format(folder: Path) -> Detection:
    """The map format `folder` holds (see the module docstring).

    Raises:
        InputError: no map files, map files of several formats, a `.npy` layout wsssbed
            does not read, or first and last files in different layouts.
    """
    if not folder.is_dir():
        raise InputError("activation folder not found", folder)
    formats = [map_format(name) for name in FORMATS.names()]
    kinds: dict[tuple[str, ...], list[str]] = {}
    for entry in folder.iterdir():
        claims = tuple(f.name for f in formats if f.is_map_file(entry.name))
        if claims:
            kinds.setdefault(claims, []).append(entry.name)
    if not kinds:
        patterns = sorted({f.pattern for f in formats})
        raise InputError(f"no activation maps here (looked for {', '.join(patterns)})", folder)
    if len(kinds) > 1:
        shown = "; ".join(f"{min(names)} ({'/'.join(claims)})" for claims, names in kinds.items())
        raise InputError(f"holds maps of more than one format: {shown}; keep one", folder)
    [(claims, names)] = kinds.items()
    if len(claims) == 1:
        return Detection(claims[0], f"{len(names):,} files like {min(names)}")
    ends = sorted({min(names), max(names)})
    layouts = [layout_of(read_structure(folder / name), folder / name) for name in ends]
    if len(set(layouts)) > 1:
        raise InputError(
            f"{ends[0]} holds the {layouts[0].name} layout and {ends[1]} the "
            f"{layouts[1].name} layout; a folder must hold one layout",
            folder,
        )
    return Detection(layouts[0].name, f"{ends[0]} holds {layouts[0].description}")


def resolve_format(folder: Path | None, fmt: str) -> str:
    """`fmt`, or with `auto` the format `folder` holds (`auto` when there is no folder)."""
    if fmt != AUTO or folder is None:
        return fmt
    return detect_format(folder).name
