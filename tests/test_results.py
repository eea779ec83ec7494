"""The Parquet store: atomic appends, concurrent writers, committed rows only."""

from __future__ import annotations

import multiprocessing
import os

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from peak_memory import measure

from wsssbed.errors import InputError
from wsssbed.results.store import append_run, best_points, best_row, read_table, repair


def _tables(run_id: str, rows: int = 50):
    """Frames with a few columns set; the store fills the rest of the schema with nulls."""
    return {
        "runs": pd.DataFrame({"run_id": [run_id], "wall_time_s": [1.0]}),
        "sweeps": pd.DataFrame({"run_id": run_id, "point": range(rows), "miou": 0.5}),
        "per_class": pd.DataFrame({"run_id": run_id, "point": range(rows), "class_id": 1}),
    }


def test_schema_is_enforced(tmp_path):
    tables = _tables("x")
    tables["runs"]["surprise"] = 1
    with pytest.raises(ValueError, match="surprise"):
        append_run(tmp_path, tables)
    assert not (tmp_path / "runs.parquet").exists()
    append_run(tmp_path, _tables("y"))
    assert read_table(tmp_path, "runs").schema_version.isna().all()


def _writer(folder, worker):
    for index in range(10):
        append_run(folder, _tables(f"w{worker}-{index}"))


def test_concurrent_appends_never_lose_or_corrupt_rows(tmp_path):
    context = multiprocessing.get_context("fork")
    processes = [context.Process(target=_writer, args=(tmp_path, w)) for w in range(4)]
    for p in processes:
        p.start()
    for p in processes:
        p.join()
        assert p.exitcode == 0
    runs = read_table(tmp_path, "runs")
    assert len(runs) == 40 and runs.run_id.is_unique
    assert len(read_table(tmp_path, "sweeps")) == 40 * 50


def test_readers_ignore_rows_of_uncommitted_runs(tmp_path):
    append_run(tmp_path, _tables("done"))
    orphan = pd.concat(
        [pd.read_parquet(tmp_path / "sweeps.parquet"), _tables("interrupted")["sweeps"]]
    )
    orphan.to_parquet(tmp_path / "sweeps.parquet")
    assert set(read_table(tmp_path, "sweeps").run_id) == {"done"}


def test_no_temporary_files_are_left_behind(tmp_path):
    append_run(tmp_path, _tables("a"))
    append_run(tmp_path, _tables("b"))
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == [".lock", ".wsssbed-output", "per_class.parquet", "runs.parquet",
                     "sweeps.parquet"]  # fmt: skip


# ---- results folders from strangers (red-team findings 2, 6, 11) ---------------------


def _sweeps_claiming(folder, rows: int) -> int:
    """Replace `sweeps.parquet` by one of `rows` constant rows of the committed run
    (dictionary- and zstd-encoded: a small file); returns its size in bytes."""
    run_id = pq.read_table(folder / "runs.parquet").column("run_id")[0]
    table = pa.table({"run_id": pa.repeat(run_id, rows), "point": pa.repeat(pa.scalar(0), rows),
                      "miou": pa.repeat(pa.scalar(0.5), rows)})  # fmt: skip
    pq.write_table(table, folder / "sweeps.parquet", compression="zstd")
    return (folder / "sweeps.parquet").stat().st_size


def test_a_table_claiming_millions_of_rows_is_refused_from_its_footer(tmp_path):
    """A small sweeps.parquet declaring 2 million rows (the red team's inflated to 11 GB
    at 20 million) is refused before any value is decoded, naming the file, in a fresh
    process whose peak memory barely moves."""
    append_run(tmp_path, _tables("done"))
    assert _sweeps_claiming(tmp_path, 2_000_000) < 1 << 20
    report = measure(
        """
import sys
from pathlib import Path
from wsssbed.errors import InputError
from wsssbed.results.store import read_table
folder = Path(sys.argv[1])
read_table(folder, "per_class")  # a legitimate table first: the baseline
base = peak()
try:
    read_table(folder, "sweeps")
    message = ""
except InputError as exc:
    message = str(exc)
report(message=message, growth=peak() - base)
""",
        tmp_path,
    )
    assert "declares 2,000,000 rows, more than its runs can hold" in report["message"]
    assert str(tmp_path / "sweeps.parquet") in report["message"]
    assert report["growth"] < 64 * 2**20, report


def test_a_crafted_grid_claims_no_more_points_than_a_sweep_accepts():
    """The row budget reads each run's `grid`; a crafted one (three axes of 1,000 values:
    a billion points) counts as the most a sweep accepts, `MAX_GRID_POINTS`."""
    import json

    from wsssbed.grids import MAX_GRID_POINTS
    from wsssbed.results.store import row_budget

    axes = {name: list(range(1_000)) for name in ("a", "b", "c")}
    runs = pa.table({"run_id": ["x", "y"], "grid": [json.dumps(axes), json.dumps({"t": [0.1]})],
                     "n_images": [10, 10]})  # fmt: skip
    assert row_budget(runs, "sweeps") == MAX_GRID_POINTS + 1 + MAX_GRID_POINTS
    assert row_budget(runs, "per_image") == (MAX_GRID_POINTS + 1 + MAX_GRID_POINTS) * 256 * 10


