"""The results store: four Parquet tables in one folder, appended atomically.

Schema version 5 (documented in docs/results.md; version 1 lacked the provenance
columns `method`, `manifests`, `verified` and `seed`, version 2 lacked `protocol`,
version 3 the ground-truth fingerprint `gt_digest`, `gt_source`, `split_digest`,
`split_file` and `split_file_sha256`, and `dataset_spec`/`dataset_spec_sha256`, version 4
`gt_void_ratio`, `split_official` and the `miou_unlabelled_bg` metric; they read as null
for old runs):

- `runs.parquet`: one row per run (provenance); written last, so it is the commit record.
- `sweeps.parquet`: one row per (run, grid point) with every summary metric.
- `per_class.parquet`: one row per (run, grid point, class) with the integer counts.
- `per_image.parquet` (only for runs swept with `--per-image`): one row per (run, image,
  grid point, class) with a non-zero count, for bootstrap intervals and split halves.

A results folder is new, empty or already a results folder (`results_folder`: its
`.wsssbed-output` marker names `sweep/evaluate/submit`), never another command's output.
Appends hold an exclusive lock on `RESULTS/.lock`, write each table to a temporary file
beside it and rename it into place, so concurrent runs never corrupt a table and an
interrupted run leaves the store as it was (rows of a run absent from `runs` are ignored
by readers).

A results folder may come from a stranger, so every table is read through `_read`: its
Parquet footer is checked before any value is decoded (rows within what the committed
runs account for, `row_budget`; the decoded size within `memory_budget`), text columns
are read dictionary-encoded and their decoded size checked before they are expanded, and
the table is conformed to its schema (a missing column is null, a value of the wrong
type refused, naming the table and the column).
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import stat
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from wsssbed.errors import InputError
from wsssbed.eval.summary import BOUNDARY_METRICS, SUMMARY_METRICS
from wsssbed.grids import MAX_GRID_POINTS
from wsssbed.io.imageio import regular_file, write_atomic
from wsssbed.io.names import check_ids
from wsssbed.io.ownership import OutputFolder

SCHEMA_VERSION = 5
MAX_RUNS = 100_000  # rows of runs.parquet
MAX_CLASSES = 256  # class rows per grid point (labels are uint8: at most 255 classes)
UNPARSED_POINTS = 1_000  # what a run whose grid does not parse may hold (reports skip it)
TEXT_CELL_BYTES = 64  # what pandas adds per text value (a Python str object)
# a table is held about this many times while read: Arrow's, the committed rows, pandas'
# (measured: an 18M-row per_class table within one copy's budget peaked at 1.3x it)
READ_COPIES = 3
FOOTER_BYTES = 16 << 20  # a Parquet footer (its metadata); results tables' take a few KB
WRITERS = "sweep/evaluate/submit"  # the commands that append runs: the folder's marker
TABLES = ("per_image", "per_class", "sweeps", "runs")
OPTIONAL_TABLES = ("per_image",)

_TEXT, _INT, _FLOAT, _BOOL = pa.string(), pa.int64(), pa.float64(), pa.bool_()
METRIC_COLUMNS = SUMMARY_METRICS + BOUNDARY_METRICS
SCHEMAS = {
    "runs": pa.schema(
        [
            ("run_id", _TEXT),
            ("schema_version", _INT),
            ("stage", _TEXT),
            ("dataset", _TEXT),
            ("split", _TEXT),
            ("data_root", _TEXT),
            ("n_images", _INT),
            ("generator", _TEXT),
            ("ignore_label", _BOOL),
            ("grid", _TEXT),
            ("activation", _TEXT),
            ("activation_format", _TEXT),
            ("saliency", _TEXT),
            ("predictions", _TEXT),
            ("labels", _TEXT),
            ("boundary_tolerance", _TEXT),
            ("device", _TEXT),
            ("workers", _INT),
            ("wall_time_s", _FLOAT),
            ("started_at", _TEXT),
            ("wsssbed_version", _TEXT),
            ("git_commit", _TEXT),
            ("packages", _TEXT),
            ("command", _TEXT),
            ("method", _TEXT),
            ("manifests", _TEXT),
            ("verified", _BOOL),
            ("seed", _INT),
            ("protocol", _TEXT),
            ("gt_digest", _TEXT),
            ("gt_source", _TEXT),
            ("split_digest", _TEXT),
            ("split_file", _TEXT),
            ("split_file_sha256", _TEXT),
            ("dataset_spec", _TEXT),
            ("dataset_spec_sha256", _TEXT),
            ("gt_void_ratio", _FLOAT),
            ("split_official", _BOOL),
        ]
    ),
    "sweeps": pa.schema(
        [
            ("run_id", _TEXT),
            ("point", _INT),
            ("threshold", _FLOAT),
            ("alpha", _FLOAT),
            ("sal_threshold", _FLOAT),
            *((name, _FLOAT) for name in METRIC_COLUMNS),
            ("n_images", _INT),
        ]
    ),
    "per_class": pa.schema(
        [
            ("run_id", _TEXT),
            ("point", _INT),
            ("class_id", _INT),
            ("class_name", _TEXT),
            ("tp", _INT),
            ("fp", _INT),
            ("fn", _INT),
            ("fn_unlabelled", _INT),
            ("intersection", _INT),
            ("union", _INT),
            ("gt_pixels", _INT),
            ("pred_pixels", _INT),
            ("iou", _FLOAT),
            ("precision", _FLOAT),
            ("recall", _FLOAT),
            ("bf_pred", _INT),
            ("bf_pred_matched", _INT),
            ("bf_gt", _INT),
            ("bf_gt_matched", _INT),
        ]
    ),
    "per_image": pa.schema(
        [
            ("run_id", _TEXT),
            ("image_id", _TEXT),
            ("point", _INT),
            ("class_id", _INT),
            ("tp", _INT),
            ("fp", _INT),
            ("fn", _INT),
            ("fn_unlabelled", _INT),
        ]
    ),
}

# the columns a row is located by: a table without one cannot be read
KEYS = {
    "runs": ("run_id",),
    "sweeps": ("run_id", "point"),
    "per_class": ("run_id", "point", "class_id"),
    "per_image": ("run_id", "image_id", "point", "class_id"),
}


@contextmanager
def locked(folder: Path) -> Iterator[None]:
    """Exclusive lock on the store for the duration of the block.

    The lock file is opened without following a link (`O_NOFOLLOW`) and must be a regular
    file: a `.lock` link in a stranger's folder would otherwise create, and lock, a file
    anywhere."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / ".lock"
    try:
        handle = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK, 0o666)
    except OSError as exc:
        raise InputError(f"the lock file cannot be opened ({exc.strerror}: a link is never "
                         "followed); remove it", path) from exc  # fmt: skip
    try:
        if not stat.S_ISREG(os.fstat(handle).st_mode):
            raise InputError("the lock file is not a regular file; remove it", path)
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
    finally:
        os.close(handle)


