"""The generated code tables are fresh, and decoders/ stands on its own at run time."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = ROOT.parent / "shared" / "reference" / "codes"
DECODERS = sorted((ROOT / "decoders").glob("*.py"))


@pytest.mark.skipif(not (REFERENCE / "iso7816_status_words.csv").exists(),
                    reason="reference CSVs not present")
def test_generated_tables_are_fresh():
    r = subprocess.run([sys.executable, "scripts/gen_code_tables.py", str(REFERENCE), "--check"],
                       cwd=ROOT, capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr.decode()


@pytest.mark.parametrize("path", DECODERS, ids=lambda p: p.name)
def test_decoders_import_nothing_of_pkspy_and_read_no_reference(path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            assert not (node.module or "").startswith("pkspy"), path.name
        elif isinstance(node, ast.Import):
            assert not any(a.name.startswith("pkspy") for a in node.names), path.name
    assert "shared/reference" not in path.read_text()
