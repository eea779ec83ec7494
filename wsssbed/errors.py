"""Errors that reach users: each names the file (when there is one) and the problem."""

from __future__ import annotations

from pathlib import Path


class WsssbedError(Exception):
    """Base class for every error wsssbed reports to a user (non-zero exit, no traceback)."""


class InputError(WsssbedError):
    """Bad user input: a missing, corrupt, mis-shaped or out-of-range file or argument.

    Args:
        problem: what is wrong, in a sentence a user can act on.
        path: the offending file or folder, when there is one.
    """

    def __init__(self, problem: str, path: str | Path | None = None) -> None:
        self.problem = problem
        self.path = Path(path) if path is not None else None
        super().__init__(f"{self.path}: {problem}" if self.path is not None else problem)


class GroundTruthWarning(UserWarning):
    """The ground truth a run scored is probably not what was meant (most of it void
    while a class never occurs, a split list that is not the official one): the run is
    stored, and the CLI prints the warning after its results, where it is seen."""


class UnofficialSplitWarning(GroundTruthWarning):
    """A split list under an official name that is not the official list."""


class ColourImageError(InputError):
    """An RGB image where single-channel class ids were expected (colour-coded masks);
    readers that know the dataset's palette turn it into a message saying how to decode."""
