"""Shared test helpers: fixture paths, their ground truth, running the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SPY_DIR = ROOT / "fixtures" / "pkcs11-spy"
SPY_TRACES = sorted(SPY_DIR.glob("*.log"))


def expected(trace: Path) -> dict:
    """What the script that made a fixture knows it did (not parsed from the trace)."""
    return json.loads(Path(f"{trace}.expected.json").read_text())


def secret_forms(secret: str | bytes) -> list[str]:
    """Every way a secret can show up in output: ASCII and hex, upper/lower, spaced or not."""
    raw = secret.encode() if isinstance(secret, str) else secret
    h = raw.hex()
    spaced = " ".join(h[i:i + 2] for i in range(0, len(h), 2))
    forms = [h, h.upper(), spaced, spaced.upper()]
    if isinstance(secret, str):
        forms.append(secret)
    return forms


def pkspy(*args: str, input: bytes | None = None,
          timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pkspy", *args], input=input,
                          capture_output=True, timeout=timeout, cwd=ROOT)


@pytest.fixture(params=SPY_TRACES, ids=lambda p: p.stem)
def spy_trace(request) -> Path:
    return request.param
