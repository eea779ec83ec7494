"""Threshold grids: parse `start:stop:step` (stop included) or comma lists."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from wsssbed.errors import InputError


def parse_grid(text: str, *, name: str = "grid") -> list[float]:
    """Parse a grid specification into a list of floats, in the order given.

    `start:stop:step` includes `stop` when it lies on the grid (`0:0.6:0.01` has 61
    points); values are computed in decimal so 0.07 is 0.07, not 0.07000000000000001.
    A comma list (`0.1,0.25,0.3`) is taken as is. Duplicates are refused.
    """
    text = text.strip()
    if not text:
        raise InputError(f"{name} is empty")
    try:
        if ":" in text:
            parts = [Decimal(p) for p in text.split(":")]
            if len(parts) != 3:
                raise InputError(f"{name} {text!r}: expected start:stop:step")
            start, stop, step = parts
            if step <= 0 or stop < start:
                raise InputError(f"{name} {text!r}: need step > 0 and stop >= start")
            count = int((stop - start) / step) + 1
            if count > 100_000:
                raise InputError(f"{name} {text!r}: {count} points is more than 100,000")
            values = [float(start + i * step) for i in range(count)]
        else:
            values = [float(Decimal(p)) for p in text.split(",") if p.strip()]
    except InvalidOperation as exc:
        raise InputError(f"{name} {text!r}: not a number list or start:stop:step") from exc
    if len(set(values)) != len(values):
        raise InputError(f"{name} {text!r}: contains a value twice")
    if any(v != v for v in values):
        raise InputError(f"{name} {text!r}: contains NaN")
    return values
