"""Formats whose files are `np.save(path, dict)` pickles, as WSSS codebases write them.

One reader serves them all (`wsssbed.io.safe_pickle.load_npy`: numpy arrays as views of
the file's bytes, torch tensors rebuilt without running code); each layout is a subclass
saying which dict it is (`holds`) and which of its arrays are the keys and the maps
(`select`). A low-resolution `cam` stored next to full-size maps is never copied: only
the arrays `select` takes are checked exactly against the image (`MapBudget.
check_declared`, the message naming the key) and, for a tensor, copied.

Every file read is checked to hold its format's layout, so a folder mixing layouts is
refused at its first odd file, naming it and the file the folder's layout comes from.
"""

from __future__ import annotations

import functools
import io
from pathlib import Path
from typing import Any

import numpy as np

from wsssbed.activation.base import FORMATS
from wsssbed.activation.formats.single_file import SingleFileFormat
from wsssbed.errors import InputError
from wsssbed.io.budget import MapBudget
from wsssbed.io.imageio import write_atomic
from wsssbed.io.safe_pickle import TensorRef, load_npy, read_structure


class PickledNpy(SingleFileFormat):
    """`<id>.npy` holding a pickled dict.

    Attributes:
        map_keys: the dict keys of the maps, in the order they are preferred (a layout
            with `keys` and one of these; SEAM's has none).
        description: what the dict holds, for messages.
    """

    suffix = ".npy"
    map_keys: tuple[str, ...] = ()
    description = ""

    @classmethod
    def match(cls, content: Any) -> int | None:
        """How well a file's content (or its `read_structure`) fits this layout: the rank
        of the maps' key in `map_keys` (0 best), None when it does not fit. PuzzleCAM's
        files hold IRN's `cam` too, but their `hr_cam` fits PuzzleCAM better."""
        if not isinstance(content, dict) or "keys" not in content:
            return None
        return next((rank for rank, key in enumerate(cls.map_keys) if key in content), None)

    def select(self, content: dict, budget: MapBudget, path: Path) -> tuple[np.ndarray, np.ndarray]:
        """(0-based foreground keys (K,), maps (K, H, W)) from a dict in this layout."""
        name = next(key for key in self.map_keys if key in content)
        return as_numpy(content["keys"]), checked_maps(content, name, budget, path)

    def read_raw(
        self, folder: Path, image_id: str, keys: tuple[int, ...] | None, budget: MapBudget
    ) -> tuple[np.ndarray, np.ndarray]:
        path = self.where(folder, image_id)
        content = load_npy(path, budget)
        found = layout_of(content, path)
        if found is not type(self):
            raise InputError(_mixed(folder, path, found, self), path)
        return self.select(content, budget, path)

    def write(self, folder: Path, image_id: str, keys: np.ndarray, cams: np.ndarray) -> None:
        buffer = io.BytesIO()
        np.save(buffer, self.content(keys, cams), allow_pickle=True)
        payload = buffer.getvalue()
        write_atomic(self.where(folder, image_id), lambda f: f.write(payload))

    def content(self, keys: np.ndarray, cams: np.ndarray) -> dict:
        """The dict this layout's codebase saves for 0-based keys and float32 maps."""
        return {"keys": keys, self.map_keys[0]: cams}


def as_numpy(value: Any) -> Any:
    """A stored value as numpy: a tensor copied (or viewed), anything else as it is."""
    return value.numpy() if isinstance(value, TensorRef) else value


def checked_maps(
    content: dict, key: Any, budget: MapBudget, path: Path, plane: bool = False
) -> Any:
    """`content[key]`, the maps (K, H, W) (or with `plane`, one map (H, W)), checked
    against the image before a tensor is copied; errors name the key."""
    value = content[key]
    what = f"`{key}`"
    if not isinstance(value, (np.ndarray, TensorRef)):
        raise InputError(f"{what} is a {type(value).__name__}, not an array of maps", path)
    if plane and len(value.shape) != 2:
        raise InputError(f"{what} has shape {value.shape}, not one H x W map", path)
    shape = (1, *value.shape) if plane else value.shape
    budget.check_declared(shape, value.dtype.itemsize, path, what)
    return as_numpy(value)


@functools.cache
def pickled_layouts() -> tuple[type[PickledNpy], ...]:
    """The registered pickled-dict formats."""
    found = [FORMATS.get(name) for name in FORMATS.names()]
    return tuple(cls for cls in found if isinstance(cls, type) and issubclass(cls, PickledNpy))


def layout_of(content: Any, path: Path) -> type[PickledNpy]:
    """The one layout `content` (a file's value or structure) is in.

    Raises:
        InputError: none or more than one, naming what the file holds.
    """
    ranks = {cls: cls.match(content) for cls in pickled_layouts()}
    best = min((r for r in ranks.values() if r is not None), default=None)
    found = [cls for cls, rank in ranks.items() if rank is not None and rank == best]
    if len(found) == 1:
        return found[0]
    if isinstance(content, dict):
        shown = ", ".join(f"`{k}`" for k in list(content)[:8]) or "nothing"
        what = f"a dict of {shown}"
    elif hasattr(content, "shape"):
        what = f"one array of shape {tuple(content.shape)}, not a dict"
    else:
        what = f"a {type(content).__name__}, not a dict"
    if found:
        names = " and ".join(cls.name for cls in found)
        raise InputError(f"holds {what}: the layouts {names} at once; keep one", path)
    known = "; ".join(f"{cls.name}: {cls.description}" for cls in pickled_layouts())
    raise InputError(f"holds {what}, which is no layout wsssbed reads ({known})", path)


def _mixed(folder: Path, path: Path, found: type[PickledNpy], wanted: PickledNpy) -> str:
    """Why `path`, in layout `found`, is refused in a folder read as `wanted`."""
    first = min((p for p in folder.iterdir() if p.name.endswith(".npy")), key=lambda p: p.name)
    said = f"holds the {found.name} layout ({found.description}); "
    try:
        first_layout = layout_of(read_structure(first), first) if first != path else None
    except InputError:
        first_layout = None
    if first_layout is type(wanted):
        return f"{said}but {first.name} holds {wanted.name}: a folder must hold one layout"
    return f"{said}not {wanted.name} as asked; --activation-format auto recognises it"
