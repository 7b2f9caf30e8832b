"""The boundaries between the packages: the edge (pacs_node) stays light and never reaches the
ML side, the models know nothing of the node, and the ``pacs-node`` command joins them."""

from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
from pathlib import Path


def test_no_pacs_node_module_pulls_in_the_ml_side() -> None:
    code = (
        "import importlib, pkgutil, sys, pacs_node\n"
        "names = [m.name for m in pkgutil.walk_packages(pacs_node.__path__, 'pacs_node.')]\n"
        "for name in names:\n"
        "    importlib.import_module(name)\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'models', 'worker',"
        " 'timm', 'transformers'))\n"
        "print(len(names), ','.join(bad))\n"
        "sys.exit(1 if bad else 0)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert int(result.stdout.split()[0]) > 40  # every module was imported


ROOT = Path(__file__).resolve().parents[3]
ML_SIDE = ("torch", "timm", "transformers", "models", "worker")
BY_NAME = ("import_module", "__import__", "entry_points")


def imports_of(package: str) -> dict[str, set[str]]:
    """Every module a package's files import, at any depth (functions included), by file; and
    the names of the by-name loaders they call."""
    found: dict[str, set[str]] = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names.add(node.module)
            elif isinstance(node, ast.Call):
                func = node.func
                called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
                if called in BY_NAME:
                    names.add(f"<loads by name: {called}>")
        found[str(path.relative_to(ROOT))] = names
    return found


def test_the_edge_never_reaches_the_ml_side_not_even_by_name() -> None:
    """pacs_node imports nothing of worker or models (nor torch), and loads nothing by name:
    the one place that joins both sides is the ``pacs-node`` command, worker/main.py."""
    bad = {
        path: sorted(n for n in names if n.split(".")[0] in ML_SIDE or n.startswith("<loads"))
        for path, names in imports_of("pacs_node").items()
    }
    assert {path: names for path, names in bad.items() if names} == {}


def test_models_import_nothing_of_the_node() -> None:
    bad = {
        path: sorted(n for n in names if n.split(".")[0] in ("pacs_node", "worker", "pydicom"))
        for path, names in imports_of("models").items()
    }
    assert {path: names for path, names in bad.items() if names} == {}


def test_the_command_is_the_composition_root() -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts == {"pacs-node": "worker.main:main"}
