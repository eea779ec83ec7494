"""wsssbed: a reproducible testbed for weakly-supervised semantic segmentation."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("wsssbed")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+source"

__all__ = ["__version__"]
