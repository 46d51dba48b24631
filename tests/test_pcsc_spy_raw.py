"""libpcscspy's raw stream, captured from a pyscard program talking to the virtual
card (fixtures/make_card_fixtures.py); the truth is the card's own journal."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from conftest import ROOT, expected, fixture_secret_forms, pkspy, source_lines, summary

from pkspy.formats import parse
from pkspy.model import ApduExchange, PcscCall
from pkspy.pipeline import open_events

DIR = ROOT / "fixtures" / "pcsc-spy"
TRACES = sorted(DIR.glob("*.raw"))


@pytest.fixture(params=TRACES, ids=lambda p: p.stem)
def trace(request) -> Path:
    return request.param


def test_summary_agrees_with_the_card_and_the_program(trace):
    s, truth = summary(trace), expected(trace)
    assert s["format"] == "pcsc-spy-raw" and s["unparsed_lines"] == 0
    assert truth["reader"] in s["readers"]
    # the crash file's script never read the ATR itself: the same card's, from the full run
    assert s["atr"] == [truth["atr"] or expected(DIR / "pyscard.raw")["atr"]]
    calls = Counter(c["function"] for c in truth["calls"])
    if not truth.get("complete", True):
        calls[truth["crashed_in"]] += 1  # begun in the trace, never finished for the program
    assert s["pcsc_calls_by_function"] == dict(calls)
    failed = [(f["function"], f["rv"].upper()) for f in truth["failed_calls"]]
    assert [(f["function"], f["rv"].upper()) for f in s["failed_pcsc_calls"]] == failed
    if truth.get("complete", True):
        assert s["apdus"] == truth["apdus"] and s["status_words"] == truth["status_words"]
    else:  # the 1.9.9 spy crashed the program: the card answered, the trace never said
        assert s["apdus"] == 0 and s["apdus_unanswered"] == truth["apdus"]


def test_every_exchange_in_order_per_thread(trace):
    truth = expected(trace)
    apdus = [e for e in open_events(str(trace), reveal=True)[1]
             if isinstance(e, ApduExchange) and e.rv == 0 and e.response is not None]
    got = [(a.command.hex().upper(), f"{a.sw:04X}") for a in apdus]
    want = [(x["command"].upper(), x["sw"].upper()) for x in truth["exchanges"]]
    if truth.get("complete", True):
        assert got == want
    else:
        assert got == [] and truth["crashing_apdu"].upper() == want[-1][0]
        last = [e for e in open_events(str(trace), reveal=True)[1]
                if isinstance(e, ApduExchange)][-1]
        assert last.incomplete and last.command.hex().upper() == truth["crashing_apdu"]


def test_threads_are_told_apart():
    trace = DIR / "pyscard-threads.raw"
    events = list(open_events(str(trace))[1])
    tids = {e.tid for e in events if isinstance(e, (PcscCall, ApduExchange))}
    assert len(tids) == expected(trace)["threads"] == 2
    assert not [e for e in events if isinstance(e, PcscCall) and e.problems]


def test_no_output_holds_a_pin(trace):
    truth = expected(trace)
    forms = fixture_secret_forms(trace)
    if truth["pin_apdus"]:
        assert any(f in trace.read_text() for f in forms)
    for args in (("tail", "--no-follow"), ("tail", "--no-follow", "--json"), ("summary",),
                 ("summary", "--json")):
        out = pkspy(*args, str(trace)).stdout.decode()
        assert not [f for f in forms if f in out], args
    for event in open_events(str(trace))[1]:
        assert not [f for f in forms if f in "\n".join(event.raw)], event.line


def test_older_and_newer_stream_versions():
    # <=1.9.8: SCardTransmit has no PCI values; >=2.2.0: the exit line has no error text
    real = (DIR / "pyscard.raw").read_text()
    base = [(a.command, a.response) for a in parse(source_lines(real), "pcsc-spy-raw")
            if isinstance(a, ApduExchange)]
    old, lines = [], real.splitlines()
    i = 0
    while i < len(lines):
        old.append(lines[i])
        if lines[i].endswith("|SCardTransmit") and "@>|" in lines[i]:
            tid = lines[i].split("@")[0]
            old.append(lines[i + 1])  # hCard
            old += lines[i + 4:i + 6]  # send length and buffer, without the PCI pair
            old += lines[i + 8:i + 10]  # recv length and buffer
            i += 10
            assert lines[i].startswith(f"{tid}@<|")
            continue
        i += 1
    older = [(a.command, a.response) for a in parse(source_lines("\n".join(old)), "pcsc-spy-raw")
             if isinstance(a, ApduExchange)]
    assert older == base
    newer = "\n".join(line.replace("|Command successful.|", "|") for line in lines)
    events = list(parse(source_lines(newer), "pcsc-spy-raw"))
    assert [(a.command, a.response) for a in events if isinstance(a, ApduExchange)] == base
    assert all(e.rv is not None for e in events if isinstance(e, PcscCall))


def test_a_stream_out_of_step_is_marked_and_resyncs():
    real = (DIR / "pyscard.raw").read_text().splitlines()
    at = next(i for i, line in enumerate(real) if line.endswith("|SCardStatus"))
    broken = real[:at + 2] + real[at + 3:]  # one value line lost (a too-long line dropped)
    events = list(parse(source_lines("\n".join(broken)), "pcsc-spy-raw"))
    status = next(e for e in events if isinstance(e, PcscCall) and e.function == "SCardStatus")
    assert status.problems
    assert len([e for e in events if isinstance(e, ApduExchange)]) == 28  # nothing else lost