def memory_budget() -> int:
    """Bytes one results table may take once read: a quarter of this machine's memory."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 4


def _grid_points(grid: object) -> int:
    """Grid points of a run's `grid` (JSON: axis -> values), at most `MAX_GRID_POINTS`
    (what a sweep accepts); `UNPARSED_POINTS` when it does not parse."""
    try:
        axes = json.loads(grid) if isinstance(grid, str) else None
    except ValueError:
        axes = None
    if not isinstance(axes, dict) or not all(isinstance(v, list) for v in axes.values()):
        return UNPARSED_POINTS
    return min(math.prod(len(values) for values in axes.values()), MAX_GRID_POINTS)


def row_budget(runs: pa.Table, name: str) -> int:
    """Rows table `name` may hold given the runs of `runs`: per run its grid points
    (`sweeps`), times `MAX_CLASSES` (`per_class`), times its images (`per_image`); plus
    as much again as the largest run, for the rows of an append killed before it
    committed."""
    if name == "runs":
        return MAX_RUNS
    grids = runs.column("grid").to_pylist() if "grid" in runs.schema.names else []
    images = (runs.column("n_images").to_pylist() if "n_images" in runs.schema.names
              else [None] * len(grids))  # fmt: skip
    points = {grid: _grid_points(grid) for grid in set(grids)}  # each distinct grid once
    allowed = []
    for grid, count in zip(grids, images):
        rows = points[grid] * (1 if name == "sweeps" else MAX_CLASSES)
        if name == "per_image":
            rows *= count if isinstance(count, int) and count > 0 else 1
        allowed.append(rows)
    return sum(allowed) + max(allowed, default=0)


def _read(path: Path, rows_allowed: int) -> pa.Table | None:
    """A results table, its sizes checked before its values are decoded (see the module
    docstring); None when the file does not exist.

    Raises:
        InputError: an unreadable file, more rows than `rows_allowed`, or a decoded size
            above `memory_budget`, naming the file.
    """
    if not path.exists():
        return None
    _check_footer(path)
    try:
        footer = pq.read_metadata(path)
        rows = [footer.row_group(i).num_rows for i in range(footer.num_row_groups)]
        encoded = sum(
            footer.row_group(i).column(j).total_uncompressed_size
            for i in range(footer.num_row_groups)
            for j in range(footer.num_columns)
        )
        schema = footer.schema.to_arrow_schema()
    except (pa.ArrowException, OSError) as exc:
        raise InputError(f"results table is unreadable: {exc}", path) from exc
    if sum(rows) != footer.num_rows or any(n < 0 for n in rows):
        raise InputError(f"results table footer declares {footer.num_rows:,} rows, its row "
                         f"groups {sum(rows):,}: a damaged or crafted file", path)  # fmt: skip
    if footer.num_rows > rows_allowed:
        raise InputError(
            f"results table declares {footer.num_rows:,} rows, more than its runs can hold "
            f"({rows_allowed:,}: their grid points, classes and images); a crafted or "
            "damaged file",
            path,
        )
    text = [f.name for f in schema if pa.types.is_string(f.type) or pa.types.is_binary(f.type)
            or pa.types.is_large_string(f.type) or pa.types.is_large_binary(f.type)]  # fmt: skip
    size = footer.num_rows * (8 * len(schema) + TEXT_CELL_BYTES * len(text)) + encoded
    _check_size(size, path)
    try:  # text stays dictionary-encoded (its footprint) until its size is known
        table = pq.read_table(path, read_dictionary=text)
    except (pa.ArrowException, OSError) as exc:
        raise InputError(f"results table is unreadable: {exc}", path) from exc
    for name in text:
        for chunk in table.column(name).chunks:
            lengths = pc.binary_length(chunk.dictionary)
            size += (pc.sum(pc.take(lengths, chunk.indices)).as_py() or 0) if len(chunk) else 0
    _check_size(size, path)
    return table.cast(pa.schema([pa.field(f.name, f.type.value_type) if f.name in text else f
                                 for f in table.schema]))  # fmt: skip


def _check_footer(path: Path) -> None:
    """Refuse a table that is not a regular file (a pipe would block the read) or whose
    footer, parsed in full before any check of it, declares more than `FOOTER_BYTES`
    (a file of a million one-row groups has a footer of hundreds of MB)."""
    size = regular_file(path)
    if size < 12:
        return  # not Parquet: `read_metadata` says so
    with open(path, "rb") as handle:
        handle.seek(size - 8)
        length, magic = struct.unpack("<I4s", handle.read(8))
    if magic == b"PAR1" and length > FOOTER_BYTES:
        raise InputError(f"results table's footer declares {length:,} bytes of metadata, "
                         f"more than {FOOTER_BYTES:,}: a crafted or damaged file (wsssbed's "
                         "take a few KB)", path)  # fmt: skip


def _check_size(size: int, path: Path) -> None:
    """Refuse a table whose `size` decoded bytes, held `READ_COPIES` times while it is
    read, exceed `memory_budget`."""
    budget, held = memory_budget(), size * READ_COPIES
    if held > budget:
        raise InputError(f"results table would take {held:,} bytes while read ({READ_COPIES} "
                         f"copies of its {size:,} decoded bytes), above the {budget:,}-byte "
                         "budget (a quarter of this machine's memory)", path)  # fmt: skip


def _conform(table: pa.Table, name: str, path: Path, reading: bool = False) -> pa.Table:
    """Table `name` in the current schema: columns added since (or missing) are null.

    Args:
        reading: columns the schema does not know are dropped (a newer wsssbed's); when
            appending they are refused, as the rewrite would lose them.

    Raises:
        InputError: a missing key column (`KEYS`) or a value of the wrong type (naming the
            column), or unknown columns when appending.
    """
    schema = SCHEMAS[name]
    missing = [c for c in KEYS[name] if c not in table.schema.names]
    if missing:
        raise InputError(f"the table has no `{missing[0]}` column", path)
    unknown = set(table.schema.names) - set(schema.names)
    if unknown and not reading:
        raise InputError(
            f"columns {sorted(unknown)} are not in schema version {SCHEMA_VERSION}; "
            "the table was written by a newer wsssbed",
            path,
        )
    columns = []
    for f in schema:
        if f.name not in table.schema.names:
            columns.append(pa.nulls(table.num_rows, f.type))
            continue
        try:
            columns.append(table.column(f.name).cast(f.type))
        except (pa.ArrowException, ValueError) as exc:
            found = table.schema.field(f.name).type
            raise InputError(f"column `{f.name}` holds {found} values that are not {f.type} "
                             f"({str(exc)[:80]})", path) from exc  # fmt: skip
    return pa.Table.from_arrays(columns, schema=schema)


def _holds_tables(folder: Path) -> bool:
    """A results folder written before markers existed: it holds one of the tables."""
    return any((folder / f"{name}.parquet").is_file() for name in TABLES)


def results_folder(folder: Path) -> OutputFolder:
    """Claim `folder` for appending runs, before any work: a new or empty folder, or a
    results folder (its `.wsssbed-output` marker names `WRITERS`, or it holds the tables).
    Another command's output or a folder of other files is refused
    (`wsssbed.io.ownership`); the store only adds and replaces its own tables."""
    return OutputFolder.claim(Path(folder), WRITERS, "results folder", adopt=_holds_tables)


def append_run(folder: Path, tables: dict[str, pd.DataFrame]) -> None:
    """Append one run's rows to every table (runs last), atomically and under the lock."""
    required = set(TABLES) - set(OPTIONAL_TABLES)
    if not required <= set(tables) <= set(TABLES):
        raise ValueError(f"expected tables {TABLES}, got {sorted(tables)}")
    results_folder(folder).open()
    with locked(folder):
        runs = _read_runs(folder, appending=True)
        staged: list[tuple[Path, pa.Table]] = []
        for name in TABLES:
            path = folder / f"{name}.parquet"
            schema = SCHEMAS[name]
            frame = tables.get(name)
            if name in OPTIONAL_TABLES and (frame is None or frame.empty) and not path.exists():
                continue
            if frame is None:
                frame = pd.DataFrame(columns=schema.names)
            unknown = set(frame.columns) - set(schema.names)
            if unknown:
                raise ValueError(f"{name}: columns {sorted(unknown)} are not in the schema")
            new = pa.Table.from_pandas(
                frame.reindex(columns=schema.names), schema=schema, preserve_index=False
            )
            if runs is not None:  # rows of an uncommitted run (a killed append) are dropped
                old = runs if name == "runs" else _read_rows(folder, name, runs, appending=True)
                new = new if old is None else pa.concat_tables([_committed_rows(old, runs), new])
            metadata = {b"wsssbed_schema_version": str(SCHEMA_VERSION).encode()}
            staged.append((path, new.replace_schema_metadata(metadata)))
        for path, table in staged:
            write_atomic(path, lambda stream, t=table: pq.write_table(t, stream))


def _read_runs(folder: Path, appending: bool = False) -> pa.Table | None:
    """`runs.parquet` in the current schema (None when there is none), its run ids checked
    (`wsssbed.io.names.check_id`): they become file names and select every other row.
    `appending`: columns of a newer wsssbed are refused (`_conform`), not dropped."""
    path = folder / "runs.parquet"
    runs = _read(path, MAX_RUNS)
    if runs is None:
        return None
    runs = _conform(runs, "runs", path, reading=not appending)
    check_ids(pc.unique(runs.column("run_id")).to_pylist(), "run_id", path)
    return runs


def _read_rows(folder: Path, name: str, runs: pa.Table, appending: bool = False) -> pa.Table | None:
    """Table `name` in the current schema, its rows within what `runs` account for
    (`row_budget`); None when the file does not exist."""
    path = folder / f"{name}.parquet"
    table = _read(path, row_budget(runs, name))
    return None if table is None else _conform(table, name, path, reading=not appending)


def _committed_rows(table: pa.Table, runs: pa.Table) -> pa.Table:
    """The rows of `table` whose run is in `runs` (committed)."""
    committed = runs.column("run_id").combine_chunks()
    return table.filter(pc.is_in(table.column("run_id"), value_set=committed))


def repair(folder: Path) -> dict[str, int]:
    """Remove rows of uncommitted runs (left by an append killed between its renames) from
    every table, under the lock; returns the rows removed per table.

    Raises:
        InputError: `folder` is not a results folder (no `runs.parquet`): nothing is
            created there, not even the lock file.
    """
    if not (folder / "runs.parquet").is_file():
        raise InputError("not a results folder (no runs.parquet); nothing to repair", folder)
    removed = {}
    with locked(folder):
        runs = _read_runs(folder)
        if runs is None:
            raise InputError("no results here (runs.parquet is missing)", folder)
        for name in TABLES:
            path = folder / f"{name}.parquet"
            table = None if name == "runs" else _read_rows(folder, name, runs)
            if table is None:
                continue
            kept = _committed_rows(table, runs)
            removed[name] = table.num_rows - kept.num_rows
            if removed[name]:
                write_atomic(path, lambda stream, t=kept: pq.write_table(t, stream))
    return removed


def read_table(folder: Path, name: str) -> pd.DataFrame:
    """A table's committed rows (those whose run is in `runs.parquet`), in the current
    schema.

    Every table is read through `_read`: sizes from the Parquet footer are checked before
    any value is decoded, so a crafted file claiming millions of rows is refused, not
    inflated. Run ids and image ids become file names (`runs/<run_id>.html`, pictures
    looked up by id), so each is checked here (`wsssbed.io.names.check_id`); other
    tables' rows are those of checked run ids.

    Raises:
        InputError: a missing, unreadable or over-budget table, a column of the wrong
            type, or an id that cannot name a file, naming the table.
    """
    if name not in TABLES:
        raise InputError(f"unknown results table {name!r}; tables: {TABLES}")
    runs = _read_runs(folder)
    if runs is None:
        raise InputError("no results here (runs.parquet is missing)", folder)
    if name == "runs":
        return runs.to_pandas()
    table = _read_rows(folder, name, runs)
    if table is None and name in OPTIONAL_TABLES:
        return SCHEMAS[name].empty_table().to_pandas()
    if table is None:
        raise InputError(f"{name}.parquet is missing", folder)
    table = _committed_rows(table, runs)
    if "image_id" in table.schema.names:
        check_ids(pc.unique(table.column("image_id")).to_pylist(), "image_id",
                  folder / f"{name}.parquet")  # fmt: skip
    return table.to_pandas()


def best_row(sweeps: pd.DataFrame, metric: str = "miou") -> pd.Series:
    """A run's grid point with the highest `metric` (the first point on ties).

    Args:
        sweeps: one run's `sweeps` rows, in any order.
        metric: a column of `sweeps` (an mIoU convention: `miou`, `miou_zero`, ...).
    """
    ordered = sweeps.sort_values("point", kind="stable")
    return ordered.loc[_scores(ordered[metric]).idxmax()]


def best_points(
    folder: Path, method: str | None = None, dataset: str | None = None
) -> pd.DataFrame:
    """One row per stored run: its provenance and its best grid point (highest `miou`).

    Args:
        method: keep runs of this method (manifest name) only.
        dataset: keep runs on this dataset only.
    """
    runs = read_table(folder, "runs")
    if method is not None:
        runs = runs[runs.method == method]
    if dataset is not None:
        runs = runs[runs.dataset == dataset]
    if runs.empty:
        return runs
    sweeps = read_table(folder, "sweeps")
    sweeps = sweeps[sweeps.run_id.isin(runs.run_id)]
    best = sweeps.loc[_scores(sweeps.miou).groupby(sweeps.run_id, sort=False).idxmax()]
    joined = runs.merge(best, on="run_id", suffixes=("", "_point"))
    return joined.sort_values("started_at", kind="stable").reset_index(drop=True)


def _scores(values: pd.Series) -> pd.Series:
    """A metric column for picking a best point: NaN (no class scored) ranks last, so a
    run whose every point is NaN has its first point as its best."""
    return values.astype(float).fillna(-math.inf)
