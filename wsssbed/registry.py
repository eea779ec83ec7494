"""Registries of named plugins (map formats, sweep rules, generators), with did-you-mean.

A plugin registers itself with a decorator in its own module, and a registry imports
every module of its package on the first lookup, so adding a format or a generator is
one new file (plus its test). Listing the names (`names`, `in`) reads the decorators
from the modules' source instead, so that validating a manifest or printing help does
not import torch:

    FORMATS = Registry("activation format", "wsssbed.activation")

    @FORMATS.register("npz")
    class Npz(MapFormat): ...
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import pkgutil
import re
from collections.abc import Callable
from pathlib import Path
from typing import Generic, TypeVar

from wsssbed.errors import InputError

T = TypeVar("T")
_DECORATOR = re.compile(r"^@\w+\.register\(\s*\"([^\"]+)\"\s*\)", re.MULTILINE)


class Registry(Generic[T]):
    """Name -> plugin for one kind of plugin.

    Args:
        kind: what the plugins are, for messages (`activation format`).
        package: the package whose modules hold the plugins (imported on first lookup).
    """

    def __init__(self, kind: str, package: str) -> None:
        self.kind = kind
        self.package = package
        self._items: dict[str, T] = {}
        self._loaded = False
        self._declared: tuple[str, ...] | None = None  # names read from the source

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator: register the decorated object under `name` (unique)."""

        def add(item: T) -> T:
            if name in self._items and self._items[name] is not item:
                raise ValueError(f"two {self.kind}s named {name!r}")
            self._items[name] = item
            return item

        return add

    def _load(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        package = importlib.import_module(self.package)
        for module in pkgutil.iter_modules(package.__path__):
            importlib.import_module(f"{self.package}.{module.name}")

    def names(self) -> tuple[str, ...]:
        """Every registered name, sorted (read from the modules' decorators)."""
        if self._loaded:
            return tuple(sorted(self._items))
        if self._declared is None:
            package = importlib.util.find_spec(self.package)
            found = set()
            for folder in package.submodule_search_locations or ():
                for path in Path(folder).glob("*.py"):
                    found.update(_DECORATOR.findall(path.read_text(encoding="utf-8")))
            self._declared = tuple(sorted(found))
        return self._declared

    def __contains__(self, name: object) -> bool:
        return name in self.names()

    def get(self, name: str, parameter: str | None = None) -> T:
        """The plugin called `name`.

        Args:
            parameter: the parameter the name came from, for the message (`generator`).

        Raises:
            InputError: no such name; says which names exist and the closest one.
        """
        self._load()
        if name in self._items:
            return self._items[name]
        raise InputError(unknown_name(name, tuple(sorted(self._items)), parameter or self.kind))


def unknown_name(name: object, choices: tuple[str, ...] | list[str], what: str) -> str:
    """`unknown <what> 'x'; did you mean 'y'? (choices: a, b, c)`."""
    close = difflib.get_close_matches(str(name), list(choices), n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"unknown {what} {name!r}{hint} (choices: {', '.join(choices)})"
