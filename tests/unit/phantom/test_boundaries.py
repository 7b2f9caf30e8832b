"""pacs_node.phantom stays on its side of the package boundary."""

from __future__ import annotations

import subprocess
import sys


def test_writer_imports_neither_models_nor_torch() -> None:
    code = (
        "import sys, pacs_node.phantom; "
        "bad = [m for m in ('models', 'torch', 'worker') if m in sys.modules]; "
        "print(','.join(bad)); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
