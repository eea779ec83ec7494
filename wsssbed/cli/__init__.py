"""The `wsssbed` command line: thin command groups that parse, call the library, render.

- `datasets.py`: `datasets`, `datasets check`, `datasets convert-coco`, `sample`
- `sweep.py`: `sweep`, `evaluate`
- `generate.py`: `pseudo-labels`, `clip-activations`, `saliency`
- `catalogue.py`: `manifests`, `fetch`, `verify`, `submit`
- `reports.py`: `results show`, `sensitivity`, `leaderboard`
"""

from wsssbed.cli import catalogue, datasets, generate, reports, sweep  # noqa: F401  (register)
from wsssbed.cli.app import app

__all__ = ["app"]
