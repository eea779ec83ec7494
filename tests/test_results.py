"""The Parquet store: atomic appends, concurrent writers, committed rows only."""

from __future__ import annotations

import multiprocessing

import pandas as pd

from wsssbed.results.store import append_run, read_table


def _tables(run_id: str, rows: int = 50):
    """Frames with a few columns set; the store fills the rest of the schema with nulls."""
    return {
        "runs": pd.DataFrame({"run_id": [run_id], "wall_time_s": [1.0]}),
        "sweeps": pd.DataFrame({"run_id": run_id, "point": range(rows), "miou": 0.5}),
        "per_class": pd.DataFrame({"run_id": run_id, "point": range(rows), "class_id": 1}),
    }


def test_schema_is_enforced(tmp_path):
    import pytest

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
