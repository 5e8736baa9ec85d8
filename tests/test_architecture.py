"""The package's layers (docs/architecture.md): imports run down the layers only, no private names cross modules,
and no import of the package hides inside a function."""

from __future__ import annotations

import ast
import os

import pytest

PACKAGE_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "monai_ext")

# Unit -> layer, as in docs/architecture.md. A module may import its own unit and units of lower layers.
LAYERS = {
    "monai_ext": 0,
    "monai_ext.io": 0,
    "monai_ext.checkpoint": 0,
    "monai_ext.flags": 0,
    "monai_ext.distributed": 0,
    "monai_ext.bundled_code": 0,
    "monai_ext.clip": 1,
    "monai_ext.visualize": 1,
    "monai_ext.data": 2,
    "monai_ext.text": 2,
    "monai_ext.networks": 3,
    "monai_ext.demo": 3,
    "monai_ext.losses": 4,
    "monai_ext.metrics": 4,
    "monai_ext.handlers": 5,
    "monai_ext.inferers": 5,
    "monai_ext.engines": 5,
    "monai_ext.bundle": 6,
    "monai_ext.apps": 7,
}


def _modules() -> list[tuple[str, str]]:
    found = []
    for root, dirs, files in os.walk(PACKAGE_DIR):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for name in sorted(files):
            if name.endswith(".py"):
                path = os.path.join(root, name)
                rel = os.path.relpath(path, os.path.dirname(PACKAGE_DIR))[: -len(".py")].replace(os.sep, ".")
                found.append((rel.removesuffix(".__init__"), path))
    return found


def unit_of(module: str) -> str:
    """The longest prefix of ``module`` that names a unit in :data:`LAYERS`."""
    parts = module.split(".")
    for k in range(len(parts), 0, -1):
        if ".".join(parts[:k]) in LAYERS:
            return ".".join(parts[:k])
    raise AssertionError(f"Module {module} belongs to no unit of LAYERS; add it there and to docs/architecture.md.")


def _package_imports(tree: ast.AST) -> list[tuple[ast.AST, str, list[str], bool]]:
    """(node, imported module, imported names, inside a function) for every import of monai_ext."""
    found = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            nested = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.ImportFrom) and child.level == 0 and (child.module or "").startswith("monai_ext"):
                found.append((child, child.module, [a.name for a in child.names], in_function))
            elif isinstance(child, ast.Import):
                for alias in child.names:
                    if alias.name.startswith("monai_ext"):
                        found.append((child, alias.name, [], in_function))
            visit(child, nested)

    visit(tree, False)
    return found


MODULES = _modules()


def import_problems(module: str, source: str, where: str) -> list[str]:
    """What is wrong with the package imports of ``module`` (its source text), one line each."""
    own = unit_of(module)
    problems = []
    for node, imported, names, in_function in _package_imports(ast.parse(source)):
        at = f"{where}:{node.lineno}"
        targets = [imported] + [f"{imported}.{n}" for n in names]
        target_unit = max((unit_of(t) for t in targets), key=len)
        if target_unit != own and LAYERS[target_unit] >= LAYERS[own]:
            problems.append(f"{at}: {own} (layer {LAYERS[own]}) imports {target_unit} (layer {LAYERS[target_unit]})")
        private = [n for n in names if n.startswith("_") and n != "__version__"]
        if private and imported != module:
            problems.append(f"{at}: imports private name(s) {private} of {imported}")
        if in_function:
            problems.append(f"{at}: imports {imported} inside a function; import it at module level")
    return problems


@pytest.mark.parametrize("module,path", MODULES, ids=[m for m, _ in MODULES])
def test_imports_run_down_the_layers(module, path):
    with open(path, encoding="utf-8") as f:
        source = f.read()
    problems = import_problems(module, source, os.path.relpath(path, os.path.dirname(PACKAGE_DIR)))
    assert not problems, "\n".join(problems)


def test_every_unit_exists():
    names = {m for m, _ in MODULES}
    assert set(LAYERS) <= names, sorted(set(LAYERS) - names)


def test_checker_reports_each_kind_of_problem():
    """The checker itself, so that the test above can fail: upward, private and function-level imports."""
    source = (
        "from monai_ext.bundle.parser import bundle_parser\n"
        "from monai_ext.io import _new_file_mode\n"
        "def f():\n"
        "    from monai_ext.flags import ensure_flag\n"
    )
    problems = import_problems("monai_ext.data.readers", source, "readers.py")
    assert len(problems) == 3, problems
    assert "monai_ext.data (layer 2) imports monai_ext.bundle (layer 6)" in problems[0]
    assert "private name(s) ['_new_file_mode']" in problems[1]
    assert "inside a function" in problems[2]
    assert import_problems("monai_ext.bundle.export", "from monai_ext.io import atomic_write\n", "export.py") == []
