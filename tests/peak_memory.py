"""Peak resident memory of a fresh process: a legitimate input first, then crafted ones.

`measure(code, *args)` runs `code` in a new interpreter with `peak()` (bytes of peak
resident memory so far) and `report(**values)` (prints them as JSON) defined, and
returns what it reported. The peak after the legitimate input is the baseline; growth
beyond it is what the crafted inputs cost."""

from __future__ import annotations

import json
import subprocess
import sys

PRELUDE = """
import json, resource, sys
def peak():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
def report(**values):
    print(json.dumps(values))
"""


def measure(code: str, *args: object, timeout: float = 300) -> dict:
    """Run `code` (which calls `report`) in a fresh interpreter; returns its report."""
    result = subprocess.run(
        [sys.executable, "-c", PRELUDE + code, *map(str, args)],
        capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])
