"""Help texts: flags without a value type, named defaults, defaults that differ explained."""

from __future__ import annotations

import json
from pathlib import Path

import click
import typer
from conftest import run_cli
from typer.testing import CliRunner

from wsssbed.cli import app
from wsssbed.datasets import builtin_datasets
from wsssbed.embedded.sample import DEFAULT_SPLIT, SPLITS

ROOT = Path(__file__).resolve().parents[1]


def _help(*command: str) -> str:
    result = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    return " ".join(result.output.replace("│", " ").split())  # one line, no panel borders


def _commands(group: click.Group, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = [path]
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            found += _commands(command, (*path, name))
        else:
            found.append((*path, name))
    return found


def test_no_flag_shows_a_value_type():
    commands = _commands(typer.main.get_command(app))
    assert len(commands) > 15
    for command in commands:
        text = _help(*command)
        assert "<bool>" not in text, command
        assert "--help Show this message" in text, command  # flags still listed, bare
    assert "--threshold <float>" in _help("pseudo-labels")  # options with values keep it


def test_split_help_names_every_default():
    for command in (("sweep",), ("evaluate",), ("pseudo-labels",), ("datasets", "check")):
        text = _help(*command)
        for spec in builtin_datasets():
            split, names = spec.default_split, text.split(f"{spec.default_split} (")
            assert len(names) > 1 and spec.name in names[1].split(")")[0], (command, split)
    assert f"{DEFAULT_SPLIT} on the embedded sample" in _help("sweep")


def test_datasets_marks_the_default_split(tmp_path):
    shown = run_cli("datasets")
    listed = json.loads(run_cli("datasets", "--json").stdout)
    for spec in builtin_datasets():
        assert f"{spec.default_split}* {spec.splits[spec.default_split]:,}" in shown.stdout
        (row,) = [r for r in listed if r["name"] == spec.name]
        assert row["default_split"] == spec.default_split


def test_ignore_label_helps_say_why_the_defaults_differ():
    from wsssbed.protocol import build_protocol

    command = typer.main.get_command(app)
    sweep = {p.name: p for p in command.commands["sweep"].params}
    labels = {p.name: p for p in command.commands["pseudo-labels"].params}
    assert sweep["ignore_label"].default is None  # the pipeline's, else the protocol's
    assert build_protocol(generator="saliency-rule").ignore_label is False
    assert labels["ignore_label"].default is True
    assert "pseudo-labels defaults it on" in _help("sweep")
    assert "sweep defaults it off" in _help("pseudo-labels")


def test_threshold_says_it_is_required_and_has_no_default(sample_root, tmp_path):
    text = _help("pseudo-labels")
    entry = text[text.index("--threshold") : text.index("--alpha")]
    assert "required" in entry and "no default" in entry and "[default:" not in entry
    out = tmp_path / "labels"
    result = run_cli("pseudo-labels", "--generator", "bg-threshold", "--out", out)
    assert result.exit_code == 2 and "--threshold" in result.stderr and not out.exists()


def test_readme_and_docs_count_what_the_code_has():
    from wsssbed.results.store import TABLES

    readme = " ".join((ROOT / "README.md").read_text().split())
    total = sum(SPLITS.values())
    assert f"{total} synthetic images" in readme
    assert f"{SPLITS[DEFAULT_SPLIT]} {DEFAULT_SPLIT}" in readme  # what a bare sweep scores
    results = " ".join((ROOT / "docs/results.md").read_text().split())
    words = {3: "three", 4: "four", 5: "five"}
    assert f"{words[len(TABLES)]} Parquet tables" in results
