"""`wsssbed results export`: numbers equal to `read_results`, booktabs LaTeX that compiles
where a TeX engine is installed, Markdown and CSV, bold best values."""

from __future__ import annotations

import io
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import run_cli, sweep_sample

import wsssbed
from wsssbed.datasets import get_dataset
from wsssbed.eval.summary import MIOU_CONVENTIONS
from wsssbed.report.sensitivity import run_label


@pytest.fixture(scope="module")
def store(sample_root, tmp_path_factory):
    """Sample sweeps: bg-threshold on train and val, power-bg, a 2-D saliency grid."""
    return sweep_sample(sample_root, tmp_path_factory.mktemp("results"), (
        ("--split", "train"),
        ("--split", "val"),
        ("--split", "train", "--generator", "power-bg", "--alphas", "1:16:1"),
        ("--split", "train", "--generator", "saliency-rule", "--saliency",
         sample_root / "saliency/sample-sal", "--sal-thresholds", "0.1:0.5:0.1",
         "--thresholds", "0:0.6:0.1"),
    ))  # fmt: skip


def _csv(store, *args) -> pd.DataFrame:
    result = run_cli("results", "export", "--results", store, "--format", "csv", *args)
    assert result.exit_code == 0, result.stderr
    return pd.read_csv(io.StringIO(result.stdout), dtype={"Threshold": str, "Alpha": str})


@pytest.mark.parametrize("convention", MIOU_CONVENTIONS)
def test_numbers_equal_read_results(store, convention):
    tables = wsssbed.read_results(store)
    shown = _csv(store, "--convention", convention, "--digits", "6")
    header = "mIoU (%)" if convention == "miou" else f"mIoU [{convention}] (%)"
    assert len(shown) == len(tables.runs)
    spec = get_dataset("voc2012")
    class_columns = [c for c in shown.columns if c.endswith(" IoU (%)")]
    assert class_columns == [f"{n} IoU (%)" for n in spec.classes if f"{n} IoU (%)" in shown]
    rows = shown.set_index(["Method", "Split"])
    for _, run in tables.runs.iterrows():
        row = rows.loc[(run_label(run), run.split)]
        sweeps = tables.sweeps[tables.sweeps.run_id == run.run_id].sort_values("point")
        best = sweeps.iloc[int(np.argmax(sweeps[convention].to_numpy()))]  # first on ties
        assert row[header] == pytest.approx(100 * best[convention], abs=5e-7)
        if pd.notna(best.bf_f):
            assert row["BF (%)"] == pytest.approx(100 * best.bf_f, abs=5e-7)
        else:
            assert pd.isna(row["BF (%)"])
        for axis, column in (("threshold", "Threshold"), ("alpha", "Alpha")):
            if pd.notna(best[axis]):
                assert float(row[column]) == best[axis]
        classes = tables.per_class[(tables.per_class.run_id == run.run_id)
                                   & (tables.per_class.point == best.point)]  # fmt: skip
        for _, c in classes.iterrows():
            column = f"{c.class_name} IoU (%)"
            if c.union == 0:
                assert column not in shown or pd.isna(row[column])
            else:
                assert row[column] == pytest.approx(100 * c.iou, abs=5e-7)


def test_markdown_rounds_bolds_the_best_and_names_the_unit(store):
    tables = wsssbed.read_results(store)
    result = run_cli("results", "export", "--results", store, "--format", "markdown")
    assert result.exit_code == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if line.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in lines[2:]]
    assert len(rows) == len(tables.runs)
    assert header[:3] == ["Method", "Split", "Saliency thr."]
    assert "mIoU (%)" in header and "BF (%)" in header and "background IoU (%)" in header
    column = header.index("mIoU (%)")
    best = tables.sweeps.groupby("run_id").miou.max()
    expected = [f"{100 * best[r]:.1f}" for r in tables.runs.run_id]
    assert [cell.strip("*") for cell in (r[column] for r in rows)] == expected
    top = max(float(v) for v in expected)
    for row, value in zip(rows, expected, strict=True):
        assert row[column].startswith("**") == (float(value) == top)
        assert "%" not in "".join(row)  # the unit is in the header only
    assert "Mean IoU over classes with a non-zero union" in result.stdout  # the convention


