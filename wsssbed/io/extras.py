"""Optional dependencies (pip extras): import one, or say which extra installs it."""

from __future__ import annotations

import importlib
from types import ModuleType

from wsssbed.errors import WsssbedError


def require(module: str, extra: str) -> ModuleType:
    """Import an optional dependency, or say how to install it.

    Raises:
        WsssbedError: the module is not installed (names the pip extra).
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise WsssbedError(
            f"{module} is not installed; install it with: pip install 'wsssbed[{extra}]'"
        ) from exc
