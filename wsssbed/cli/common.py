"""What the command groups share: options, consoles, progress bars, tables.

Nothing here imports torch: commands import the library inside their bodies, so
`--help`, `--version` and the listing commands start fast.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import typer
from rich.console import Console, RenderableType
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table
from rich.text import Text

from wsssbed.datasets import builtin_datasets
from wsssbed.embedded.sample import DEFAULT_SPLIT as SAMPLE_DEFAULT_SPLIT
from wsssbed.embedded.sample import SPLITS as SAMPLE_SPLITS

out = Console()
err = Console(stderr=True)

DEVICE_OPTION = typer.Option("auto", help="auto, cpu or cuda.")
WORKERS_OPTION = typer.Option(
    None,
    help="Decoding processes (default: as many as pay, up to 4: the first images are timed "
    "in this process and the rest go to workers when they would take over half a second).",
)
RESULTS_OPTION = typer.Option(Path("wsssbed-results"), "--out", help="Results folder.")
RESULTS_IN_OPTION = typer.Option(Path("wsssbed-results"), "--results", help="Results folder.")
JSON_SUMMARY_OPTION = typer.Option(False, "--json", help="Print a JSON summary on stdout.")
JSON_OPTION = typer.Option(False, "--json", help="Print JSON.")
BACKEND_OPTION = typer.Option("local", help="local, or ray (shard images into Ray tasks).")
ADDRESS_OPTION = typer.Option(
    None, help="Ray cluster: auto, HOST:PORT; default: start a local one (--backend ray)."
)
LABELS_OPTION = typer.Option(
    "masks", help="Image-level labels: `masks` or a label-list file (`image_id c1 c2 ...`)."
)
DATASET_OPTION = typer.Option(
    None, help="Dataset name or spec .toml (default: voc2012, the sample's)."
)
_SAMPLE = " + ".join(f"{count} {name}" for name, count in SAMPLE_SPLITS.items())
DATA_ROOT_OPTION = typer.Option(
    None,
    help=f"Dataset folder (default: the embedded synthetic sample, {sum(SAMPLE_SPLITS.values())} "
    f"VOC-layout images: {_SAMPLE}).",
)


def default_splits() -> str:
    """`train (voc2012, coco2014), val (context, ...)`: each built-in dataset's default."""
    by_split: dict[str, list[str]] = {}
    for spec in builtin_datasets():
        by_split.setdefault(spec.default_split, []).append(spec.name)
    return ", ".join(f"{split} ({', '.join(names)})" for split, names in by_split.items())


SPLIT_OPTION = typer.Option(
    None,
    help="Split name, or an id-list file (one image id per line) to score part of one "
    f"\\[default: the dataset's default split: {default_splits()}; a spec file's "
    f"default_split; {SAMPLE_DEFAULT_SPLIT} on the embedded sample; a --method's own split].",
)
FORMAT_HELP = (
    "Activation-map format: auto (recognised from the files), irn-npy, seam-npy, "
    "puzzlecam-npy, clip-es-npy, png-per-class or npz."
)
FORMAT_OPTION = typer.Option("auto", help=FORMAT_HELP)
TOLERANCE_OPTION = typer.Option(
    None, help="Boundary tolerance: fraction of the image diagonal (default 0.0075), or `2px`."
)


class _CountColumn(ProgressColumn):
    """`done/total` items, or bytes with the transfer speed for tasks made `in_bytes`."""

    def __init__(self) -> None:
        super().__init__()
        self._items, self._bytes, self._speed = (
            MofNCompleteColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
        )

    def render(self, task: Task) -> RenderableType:
        if not task.fields.get("in_bytes"):
            return self._items.render(task)
        return Text.assemble(self._bytes.render(task), " ", self._speed.render(task))


@contextmanager
def progress_bars(
    *labels: str, enabled: bool = True, in_bytes: tuple[bool, ...] = ()
) -> Iterator[list[Callable[[int, int], None]]]:
    """Rich progress bars on stderr, one per label, each fed by `callback(done, total)`.

    A bar whose `in_bytes` entry is true counts bytes and shows the transfer speed.
    """
    if not enabled:
        yield [lambda done, total: None for _ in labels]
        return
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        _CountColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=err, transient=True) as progress:
        callbacks = []
        for index, label in enumerate(labels):
            task = progress.add_task(
                label, total=None, in_bytes=index < len(in_bytes) and in_bytes[index]
            )
            callbacks.append(functools.partial(_advance, progress, task))
        yield callbacks


def _advance(progress: Progress, task: TaskID, done: int, total: int) -> None:
    progress.update(task, completed=done, total=total)


@contextmanager
def progress_bar(label: str, enabled: bool = True) -> Iterator[Callable[[int, int], None]]:
    """One rich progress bar on stderr, fed by `callback(done, total)`."""
    with progress_bars(label, enabled=enabled) as (update,):
        yield update


def fitted_table(
    title: str,
    headers: list[str],
    rows: list[list[str]],
    optional: tuple[str, ...] = (),
    shorten: dict[str, Callable[[str], str]] | None = None,
    right: tuple[str, ...] = (),
) -> Table:
    """A table that fits the terminal without breaking a cell mid-word.

    Cells never wrap. When the natural width is too wide, columns in `shorten` are
    shortened first (a run id to its last 8 characters), then the `optional` columns are
    dropped, in the order given, until the table fits (at least the other columns stay).
    """
    shorten = shorten or {}

    def width(columns: list[int], cells: list[list[str]]) -> int:
        return 1 + sum(
            3 + max(len(headers[c]), *(Text.from_markup(r[c]).cell_len for r in cells))
            for c in columns
        )

    columns = list(range(len(headers)))
    if width(columns, rows) > out.width and shorten:
        rows = [[shorten.get(headers[c], str)(v) for c, v in enumerate(r)] for r in rows]
    for name in optional:
        if width(columns, rows) <= out.width:
            break
        columns.remove(headers.index(name))
    table = Table(title=title)
    for c in columns:
        justify = "right" if headers[c] in right else "left"
        table.add_column(headers[c], justify=justify, no_wrap=True, overflow="ellipsis")
    for r in rows:
        table.add_row(*(r[c] for c in columns))
    return table


def fraction(value) -> float | None:
    """A score as a JSON number (None for missing)."""
    import pandas as pd

    return None if value is None or pd.isna(value) else float(value)


def percent(value) -> str:
    """A score in [0, 1] as `12.34%` (`-` for missing)."""
    import pandas as pd

    return "-" if value is None or pd.isna(value) else f"{100 * float(value):.2f}%"


def in_points(value, digits: int = 1) -> str:
    """A score in [0, 1] in percentage points without the sign (`55.2`; `-` for missing),
    for tables whose header carries the unit."""
    import pandas as pd

    return "-" if value is None or pd.isna(value) else f"{100 * float(value):.{digits}f}"


def interval(low, high, digits: int = 1) -> str:
    """An interval of scores in points, `74.4–79.0` (an en dash, never a minus-like
    hyphen; `-` when missing)."""
    import pandas as pd

    if low is None or pd.isna(low):
        return "-"
    return f"{in_points(low, digits)}\u2013{in_points(high, digits)}"


def picked_format(folder: Path | None, fmt: str) -> str:
    """`fmt`, or for `auto` the format `folder` holds, said in one line on stderr."""
    if fmt != "auto" or folder is None:
        return fmt
    from wsssbed.activation import detect_format

    found = detect_format(folder)
    err.print(
        f"activation format: {found.name} (auto: {found.evidence})",
        highlight=False,
        soft_wrap=True,
    )
    return found.name
