"""`pkspy redact`: the trace in its own format, secrets overwritten in place."""

from __future__ import annotations

import pytest
from conftest import ROOT, expected, fixture_secret_forms, pkspy, summary

from pkspy.sources import decode

TRACES = sorted(p for d in ("pkcs11-spy", "opensc-debug", "pcsc-spy", "pcscd",
                                  "p11-kit", "pkcs11-logger")
                for p in (ROOT / "fixtures" / d).glob("*")
                if p.suffix in (".log", ".raw", ".txt") and p.name != "README.md")
KEYS = ("format", "processes", "calls", "calls_by_function", "apdus", "status_words",
        "sc_errors", "incomplete_records", "unparsed_lines")


@pytest.mark.parametrize("trace", TRACES, ids=lambda p: p.name)
def test_copy_keeps_the_layout_and_loses_the_secrets(trace, tmp_path):
    out = tmp_path / trace.name
    r = pkspy("redact", str(trace), "-o", str(out))
    assert r.returncode == 0, r.stderr
    assert r.stderr.decode().startswith("pkspy: ") and "redacted" in r.stderr.decode()
    original = trace.read_bytes().splitlines(keepends=True)
    copy = out.read_bytes().splitlines(keepends=True)
    assert len(copy) == len(original)
    for a, b in zip(original, copy, strict=True):
        assert len(decode(a)) == len(decode(b)) and a[-1:] == b[-1:]  # layout and endings hold
    forms = fixture_secret_forms(trace)
    truth = expected(trace)
    if truth.get("pin_apdus", 1):  # fixtures with PIN commands or spy PINs hold them in clear
        assert any(f in trace.read_text(errors="replace") for f in forms)
    text = out.read_text(errors="replace")
    assert not [f for f in forms if f in text]
    # pkspy reads its own copy as it read the original
    before, after = summary(trace), summary(out)
    assert {k: after.get(k) for k in KEYS} == {k: before.get(k) for k in KEYS}


def test_refuses_to_overwrite_its_input_and_stdin(tmp_path):
    trace = tmp_path / "t.log"
    trace.write_bytes((ROOT / "fixtures/pkcs11-spy/pkcs11-spy-0.27.1-softhsm2.log").read_bytes())
    before = trace.read_bytes()
    r = pkspy("redact", str(trace), "-o", str(trace))
    assert r.returncode == 2 and b"is the input" in r.stderr and trace.read_bytes() == before
    r = pkspy("redact", "-", input=before)
    assert r.returncode == 2 and r.stderr.count(b"\n") == 1


def test_copy_to_stdout():
    trace = ROOT / "fixtures/pkcs11-spy/pkcs11-spy-0.24.0-softhsm2.log"
    r = pkspy("redact", str(trace))
    assert r.returncode == 0
    assert r.stdout.count(b"\n") == trace.read_bytes().count(b"\n")
    assert b"4711471147" not in r.stdout and b"34 37 31 31" not in r.stdout
