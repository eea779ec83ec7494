"""wsssbed: a reproducible testbed for weakly-supervised semantic segmentation.

    import wsssbed
    result = wsssbed.sweep(dataset="voc2012", data_root="~/data/VOC2012", split="val",
                           activation="cams/irn", activation_format="irn-npy")
    result.best

Names are imported on first use, so `import wsssbed` (and the CLI's `--help`) stays
light: torch is loaded only by what computes.
"""

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING

try:
    __version__ = version("wsssbed")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+source"

_LAZY = {
    "sweep": "wsssbed.api",
    "evaluate": "wsssbed.api",
    "read_results": "wsssbed.api",
    "Results": "wsssbed.api",
    "SweepResult": "wsssbed.results.runs",
    "Protocol": "wsssbed.protocol",
    "build_protocol": "wsssbed.protocol",
    "bfscore": "wsssbed.eval.boundary",
    "InputError": "wsssbed.errors",
    "WsssbedError": "wsssbed.errors",
}

if TYPE_CHECKING:
    from wsssbed.api import Results, evaluate, read_results, sweep
    from wsssbed.errors import InputError, WsssbedError
    from wsssbed.eval.boundary import bfscore
    from wsssbed.protocol import Protocol, build_protocol
    from wsssbed.results.runs import SweepResult


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    if name == "metrics":
        return import_module("wsssbed.metrics")
    raise AttributeError(f"module 'wsssbed' has no attribute {name!r}")


__all__ = [
    "InputError",
    "Protocol",
    "Results",
    "SweepResult",
    "WsssbedError",
    "__version__",
    "bfscore",
    "build_protocol",
    "evaluate",
    "read_results",
    "sweep",
]
