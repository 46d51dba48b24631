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
    """Every way a secret can show up in output: ASCII and hex, upper/lower, with or
    without spaces or colons."""
    raw = secret.encode() if isinstance(secret, str) else secret
    h = raw.hex()
    pairs = [h[i:i + 2] for i in range(0, len(h), 2)]
    forms = [f for sep in ("", " ", ":") for f in (sep.join(pairs), sep.join(pairs).upper())]
    if isinstance(secret, str):
        forms.append(secret)
    return forms


def fixture_secret_forms(trace: Path) -> list[str]:
    """The forms of every secret a fixture's script used. A "weak" secret (the
    virtual card's PIN 1234 is also a line number in OpenSC's card.c) is
    searched for in hex only."""
    truth = expected(trace)
    weak = set(truth.get("weak_secrets", []))
    forms = []
    for key, value in truth["secrets"].items():
        if key == "key_values_hex":
            forms += [f for v in value for f in secret_forms(bytes.fromhex(v))]
        elif value:
            forms += [f for f in secret_forms(value) if not (key in weak and f == value)]
    return forms


def assert_pin_commands_redacted(trace: Path) -> None:
    """Each PIN command of a fixture keeps CLA INS P1 P2 Lc; its data is a marker
    as long as Lc, and there are as many as the fixture's script sent."""
    from pkspy.model import ApduExchange, Redacted
    from pkspy.pipeline import open_events

    pins = [e for e in open_events(str(trace))[1]
            if isinstance(e, ApduExchange) and e.command_data is not None]
    assert len(pins) == expected(trace)["pin_apdus"]
    for apdu in pins:
        assert isinstance(apdu.command_data, Redacted)
        assert apdu.command[1] in (0x20, 0x24, 0x2C) and len(apdu.command) == 5
        assert apdu.command_data.length == apdu.command[4]


def source_lines(text: str) -> list[tuple[str, int]]:
    """A trace's text as the (line, byte offset) items pkspy.formats.parse reads."""
    out, offset = [], 0
    for line in text.splitlines(keepends=True):
        out.append((line.rstrip("\n"), offset))
        offset += len(line.encode())
    return out


def pkspy(*args: str, input: bytes | None = None,
          timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pkspy", *args], input=input,
                          capture_output=True, timeout=timeout, cwd=ROOT)


def summary(trace: Path) -> dict:
    """`pkspy summary --json` of a trace (which must succeed)."""
    r = pkspy("summary", "--json", str(trace))
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def assert_no_output_holds_a_secret(trace: Path, tmp_path: Path, same: tuple[str, ...]) -> None:
    """tail, summary (text, JSON), export (md, jsonl) and the redacted copy of ``trace``
    hold none of its secrets in any form; the copy reads back to the same ``same`` keys."""
    forms = fixture_secret_forms(trace)
    copy = tmp_path / "copy.log"
    outputs = {
        "tail": pkspy("tail", "--no-follow", str(trace)),
        "summary": pkspy("summary", str(trace)),
        "summary --json": pkspy("summary", "--json", str(trace)),
        "export md": pkspy("export", "-f", "md", str(trace)),
        "export jsonl": pkspy("export", "-f", "jsonl", str(trace)),
        "redact": pkspy("redact", str(trace), "-o", str(copy)),
    }
    for what, r in outputs.items():
        assert r.returncode == 0, (what, r.stderr)
        out = r.stdout.decode(errors="replace")
        assert not [f for f in forms if f in out], what
    assert not [f for f in forms if f in copy.read_text(errors="replace")]
    before, after = summary(trace), summary(copy)
    for key in same:
        assert after[key] == before[key], key


@pytest.fixture(params=SPY_TRACES, ids=lambda p: p.stem)
def spy_trace(request) -> Path:
    return request.param
