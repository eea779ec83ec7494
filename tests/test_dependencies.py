"""Every third-party module wsssbed imports is a declared requirement, and the CLI starts
with the core requirements alone.

A module that another package happens to install (click came with Ray and older typer;
typer 0.29 vendors its own copy) works in the test environment and fails on a fresh
machine's `pip install -e .`, which the README's first command is. Requirements are read
from pyproject.toml, modules mapped to their distributions by `importlib.metadata`.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, packages_distributions, requires
from pathlib import Path

from wsssbed.io.configio import read_toml

ROOT = Path(__file__).resolve().parents[1]
PROJECT = read_toml(ROOT / "pyproject.toml", "project file")["project"]


def _name(requirement: str) -> str:
    """The normalised distribution name of a requirement string (PEP 503)."""
    return re.sub(r"[-_.]+", "-", re.split(r"[\s;<>=!~\[(]", requirement, maxsplit=1)[0]).lower()


def _distributions(module: str) -> set[str]:
    """Distributions providing top-level `module` (its own name when none is installed)."""
    return {_name(d) for d in packages_distributions().get(module, [module])}


def _third_party(modules) -> set[str]:
    return {m for m in modules if m not in sys.stdlib_module_names and m != "wsssbed"}


def _imported_modules() -> dict[str, str]:
    """Top-level third-party modules any file of the package imports -> one such file."""
    found = {}
    for path in sorted((ROOT / "wsssbed").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                names = [node.module]
            else:
                continue
            for top in _third_party(name.split(".")[0] for name in names):
                found.setdefault(top, str(path.relative_to(ROOT)))
    return found


def _closure(names: set[str]) -> set[str]:
    """`names` and everything their installed metadata requires without an extra."""
    seen, todo = set(), list(names)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            needs = requires(name) or []
        except PackageNotFoundError:
            continue
        todo += [_name(r) for r in needs if "extra ==" not in r]
    return seen


def test_every_imported_module_is_declared():
    declared = {_name(r) for r in PROJECT["dependencies"]}
    declared |= {_name(r) for extra in PROJECT["optional-dependencies"].values() for r in extra}
    undeclared = {
        module: where
        for module, where in _imported_modules().items()
        if not _distributions(module) & declared
    }
    assert not undeclared, f"imported but not declared in pyproject.toml: {undeclared}"


def test_the_cli_starts_on_the_core_requirements_alone():
    """What `import wsssbed.cli` loads (every command's module) comes from the core
    requirements or what they require: no extra, and nothing merely installed beside."""
    loaded = subprocess.run(
        [sys.executable, "-c", "import sys, wsssbed.cli; print(*sys.modules)"],
        capture_output=True, text=True, check=True, cwd=ROOT,
    ).stdout.split()  # fmt: skip
    core = _closure({_name(r) for r in PROJECT["dependencies"] if "python_version" not in r})
    modules = _third_party({m.split(".")[0] for m in loaded if not m.startswith("__")})
    modules -= {"_distutils_hack"}  # setuptools' import hook
    outside = {m: sorted(_distributions(m)) for m in modules if not _distributions(m) & core}
    assert not outside, f"the CLI imports modules outside the core requirements: {outside}"
