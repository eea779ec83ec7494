"""Threshold grids: parse `start:stop:step` (stop included) or comma lists, or check a
sequence of numbers; the one place a grid argument (CLI option, API keyword, manifest
field) is checked for type and finiteness."""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from decimal import Decimal, InvalidOperation

from wsssbed.errors import InputError

#: Points of one grid axis, and of a whole grid (the product of its axes): a sweep keeps
#: a histogram per point and stores a row per point and class, so a grid is a size that
#: a stranger's manifest or results folder could otherwise inflate.
MAX_GRID_POINTS = 100_000


def parse_grid(text: str, *, name: str = "grid") -> list[float]:
    """Parse a grid specification into a list of floats, in the order given.

    `start:stop:step` includes `stop` when it lies on the grid (`0:0.6:0.01` has 61
    points); values are computed in decimal so 0.07 is 0.07, not 0.07000000000000001.
    A comma list (`0.1,0.25,0.3`) is taken as is. Duplicates, NaN and infinities are
    refused.
    """
    text = text.strip()
    if not text:
        raise InputError(f"{name} is empty")
    try:
        parts = [Decimal(p) for p in text.replace(":", ",").split(",") if p.strip()]
        if not all(p.is_finite() for p in parts):
            raise InputError(f"{name} {text!r}: contains a value that is not finite")
        if ":" in text:
            parts = [Decimal(p) for p in text.split(":")]
            if len(parts) != 3:
                raise InputError(f"{name} {text!r}: expected start:stop:step")
            start, stop, step = parts
            if step <= 0 or stop < start:
                raise InputError(f"{name} {text!r}: need step > 0 and stop >= start")
            count = int((stop - start) / step) + 1
            if count > MAX_GRID_POINTS:
                raise InputError(f"{name} {text!r}: {count:,} points is more than "
                                 f"{MAX_GRID_POINTS:,}")  # fmt: skip
            values = [float(start + i * step) for i in range(count)]
        else:
            values = [float(Decimal(p)) for p in text.split(",") if p.strip()]
    except InvalidOperation as exc:
        raise InputError(f"{name} {text!r}: not a number list or start:stop:step") from exc
    if len(values) > MAX_GRID_POINTS:
        raise InputError(f"{name}: {len(values):,} points is more than {MAX_GRID_POINTS:,}")
    if len(set(values)) != len(values):
        raise InputError(f"{name} {text!r}: contains a value twice")
    if any(v != v or v in (float("inf"), float("-inf")) for v in values):
        raise InputError(f"{name} {text!r}: contains a value that is not finite")
    return values


def grid_values(value: str | Sequence[float], name: str) -> tuple[float, ...]:
    """A grid from `start:stop:step`, a comma list, or a sequence of real numbers.

    Raises:
        InputError: naming `name`: not a string or a sequence, an element that is not a
            real number (booleans are not), NaN or infinite, or a value given twice.
    """
    if isinstance(value, str):
        return tuple(parse_grid(value, name=name))
    if isinstance(value, bytes | dict | set | bool) or not hasattr(value, "__iter__"):
        raise InputError(f"`{name}` must be a string grid or a sequence of numbers, "
                         f"got {type(value).__name__}")  # fmt: skip
    values = list(value)
    for item in values:
        if isinstance(item, bool) or not isinstance(item, numbers.Real):
            raise InputError(f"`{name}` holds {item!r:.30} ({type(item).__name__}); grid "
                             "points are real numbers")  # fmt: skip
    try:
        text = ",".join(repr(float(v)) for v in values)
    except OverflowError:
        raise InputError(f"`{name}` holds a value that is not finite") from None
    return tuple(parse_grid(text, name=name)) if values else ()


def check_grid_size(grids: Sequence[tuple[str, Sequence[float]]]) -> None:
    """Refuse a grid whose axes multiply to more than `MAX_GRID_POINTS` points.

    Args:
        grids: (axis name, values) per axis.

    Raises:
        InputError: naming each axis and its size.
    """
    points = 1
    for _, values in grids:
        points *= len(values)
    if points > MAX_GRID_POINTS:
        sizes = " x ".join(f"{len(values):,} {axis}" for axis, values in grids)
        raise InputError(f"the grid has {points:,} points ({sizes}), more than "
                         f"{MAX_GRID_POINTS:,}; sweep a coarser grid")  # fmt: skip
