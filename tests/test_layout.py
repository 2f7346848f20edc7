"""The package's layout, read from its own imports: folders in layers, no import circle, a small root."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "neuralct"

#: Each folder's layer, lowest first: a module may import from its own folder and from lower layers only.
#: The root's three modules are the floor; ``__init__`` and ``__main__`` are the public face, above all
#: but the command line, which reads the version from it.
ROOT_MODULES = {"errors", "units", "io"}
LAYERS = {
    "root": 0,
    "flows": 1,
    "data": 1,
    "model": 2,
    "training": 3,
    "analysis": 3,
    "md": 3,
    "export": 3,
    "toys": 4,
    "sampling": 5,
    "workflows": 6,
    "cli": 7,
}
PUBLIC_FACE = {"neuralct", "neuralct.__main__"}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every neuralct module ``path`` imports, at the top or inside a function (absolute names)."""
    module = _module_name(path)
    return _imports_of(path.read_text(), module if path.name == "__init__.py" else module.rpartition(".")[0])


def _imports_of(source: str, package: str) -> set[str]:
    """The neuralct modules imported by ``source``, a module of ``package``."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.split(".")[0] == "neuralct")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "neuralct":
                continue
            for alias in node.names:
                candidate = f"{target}.{alias.name}"
                is_module = (PACKAGE.parent / candidate.replace(".", "/")).with_suffix(".py").exists() or (
                    PACKAGE.parent / candidate.replace(".", "/") / "__init__.py"
                ).exists()
                found.add(candidate if is_module else target)
    return found


def _graph() -> dict[str, set[str]]:
    return {_module_name(path): _imports(path) for path in PACKAGE.rglob("*.py")}


def _folder(module: str) -> str:
    folder = module.split(".")[1]
    return "root" if folder in ROOT_MODULES else folder


def test_every_folder_and_root_module_has_a_layer():
    names = {
        path.stem if path.is_file() else path.name
        for path in PACKAGE.iterdir()
        if (path.suffix == ".py" or (path / "__init__.py").exists())
    }
    assert names - {"__init__", "__main__"} == set(LAYERS) - {"root"} | ROOT_MODULES


def test_every_package_folder_is_installed():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11 on

    listed = set(tomllib.loads((PACKAGE.parent / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    folders = {_module_name(path) for path in PACKAGE.rglob("__init__.py")}
    assert folders <= listed, sorted(folders - listed)


def test_the_package_root_holds_at_most_five_modules():
    assert len(list(PACKAGE.glob("*.py"))) <= 5


def test_no_module_imports_from_a_higher_or_sideways_folder():
    upward = []
    for module, imported in _graph().items():
        if module in PUBLIC_FACE:
            continue
        for target in imported:
            if target == "neuralct" and _folder(module) != "cli":
                upward.append(f"{module} -> the public face")
            elif (
                target != "neuralct"
                and _folder(target) != _folder(module)
                and LAYERS[_folder(target)] >= LAYERS[_folder(module)]
            ):
                upward.append(f"{module} -> {target}")
    assert not upward, upward


def test_no_import_circle_between_modules():
    graph = _graph()
    for module in graph:
        graph[module] = {target for target in graph[module] if target in graph and target != module}
    state: dict[str, int] = {}
    circle: list[str] = []

    def visit(module: str, path: list[str]) -> bool:
        state[module] = 1
        for target in sorted(graph[module]):
            if state.get(target) == 1:
                circle.extend(path[path.index(target) :] + [module, target] if target in path else [module, target])
                return True
            if state.get(target) is None and visit(target, path + [module]):
                return True
        state[module] = 2
        return False

    for module in sorted(graph):
        if state.get(module) is None and visit(module, []):
            break
    assert not circle, " -> ".join(circle)


def test_the_reader_of_imports_sees_function_local_relative_imports():
    source = (
        "import os\nfrom ..errors import NeuralCTError\n\n"
        "def f():\n    from ..workflows import train\n    from . import frame\n"
    )
    assert _imports_of(source, "neuralct.data") == {
        "neuralct.errors",
        "neuralct.workflows.train",
        "neuralct.data.frame",
    }
