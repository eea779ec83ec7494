"""The `wsssbed` Typer application and its sub-groups (commands live in sibling modules)."""

from __future__ import annotations

import sys

import typer

from wsssbed import __version__
from wsssbed.cli import common
from wsssbed.cli.common import err, out


class GuardedTyper(typer.Typer):
    """The top-level guard: an exception no command turned into a message (a bug, or a
    failure nobody foresaw) becomes one line and exit 2; `--debug` shows the traceback."""

    def __call__(self, *args, **kwargs):
        try:
            return super().__call__(*args, **kwargs)
        except KeyboardInterrupt:
            err.print("interrupted", style="yellow")
            sys.exit(130)
        except Exception as error:
            if common.DEBUG:
                raise
            err.print(common.unexpected(error), highlight=False, soft_wrap=True, markup=False)
            sys.exit(2)


app = GuardedTyper(
    help="wsssbed: a reproducible testbed for weakly-supervised semantic segmentation.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
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
    debug: bool = typer.Option(
        False, "--debug", help="Show the Python traceback of an unexpected error."
    ),
) -> None:
    """wsssbed: pinned maps, exact single-pass threshold sweeps, Parquet results."""
    common.DEBUG = debug
