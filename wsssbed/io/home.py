"""The user's wsssbed folder: `$WSSSBED_HOME`, default `~/.wsssbed`.

It holds the rendered embedded sample (`sample-<version>/`), the user's manifests
(`manifests/`) and fetched or extracted maps (`maps/`).
"""

from __future__ import annotations

import os
from pathlib import Path


def home() -> Path:
    """The user's wsssbed folder."""
    return Path(os.environ.get("WSSSBED_HOME") or Path.home() / ".wsssbed")
