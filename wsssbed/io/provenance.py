"""Provenance of a run: code version, package versions, machine, time."""

from __future__ import annotations

import json
import platform
import subprocess
import uuid
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

PACKAGES = ("torch", "numpy", "pandas", "pyarrow", "pillow", "typer")


def new_run_id() -> str:
    """A unique run id: UTC time stamp plus random suffix (sortable by start time)."""
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:8]


def git_commit() -> str | None:
    """Commit of the wsssbed source tree (with `+dirty` when modified), if it is a checkout."""
    source = Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(
            ["git", "-C", str(source), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout
        dirty = subprocess.run(
            ["git", "-C", str(source), "status", "--porcelain", "wsssbed"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return commit.strip() + ("+dirty" if dirty.strip() else "")


def package_versions() -> str:
    """JSON object of the versions of the packages results depend on."""
    found = {}
    for name in PACKAGES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = None
    found["python"] = platform.python_version()
    return json.dumps(found, sort_keys=True)


def utc_now() -> str:
    """Current time, ISO 8601 UTC."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
