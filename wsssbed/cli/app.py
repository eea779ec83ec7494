"""The `wsssbed` Typer application, its sub-groups and its error reporting (commands live
in sibling modules): a library error becomes one red line and exit 2, an unforeseen one a
line naming it as a bug."""

from __future__ import annotations

import inspect
import re
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import typer
from rich.markup import escape
from typer.core import TyperCommand, TyperGroup

from wsssbed import __version__
from wsssbed.cli.common import err, out
from wsssbed.errors import WsssbedError

if TYPE_CHECKING:  # typer vendors click (typer._click) from 0.29; click itself is not a dependency
    from typer.core import TyperArgument, TyperOption

DEBUG = False  # set by `wsssbed --debug`: unexpected errors keep their traceback
NOTHING_WRITTEN = "nothing was written"
_kept = NOTHING_WRITTEN  # what an interrupted command leaves behind (`kept_on_interrupt`)


INTERRUPTED = 130  # the exit code of a command stopped by Ctrl-C (128 + SIGINT)


def _say_interrupted() -> None:
    err.print(f"interrupted; {_kept}", style="yellow", highlight=False, soft_wrap=True)


def kept_on_interrupt(note: str) -> None:
    """Say what this command leaves behind if it is interrupted (Ctrl-C prints
    `interrupted; <note>`): a command that keeps partial output (whole files a second run
    skips, a download the next one resumes) calls it before it starts writing."""
    global _kept
    _kept = note


def unexpected(error: Exception) -> str:
    """One line for an error no command foresaw."""
    return (
        f"error: unexpected {type(error).__name__}: {error} "
        "(this is a bug in wsssbed or a case it does not handle; run with --debug for the "
        "traceback and report it)"
    )


@contextmanager
def reported_errors() -> Iterator[None]:
    """A `WsssbedError` or an OS error (disk full, no permission) becomes one red line on
    stderr and exit code 2; library warnings are printed as yellow lines."""
    from wsssbed.io.outputs import os_error_message

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        try:
            yield
        except (WsssbedError, OSError) as error:
            if DEBUG and isinstance(error, OSError):
                raise
            _print_warnings(caught)
            text = os_error_message(error) if isinstance(error, OSError) else str(error)
            message = as_options(text)
            err.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
    _print_warnings(caught)


def as_options(message: str) -> str:
    """A library message in the CLI's words: each `parameter` that is also an option of a
    command (library keywords are the options with underscores) becomes `--parameter`
    (`data_root` -> `--data-root`); other backticked words stay."""
    names = {
        name
        for command in app.registered_commands
        for name in inspect.signature(command.callback).parameters
    }

    def option(match: re.Match) -> str:
        name = match[1]
        return "--" + name.replace("_", "-") if name in names else match[0]

    return re.sub(r"`([a-z][a-z_]*)`", option, message)


def _print_warnings(caught: list[warnings.WarningMessage]) -> None:
    for warning in caught:
        if issubclass(warning.category, UserWarning):
            err.print(
                f"[bold yellow]warning:[/] {escape(as_options(str(warning.message)))}",
                highlight=False,
                soft_wrap=True,
            )


class _FlagsTakeNoValue:
    """Typer 0.29's help prints a type beside every flag (`--json <bool>`), which reads as
    if the flag took a value; flags get an empty metavar, so only their names show."""

    def get_params(self, ctx: typer.Context) -> list[TyperOption | TyperArgument]:
        params = super().get_params(ctx)
        for param in params:
            if getattr(param, "is_flag", False) and param.metavar is None:
                param.metavar = ""
        return params


class Command(_FlagsTakeNoValue, TyperCommand):
    """A command whose flags show no value type in --help."""


class Group(_FlagsTakeNoValue, TyperGroup):
    """A command group whose flags show no value type in --help."""


class WsssbedTyper(typer.Typer):
    """A Typer application whose commands and groups are `Command` and `Group`."""

    def __init__(self, **kwargs) -> None:
        super().__init__(cls=Group, **kwargs)

    def command(self, *args, **kwargs):
        kwargs.setdefault("cls", Command)
        return super().command(*args, **kwargs)


class GuardedTyper(WsssbedTyper):
    """The top-level guard: an exception no command turned into a message (a bug, or a
    failure nobody foresaw) becomes one line and exit 2; `--debug` shows the traceback.
    Ctrl-C exits 130 saying what was kept (`kept_on_interrupt`; by default nothing: every
    command writes its output whole or not at all)."""

    def __call__(self, *args, **kwargs):
        try:
            return super().__call__(*args, **kwargs)
        except SystemExit as done:  # Typer turns Ctrl-C into a silent exit 130
            if done.code == INTERRUPTED:
                _say_interrupted()
            raise
        except KeyboardInterrupt:  # one that reached past Typer
            _say_interrupted()
            sys.exit(INTERRUPTED)
        except Exception as error:
            if DEBUG:
                raise
            err.print(unexpected(error), highlight=False, soft_wrap=True, markup=False)
            sys.exit(2)


app = GuardedTyper(
    help="wsssbed: a reproducible testbed for weakly-supervised semantic segmentation.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
datasets_app = WsssbedTyper(
    help="List the datasets, check a local copy, convert COCO.", invoke_without_command=True
)
app.add_typer(datasets_app, name="datasets")
results_app = WsssbedTyper(help="Query the Parquet results.", no_args_is_help=True)
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
    global DEBUG
    DEBUG = debug
    kept_on_interrupt(NOTHING_WRITTEN)
