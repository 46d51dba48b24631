"""The OpenSC debug log parser over real logs of opensc-tool, pkcs15-tool and
pkcs11-tool talking to a virtual card (fixtures/make_card_fixtures.py).

Each `.expected.json` holds what the card's own journal recorded: every
command it got and the status word it answered, never read from the trace.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import (
    ROOT,
    assert_pin_commands_redacted,
    expected,
    fixture_secret_forms,
    pkspy,
    summary,
)

from pkspy.model import ApduExchange, DebugLine
from pkspy.pipeline import open_events

DIR = ROOT / "fixtures" / "opensc-debug"
TRACES = sorted(DIR.glob("*.log"))


@pytest.fixture(params=TRACES, ids=lambda p: p.stem)
def trace(request) -> Path:
    return request.param


def test_detected_and_counted_as_the_card_saw_it(trace):
    s, truth = summary(trace), expected(trace)
    assert s["format"] == "opensc-debug"
    assert s["apdus"] == truth["apdus"]
    assert s["status_words"] == truth["status_words"]
    assert s["processes"] == truth["processes"]
    assert truth["reader"] in s["readers"]
    assert s["unparsed_lines"] == 0
    if "ATR     :" in trace.read_text():  # shown while matching drivers, level 7+
        assert s["atr"] == [truth["atr"]]


def test_every_exchange_in_order(trace):
    truth = expected(trace)
    want = [(x["command"].upper(), x["sw"].upper()) for run in truth["runs"]
            for x in run["exchanges"]]
    apdus = [e for e in open_events(str(trace), reveal=True)[1] if isinstance(e, ApduExchange)]
    got = [(a.command.hex().upper(), f"{a.sw:04X}") for a in apdus]
    assert got == want
    assert all(a.response is not None and a.duration is not None and a.duration >= 0
               for a in apdus)


def test_pin_commands_keep_header_and_length_only(trace):
    assert_pin_commands_redacted(trace)


def test_no_output_holds_a_pin(trace):
    truth = expected(trace)
    forms = fixture_secret_forms(trace)
    raw = trace.read_text()
    if truth["pin_apdus"]:
        assert any(f in raw for f in forms), "the fixture should hold PINs in clear"
    for args in (("tail", "--no-follow"), ("tail", "--no-follow", "--json"), ("summary",),
                 ("summary", "--json")):
        out = pkspy(*args, str(trace)).stdout.decode()
        assert not [f for f in forms if f in out], args
    for event in open_events(str(trace))[1]:
        text = "\n".join(event.raw)
        assert not [f for f in forms if f in text], event.line


def test_tail_of_a_level_9_pkcs11_tool_run_is_short():
    trace = DIR / "pkcs11-tool-L-d9.log"
    lines = pkspy("tail", "--no-follow", str(trace)).stdout.decode().splitlines()
    raw_lines = len(trace.read_text().splitlines())
    apdu_lines = [line for line in lines if " APDU " in line]
    assert len(apdu_lines) == expected(trace)["apdus"]
    assert len(lines) < raw_lines / 20
    # the failure that ends each attempt: no driver takes the card
    assert any("sc_connect_card" in line and "SC_ERROR_INVALID_CARD" in line for line in lines)
    assert "6A82 File not found" in "\n".join(apdu_lines)


def test_failures_are_reported_where_they_began():
    trace = DIR / "pkcs11-tool-L-d9.log"
    events = list(open_events(str(trace))[1])
    origins = [e for e in events if isinstance(e, DebugLine) and e.error and e.origin]
    chained = [e for e in events if isinstance(e, DebugLine) and e.error and not e.origin]
    assert origins and chained
    # piv_general_io fails first; the functions that pass -1208 up are not origins
    names = {(e.function, e.error) for e in origins}
    assert ("piv_general_io", -1208) in names
    assert ("piv_find_discovery", -1208) not in names
    assert all(e.what in ("returned", "message") for e in origins)
    s = summary(trace)
    assert s["sc_errors"]["-1210"] == len([e for e in origins if e.error == -1210])
