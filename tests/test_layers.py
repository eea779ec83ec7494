"""The package layout keeps its dependencies one way (docs/architecture.md).

Every module of wsssbed is parsed and each of its imports of wsssbed (at the top, in a
function, or `importlib.import_module("wsssbed...")`) is checked against the table of
layers below: a unit may import itself and units of lower layers only. Imports under
`if TYPE_CHECKING:` are annotations, not dependencies, and are not counted. The package
door `wsssbed` may be imported by any unit for `__version__` only.
"""

from __future__ import annotations

import ast
import pkgutil
from pathlib import Path

import pytest

import wsssbed

# Lowest first. A unit is a package or a root module; units on one row are siblings and
# may not import each other.
LAYERS: list[tuple[str, ...]] = [
    ("wsssbed.errors",),
    ("wsssbed.registry", "wsssbed.grids"),
    ("wsssbed.io",),
    ("wsssbed.datasets",),
    ("wsssbed.saliency",),
    ("wsssbed.activation",),
    ("wsssbed.models", "wsssbed.embedded"),
    ("wsssbed.eval",),
    ("wsssbed.protocol",),
    ("wsssbed.generators",),
    ("wsssbed.distributed",),
    ("wsssbed.results",),
    ("wsssbed.catalogue",),
    ("wsssbed.report",),
    ("wsssbed.api", "wsssbed.metrics"),
    ("wsssbed.cli",),
]
LEVEL = {unit: level for level, row in enumerate(LAYERS) for unit in row}
ROOT = Path(wsssbed.__file__).parent
MAX_ROOT_MODULES = 8


def modules() -> list[str]:
    names = ["wsssbed"]
    for info in pkgutil.walk_packages([str(ROOT)], prefix="wsssbed."):
        names.append(info.name)
    return sorted(names)


def unit_of(module: str) -> str:
    parts = module.split(".")
    for n in range(len(parts), 1, -1):
        prefix = ".".join(parts[:n])
        if prefix in LEVEL:
            return prefix
    if module == "wsssbed":
        return "wsssbed"
    raise AssertionError(f"{module} belongs to no layer: add its package to LAYERS")


def source_of(module: str) -> Path:
    path = ROOT.joinpath(*module.split(".")[1:])
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


def is_module(name: str) -> bool:
    return name.split(".")[0] == "wsssbed" and source_of(name).exists()


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    skipped = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped.update(id(child) for stmt in node.body for child in ast.walk(stmt))
    return skipped


def imports_of(module: str) -> list[tuple[str, list[str], bool]]:
    """(imported module, names, at module level) for each wsssbed import of `module`."""
    path = source_of(module)
    tree = ast.parse(path.read_text(), str(path))
    skipped = _type_checking_nodes(tree)
    top = {id(node) for node in tree.body}
    found = []
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base]) if base else ".".join(anchor)
            names = [alias.name for alias in node.names]
            if base == "wsssbed":
                targets = [(base, names)]
            else:  # `from wsssbed.x import y` imports the submodule y when there is one
                targets = [
                    (f"{base}.{name}", []) if is_module(f"{base}.{name}") else (base, [name])
                    for name in names
                ]
            for target, target_names in targets:
                found.append((target, target_names, id(node) in top))
        elif isinstance(node, ast.Import):
            found.extend((alias.name, [], id(node) in top) for alias in node.names)
        elif (
            isinstance(node, ast.Call)
            and ast.unparse(node.func).endswith("import_module")
            and node.args
            and isinstance(node.args[0], ast.Constant)
        ):
            found.append((node.args[0].value, [], False))
    return [item for item in found if item[0].split(".")[0] == "wsssbed"]


def violations(module: str, imports: list[tuple[str, list[str], bool]]) -> list[str]:
    """What in `imports` breaks the layer table, as messages."""
    source = unit_of(module)
    found = []
    for target, names, _ in imports:
        if target == "wsssbed":
            if module != "wsssbed" and names != ["__version__"]:
                found.append(f"{module} imports {names} from the package door")
            continue
        destination = unit_of(target)
        if source == "wsssbed" or destination == source:
            continue  # the door re-exports lazily from every layer
        if LEVEL[destination] >= LEVEL[source]:
            found.append(
                f"{module} imports {target}: {source} (layer {LEVEL[source]}) may not import "
                f"{destination} (layer {LEVEL[destination]})"
            )
    return found


@pytest.mark.parametrize("module", modules())
def test_imports_run_one_way(module):
    assert violations(module, imports_of(module)) == []


def test_no_import_cycles_at_module_level():
    graph = {
        module: {t for t, _, top in imports_of(module) if top and t != "wsssbed"}
        for module in modules()
    }
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in graph.get(node, ()):
            if state.get(nxt) == 1:
                cycle = path[path.index(nxt) :] if nxt in path else path
                raise AssertionError(" -> ".join([*cycle, nxt]))
            if nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for module in graph:
        if module not in state:
            visit(module, [module])


def test_every_package_is_in_the_table_and_the_root_is_small():
    root_modules = [p.stem for p in ROOT.glob("*.py") if p.stem != "__init__"]
    assert len(root_modules) <= MAX_ROOT_MODULES, sorted(root_modules)
    for entry in ROOT.iterdir():
        if entry.is_dir() and (entry / "__init__.py").exists():
            assert f"wsssbed.{entry.name}" in LEVEL, entry.name
    for stem in root_modules:
        assert f"wsssbed.{stem}" in LEVEL, stem


def test_the_checker_sees_wrong_way_imports():
    """The table is enforced: upward and sideways imports are reported, lazy ones too."""
    assert violations("wsssbed.io.imageio", [("wsssbed.eval.loop", [], False)])
    assert violations("wsssbed.models.sam", [("wsssbed.embedded.sample", [], True)])
    assert violations("wsssbed.eval.job", [("wsssbed", ["sweep"], True)])
    assert not violations("wsssbed.eval.job", [("wsssbed.io.imageio", [], True)])
    lazy = imports_of("wsssbed.cli.sweep")
    assert any(not top and target.startswith("wsssbed.api") for target, _, top in lazy)
