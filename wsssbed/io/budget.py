"""What one image's activation maps may hold, checked before any of their data is read.

A map file comes from a stranger, and its header can claim any shape. Readers check
the declared shapes (npy headers, pickled array states, zip member sizes, PNG headers)
against a `MapBudget` before they allocate: at most one map per foreground class, each
the ground truth's size, and a file no larger than those maps stored as float64 (plus
headers). The largest legitimate file is therefore also the most any crafted one can
make a reader allocate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from wsssbed.errors import InputError
from wsssbed.io.imageio import MAX_PIXELS

HEADER_SLACK = 1 << 16  # npy/zip/pickle headers and the keys array


@dataclass(frozen=True)
class MapBudget:
    """Limits for one image's maps.

    Attributes:
        planes: most maps one image may have (the dataset's foreground classes).
        shape: (H, W) every map must have (the ground truth's), or None when unknown;
            then any plane of at most `MAX_PIXELS` pixels is allowed.
    """

    planes: int
    shape: tuple[int, int] | None = None

    @property
    def plane_pixels(self) -> int:
        return MAX_PIXELS if self.shape is None else self.shape[0] * self.shape[1]

    @property
    def max_bytes(self) -> int:
        """Bytes of the largest legitimate maps: every plane as float64."""
        return self.planes * self.plane_pixels * 8

    def _describe(self) -> str:
        size = "any size" if self.shape is None else f"{self.shape[0]}x{self.shape[1]}"
        return f"at most {self.planes} maps of {size} (one per foreground class)"

    def check_file(self, size: int, where: Path) -> None:
        """Refuse a file larger than the largest legitimate maps (before reading it)."""
        limit = self.max_bytes + HEADER_SLACK
        if size > limit:
            raise InputError(
                f"{size:,} bytes, above this image's budget of {limit:,} bytes "
                f"({self._describe()}, float64)",
                where,
            )

    def check_declared(
        self, shape: tuple[int, ...], itemsize: int, where: Path, what: str = ""
    ) -> None:
        """Refuse an array header whose shape cannot be a key list or this image's maps.

        Args:
            what: the array's name in the file (`` `high_res` ``), put in front of messages.
        """
        prefix = f"{what}: " if what else ""
        ok = len(shape) <= 1 and math.prod(shape) <= max(self.planes, 1)
        if len(shape) == 3:
            planes, height, width = shape
            if self.shape and planes <= self.planes and (height, width) != self.shape:
                raise InputError(
                    f"{prefix}map size {height}x{width} differs from the ground truth's "
                    f"{self.shape[0]}x{self.shape[1]} (H x W; from the file's header)",
                    where,
                )
            fits = (height, width) == self.shape if self.shape else height * width <= MAX_PIXELS
            ok = planes <= self.planes and fits
        if not ok or math.prod(shape) * itemsize > self.max_bytes + HEADER_SLACK:
            raise InputError(
                f"{prefix}declares an array of shape {tuple(shape)}; this image allows "
                f"{self._describe()}",
                where,
            )

    def check_part(
        self, shape: tuple[int, ...], itemsize: int, where: Path, what: str = ""
    ) -> None:
        """Refuse an array that cannot be any part of this image's maps file.

        Looser than `check_declared`, for everything a pickled file holds besides the maps
        it is read through: at most 3 axes; a 1-D array of at most `planes + 1` entries
        (keys, PuzzleCAM's with a background 0 in front); at most `planes` planes, each no
        larger than the ground truth's (a low-resolution `cam` is smaller). So whatever of
        it is later copied costs at most the largest legitimate maps.
        """
        prefix = f"{what}: " if what else ""
        if 2 <= len(shape) <= 3 and self.shape:
            height, width = shape[-2:]
            if height > self.shape[0] or width > self.shape[1]:
                raise InputError(
                    f"{prefix}map size {height}x{width} differs from the ground truth's "
                    f"{self.shape[0]}x{self.shape[1]} (H x W) and is larger than any map of "
                    "this image",
                    where,
                )
        if len(shape) == 1:
            ok = shape[0] <= self.planes + 1
        else:
            pixels, planes = math.prod(shape[-2:]), math.prod(shape[:-2])
            ok = len(shape) <= 3 and pixels <= MAX_PIXELS and planes <= self.planes
        ok = ok and math.prod(shape) * itemsize <= self.max_bytes + HEADER_SLACK
        if not ok:
            raise InputError(
                f"{prefix}holds an array of shape {tuple(shape)}; this image allows "
                f"{self._describe()}",
                where,
            )
