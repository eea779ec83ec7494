"""How a published report shows the local paths a run recorded.

Runs record where their inputs were (data root, maps, split file, the command line) so
that the user can find them again; the Parquet tables keep them whole. A site is for
other people, so by default each path shows only its last component (`…/VOC2012`):
enough to tell inputs apart, nothing of the user's folder tree or home folder. The
user may instead name a root, below which paths are shown relative to it, or keep the
paths whole.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path, PurePath

REDACTED = "\u2026/"  # what stands for the hidden part of a path
PATH_FIELDS = ("data_root", "activation", "saliency", "predictions", "split_file", "labels")


@dataclass(frozen=True)
class PathDisplay:
    """The rule (see the module docstring).

    Attributes:
        show: keep every path whole.
        root: show paths below this folder relative to it (others as redacted).
    """

    show: bool = False
    root: Path | None = None

    def path(self, value: str) -> str:
        """One recorded path as the site shows it."""
        if self.show or not value:
            return value
        path = PurePath(os.path.normpath(os.path.expanduser(value)))
        if self.root is not None and path.is_absolute():
            for root in {self.root.expanduser().absolute(), self.root.expanduser().resolve()}:
                if path.is_relative_to(root):
                    return str(path.relative_to(root))
        return REDACTED + path.name if path.name else REDACTED

    def field(self, name: str, value: str) -> str:
        """A provenance field's text: paths (and the command line's path arguments) by the
        rule; other fields as they are. `labels` is a path unless it is `masks`."""
        if name == "command":
            return self.command(value)
        if name in PATH_FIELDS and not (name == "labels" and value == "masks"):
            return self.path(value)
        return value

    def command(self, text: str) -> str:
        """A recorded command line (a JSON list of arguments): arguments that are paths
        (holding a separator, or `~`), also as `--option=PATH`, by the rule."""
        if self.show:
            return text
        try:
            arguments = json.loads(text)
        except json.JSONDecodeError:
            return self.path(text)
        if not isinstance(arguments, list):
            return self.path(text)
        return json.dumps([self._argument(str(a)) for a in arguments], ensure_ascii=False)

    def _argument(self, argument: str) -> str:
        option, equals, value = argument.partition("=")
        if equals and option.startswith("--"):
            return f"{option}={self._argument(value)}"
        if os.sep in argument or "/" in argument or argument.startswith("~"):
            return self.path(argument)
        return argument

    @property
    def note(self) -> str:
        """One sentence for the page: how its paths are shown."""
        if self.show:
            return "Local paths are shown as recorded."
        if self.root is not None:
            return (
                "Local paths are shown relative to the folder the site was rendered for; "
                f"others by their last component ({REDACTED}name)."
            )
        return (
            f"Local paths are shown by their last component ({REDACTED}name); the results "
            "tables hold them whole."
        )