def _latex(store, *args) -> str:
    result = run_cli("results", "export", "--results", store, *args)
    assert result.exit_code == 0, result.stderr
    return result.stdout


def test_latex_has_booktabs_rules_and_bold_maxima(store):
    text = _latex(store, "--method", "sample-cam", "--no-classes")
    assert text.count("\\toprule") == text.count("\\midrule") == text.count("\\bottomrule") == 1
    assert "mIoU (\\%)" in text and "BF (\\%)" in text
    body = text[text.index("\\midrule") : text.index("\\bottomrule")].splitlines()[1:]
    cells = [[c.strip() for c in line.rstrip("\\ ").split("&")] for line in body]
    assert [c[1] for c in cells] == ["train", "val"]  # --method: the runs of that name
    scores = [float(re.sub(r"\\textbf\{(.*)\}", r"\1", c[3])) for c in cells]
    bold = [c[3].startswith("\\textbf") for c in cells]
    assert bold == [s == max(scores) for s in scores]


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="no pdflatex (texlive) here")
def test_latex_compiles_with_a_real_tex_engine(store, tmp_path):
    table = _latex(store, "--method", "sample-cam + sample-sal (saliency-rule)", "--method",
                   "sample-cam")  # fmt: skip
    (tmp_path / "table.tex").write_text(table)
    (tmp_path / "paper.tex").write_text(
        "\\documentclass{article}\n\\usepackage{booktabs}\n\\usepackage{graphicx}\n"
        "\\begin{document}\n\\noindent\\resizebox{\\textwidth}{!}{\\input{table.tex}}\n\\end{document}\n"
    )
    done = subprocess.run(
        ["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "paper.tex"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:]
    assert (tmp_path / "paper.pdf").read_bytes().startswith(b"%PDF")
    assert "Overfull" not in done.stdout and "Undefined control sequence" not in done.stdout


def test_rows_follow_the_order_given(store):
    shown = _csv(store, "--method", "sample-cam (power-bg)", "--method", "sample-cam")
    assert shown.Method.tolist() == ["sample-cam (power-bg)", "sample-cam", "sample-cam"]
    assert shown.Split.tolist() == ["train", "train", "val"]


def test_export_errors(store):
    bad = run_cli("results", "export", "--results", store, "--convention", "miouu")
    assert bad.exit_code == 2 and all(c in bad.stderr for c in MIOU_CONVENTIONS)
    none = run_cli("results", "export", "--results", store, "--method", "nope")
    assert none.exit_code == 2 and "'nope'" in none.stderr
    digits = run_cli("results", "export", "--results", store, "--digits", "9")
    assert digits.exit_code == 2 and "--digits" in digits.stderr
    fmt = run_cli("results", "export", "--results", store, "--format", "docx")
    assert fmt.exit_code == 2 and "latex, markdown, csv" in fmt.stderr


def test_the_readme_shows_what_the_command_prints():
    root = Path(__file__).resolve().parents[1]
    readme = (root / "README.md").read_text()
    block = re.search(r"```latex\n(.*?)```", readme, re.S)[1]
    shown = _latex(root / "leaderboard/results", "--method", "sample-cam", "--method",
                   "sample-cam (power-bg)", "--no-classes")  # fmt: skip
    assert block == shown


def test_a_name_ending_in_its_generator_is_not_suffixed_twice():
    run = pd.Series({"method": "mycam (power-bg)", "activation": None, "predictions": None,
                     "saliency": None, "generator": "power-bg", "run_id": "r"})  # fmt: skip
    assert run_label(run) == "mycam (power-bg)"
    assert run_label(run.copy().replace({"mycam (power-bg)": "mycam"})) == "mycam (power-bg)"