def test_a_pipe_in_place_of_a_table_is_refused_not_read(tmp_path):
    """A FIFO named sweeps.parquet would block the read forever (red team, last round)."""
    append_run(tmp_path, _tables("done"))
    (tmp_path / "sweeps.parquet").unlink()
    os.mkfifo(tmp_path / "sweeps.parquet")
    with pytest.raises(InputError, match="not a regular file") as info:
        read_table(tmp_path, "sweeps")
    assert str(tmp_path / "sweeps.parquet") in str(info.value)


def test_a_footer_claiming_more_metadata_than_a_results_table_has_is_refused(tmp_path):
    """The footer is parsed in full before any check of it (a file of a million one-row
    groups has one of hundreds of MB), so its declared length is checked first."""
    append_run(tmp_path, _tables("done"))
    path = tmp_path / "sweeps.parquet"
    data = path.read_bytes()
    path.write_bytes(data[:-8] + (1 << 30).to_bytes(4, "little") + b"PAR1")
    with pytest.raises(InputError, match="footer declares 1,073,741,824 bytes of metadata"):
        read_table(tmp_path, "sweeps")
    path.write_bytes(data)
    assert len(read_table(tmp_path, "sweeps")) == 50


def test_the_memory_budget_counts_the_copies_a_read_holds(tmp_path, monkeypatch):
    """A table is refused when three copies of its decoded size (Arrow's, the committed
    rows, pandas') exceed the budget, though one copy would fit (a crafted 18M-row table
    within one copy's budget peaked at 8.4 GB against 6.3)."""
    import re

    from wsssbed.results import store

    def attempt(budget: int) -> tuple[str, int] | None:
        """(the refused table's file name, its decoded bytes) under `budget`, or None when
        the read passes."""
        monkeypatch.setattr(store, "memory_budget", lambda: budget)
        try:
            read_table(tmp_path, "sweeps")
        except InputError as error:
            found = re.search(r"while read \(3 copies of its ([\d,]+) decoded", str(error))
            return error.path.name, int(found[1].replace(",", ""))
        return None

    append_run(tmp_path, _tables("done", rows=900))
    last, refusal = None, attempt(0)
    while refusal is not None:  # raise the budget to what each refused check needs
        last, refusal = refusal, attempt(3 * refusal[1])
    table, decoded = last
    assert table == "sweeps.parquet" and decoded >= 900 * 8 * 3  # 3 columns of 8 bytes
    assert attempt(2 * decoded)[0] == table  # one copy fits, three do not
    assert attempt(3 * decoded) is None


def test_a_lock_link_is_refused_and_its_target_never_created(tmp_path):
    """`.lock` is opened without following a link: one planted in a stranger's results
    folder would otherwise create (and lock) a file anywhere."""
    append_run(tmp_path, _tables("done"))
    target = tmp_path.parent / f"{tmp_path.name}-created-by-lock"
    (tmp_path / ".lock").unlink()
    (tmp_path / ".lock").symlink_to(target)
    for call in (lambda: append_run(tmp_path, _tables("more")), lambda: repair(tmp_path)):
        with pytest.raises(InputError, match="lock file cannot be opened") as info:
            call()
        assert str(tmp_path / ".lock") in str(info.value)
        assert not target.exists() and not os.path.lexists(target)
    (tmp_path / ".lock").unlink()
    (tmp_path / ".lock").mkdir()  # not a regular file
    with pytest.raises(InputError, match="lock file"):
        append_run(tmp_path, _tables("more"))
    assert list(read_table(tmp_path, "runs").run_id) == ["done"]


def test_tables_are_conformed_to_the_schema_naming_the_column(tmp_path):
    append_run(tmp_path, _tables("done"))
    runs = pq.read_table(tmp_path / "runs.parquet")
    sweeps = pq.read_table(tmp_path / "sweeps.parquet")
    miou = sweeps.schema.get_field_index("miou")
    pq.write_table(sweeps.set_column(miou, "miou", pa.repeat(pa.scalar("0.25"), 50)),
                   tmp_path / "sweeps.parquet")  # fmt: skip
    assert read_table(tmp_path, "sweeps").miou.tolist() == [0.25] * 50  # text numbers: read
    pq.write_table(sweeps.set_column(miou, "miou", pa.repeat(pa.scalar("abc"), 50)),
                   tmp_path / "sweeps.parquet")  # fmt: skip
    with pytest.raises(InputError, match="column `miou` holds string values that are not double"):
        read_table(tmp_path, "sweeps")
    pq.write_table(runs.drop(["run_id"]), tmp_path / "runs.parquet")
    with pytest.raises(InputError, match="no `run_id` column") as info:
        read_table(tmp_path, "sweeps")
    assert str(tmp_path / "runs.parquet") in str(info.value)


def test_a_run_whose_every_point_is_nan_has_its_first_point_as_best(tmp_path):
    tables = _tables("nan")
    tables["sweeps"]["miou"] = float("nan")
    append_run(tmp_path, tables)
    append_run(tmp_path, _tables("fine"))
    best = best_points(tmp_path).set_index("run_id")
    assert best.loc["nan", "point"] == 0 and best.loc["fine", "point"] == 0
    assert best_row(read_table(tmp_path, "sweeps").query("run_id == 'nan'")).point == 0
