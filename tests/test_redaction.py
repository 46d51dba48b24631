"""No output of pkspy ever holds a PIN or key material from a fixture."""

from __future__ import annotations

from conftest import expected, pkspy, secret_forms

from pkspy.model import Pkcs11Call, Redacted
from pkspy.pipeline import open_events

OUTPUTS = [("tail", "--no-follow"), ("tail", "--no-follow", "--json"), ("summary",),
           ("summary", "--json")]


def _secrets(trace) -> list[str]:
    truth = expected(trace)["secrets"]
    forms = []
    for key, value in truth.items():
        if key == "key_values_hex":
            for hexval in value:
                forms += secret_forms(bytes.fromhex(hexval))
        elif value:
            forms += secret_forms(value)
    return forms


def test_no_output_holds_a_secret(spy_trace):
    forms = _secrets(spy_trace)
    assert forms
    raw = spy_trace.read_text(errors="replace")
    assert any(f in raw for f in forms), "the fixture should hold the secret in clear"
    for args in OUTPUTS:
        r = pkspy(*args, str(spy_trace))
        assert r.returncode == 0, r.stderr
        out = r.stdout.decode(errors="replace")
        leaked = [f for f in forms if f in out or f.lower() in out.lower()]
        assert not leaked, (args, leaked)


def test_raw_lines_of_events_are_masked_too(spy_trace):
    forms = _secrets(spy_trace)
    for event in open_events(str(spy_trace))[1]:
        text = "\n".join(event.raw)
        assert not [f for f in forms if f in text], (event.line, event.raw)


def test_pins_become_markers_that_keep_the_length(spy_trace):
    truth = expected(spy_trace)["secrets"]
    pins = {len(v.encode()) for k, v in truth.items() if k.endswith("pin") and v}
    marked = []
    for event in open_events(str(spy_trace))[1]:
        if isinstance(event, Pkcs11Call) and event.function in ("C_Login", "C_InitToken",
                                                                "C_InitPIN", "C_SetPIN"):
            for arg in event.args:
                if arg.name in ("pPin", "pOldPin", "pNewPin"):
                    assert isinstance(arg.value, Redacted), (event.line, arg)
                    marked.append(arg.value.length)
    assert marked and set(marked) <= pins
