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
"""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from wsssbed.errors import InputError
from wsssbed.eval.summary import BOUNDARY_METRICS, SUMMARY_METRICS
from wsssbed.io.imageio import write_atomic
from wsssbed.io.names import check_ids
from wsssbed.io.ownership import OutputFolder

SCHEMA_VERSION = 5
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


@contextmanager
def locked(folder: Path) -> Iterator[None]:
    """Exclusive lock on the store for the duration of the block."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _read(path: Path) -> pa.Table | None:
    if not path.exists():
        return None
    try:
        return pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise InputError(f"results table is unreadable: {exc}", path) from exc


def _conform(table: pa.Table, schema: pa.Schema, path: Path) -> pa.Table:
    """An older table in the current schema: columns added since are null."""
    unknown = set(table.schema.names) - set(schema.names)
    if unknown:
        raise InputError(
            f"columns {sorted(unknown)} are not in schema version {SCHEMA_VERSION}; "
            "the table was written by a newer wsssbed",
            path,
        )
    columns = [
        table.column(f.name).cast(f.type)
        if f.name in table.schema.names
        else pa.nulls(table.num_rows, f.type)
        for f in schema
    ]
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
        committed = _committed(folder)
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
            old = _read(path)
            if old is not None:  # rows of an uncommitted run (a killed append) are dropped
                new = pa.concat_tables(
                    [_committed_rows(_conform(old, schema, path), committed), new]
                )
            metadata = {b"wsssbed_schema_version": str(SCHEMA_VERSION).encode()}
            staged.append((path, new.replace_schema_metadata(metadata)))
        for path, table in staged:
            write_atomic(path, lambda stream, t=table: pq.write_table(t, stream))


def _committed(folder: Path) -> pa.Array | None:
    """Run ids in `runs.parquet` (None when there is none: nothing is committed yet)."""
    runs = _read(folder / "runs.parquet")
    return None if runs is None else runs.column("run_id").combine_chunks()


def _committed_rows(table: pa.Table, committed: pa.Array | None) -> pa.Table:
    if committed is None:
        return table.slice(0, 0)
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
        committed = _committed(folder)
        if committed is None:
            raise InputError("no results here (runs.parquet is missing)", folder)
        for name in TABLES:
            path = folder / f"{name}.parquet"
            table = _read(path)
            if table is None or name == "runs":
                continue
            kept = _committed_rows(table, committed)
            removed[name] = table.num_rows - kept.num_rows
            if removed[name]:
                write_atomic(path, lambda stream, t=kept: pq.write_table(t, stream))
    return removed


def read_table(folder: Path, name: str) -> pd.DataFrame:
    """A table's committed rows (those whose run is in `runs.parquet`).

    Run ids and image ids become file names (`runs/<run_id>.html`, pictures looked up by
    id), so each is checked here (`wsssbed.io.names.check_id`); other tables' rows are
    those of checked run ids.

    Raises:
        InputError: a missing or unreadable table, or an id that cannot name a file,
            naming the table and the id.
    """
    if name not in TABLES:
        raise InputError(f"unknown results table {name!r}; tables: {TABLES}")
    path = folder / "runs.parquet"
    runs = _read(path)
    if runs is None:
        raise InputError("no results here (runs.parquet is missing)", folder)
    check_ids(_column_values(runs, "run_id"), "run_id", path)
    if name == "runs":
        return runs.to_pandas()
    path = folder / f"{name}.parquet"
    table = _read(path)
    if table is None and name in OPTIONAL_TABLES:
        return SCHEMAS[name].empty_table().to_pandas()
    if table is None:
        raise InputError(f"{name}.parquet is missing", folder)
    table = _committed_rows(table, runs.column("run_id").combine_chunks())
    if "image_id" in table.schema.names:
        check_ids(_column_values(table, "image_id"), "image_id", path)
    return table.to_pandas()


def _column_values(table: pa.Table, column: str) -> list[object]:
    """The distinct values of a column (None for nulls; none when the column is absent)."""
    if column not in table.schema.names:
        return []
    return pc.unique(table.column(column)).to_pylist()


def best_row(sweeps: pd.DataFrame, metric: str = "miou") -> pd.Series:
    """A run's grid point with the highest `metric` (the first point on ties).

    Args:
        sweeps: one run's `sweeps` rows, in any order.
        metric: a column of `sweeps` (an mIoU convention: `miou`, `miou_zero`, ...).
    """
    ordered = sweeps.sort_values("point", kind="stable")
    return ordered.loc[ordered[metric].astype(float).idxmax()]


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
    best = sweeps.loc[sweeps.groupby("run_id", sort=False)["miou"].idxmax()]
    joined = runs.merge(best, on="run_id", suffixes=("", "_point"))
    return joined.sort_values("started_at", kind="stable").reset_index(drop=True)
