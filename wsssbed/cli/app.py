"""The `wsssbed` Typer application and its sub-groups (commands live in sibling modules)."""

from __future__ import annotations

import typer

from wsssbed import __version__
from wsssbed.cli.common import out

app = typer.Typer(
    help="wsssbed: a reproducible testbed for weakly-supervised semantic segmentation.",
    no_args_is_help=True,
    add_completion=False,
)
datasets_app = typer.Typer(
    help="List the datasets, check a local copy, convert COCO.", invoke_without_command=True
)
app.add_typer(datasets_app, name="datasets")
results_app = typer.Typer(help="Query the Parquet results.", no_args_is_help=True)
app.add_typer(results_app, name="results")


def _version(value: bool) -> None:
    if value:
        out.print(f"wsssbed {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Show the version and exit."
    ),
) -> None:
    """wsssbed: pinned maps, exact single-pass threshold sweeps, Parquet results."""
