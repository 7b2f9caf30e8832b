"""The edge package stays light: no module of pacs_node imports torch, models or worker."""

from __future__ import annotations

import subprocess
import sys


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
