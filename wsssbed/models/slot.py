"""A model loaded once per process and never pickled (Ray ships the recipe, not weights)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch


@dataclass
class ModelSlot:
    """`load(device)` called on first use on each device; pickles without the model.

    Attributes:
        load: builds the model on a device (`functools.partial(load_sam, path, kind)`).
        recipe: what the model is, for records and messages.
    """

    load: Callable[[str], object]
    recipe: dict
    _loaded: dict = field(default_factory=dict, repr=False, compare=False)

    def get(self, device: torch.device | str = "cpu") -> object:
        """The model on `device`, loading it the first time."""
        key = str(device)
        if key not in self._loaded:
            self._loaded[key] = self.load(key)
        return self._loaded[key]

    def __getstate__(self) -> dict:
        return {"load": self.load, "recipe": self.recipe, "_loaded": {}}
