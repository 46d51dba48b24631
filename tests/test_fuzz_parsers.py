"""Fuzzing every parser in pkspy.formats.PARSERS with real traces, damaged the ways real
traces get damaged (tests/fuzz_mutations.py), through the real line reader and the
redactor. Checked for every input:

* no exception escapes the parser, the redactor or the one-line view;
* every non-blank line lands in exactly one event, with its exact text, and an
  event's lines keep their order in the file;
* the events the parser gave out before it read the first damaged line are the same
  as without the damage (what follows may differ: OpenSC nests calls, pasted hex
  alternates command and response, so a parser's state carries across records);
* when records were only moved or added whole, no secret of the fixture shows up that
  the undamaged window did not already show.

Budget: the CI runs these (with test_fuzz_decoders.py) on 2 shared cores in 50-75 s
(measured on this busy machine), so the examples are counted (800 per parser) and
derandomized: the same every run, so a red CI is a regression, not a new random draw.
Run with PKSPY_FUZZ_EXAMPLES=5000 for many more, with new random draws;
fuzz/fuzz_parsers.py is the coverage-guided, open-ended version.
"""

from __future__ import annotations

import io
import json
import os
import re
from pathlib import Path

import pytest
from conftest import fixture_secret_forms
from fuzz_mutations import TRACES, Mutated, mutation, split_lines, window
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pkspy import formats
from pkspy.model import Event, to_json
from pkspy.redact import Redactor
from pkspy.report.lines import format_event
from pkspy.sources import decode, read_lines

ANSI = re.compile(r"\x1b\[[0-9;]*m")
EXAMPLES = int(os.environ.get("PKSPY_FUZZ_EXAMPLES", "0"))
FUZZ = settings(max_examples=EXAMPLES or 800, deadline=None, derandomize=not EXAMPLES,
                suppress_health_check=list(HealthCheck), database=None)


def parse_bytes(data: bytes, fmt: str, upto: int | None = None) -> list[Event]:
    """The redacted events of a trace; with ``upto``, only those the parser gave out
    before it was fed line ``upto + 1``."""
    redactor = Redactor()
    parser = formats.PARSERS[fmt]()
    events: list[Event] = []
    for lineno, (text, offset) in enumerate(read_lines(io.BufferedReader(io.BytesIO(data))), 1):
        if upto is not None and lineno > upto:
            return events
        events += map(redactor, parser.feed(text, lineno, offset))
    if upto is None:
        events += map(redactor, parser.close())
    return events


def check_every_line_once(data: bytes, events: list[Event]) -> None:
    source = [decode(x) for x in split_lines(data)]
    seen: dict[int, int] = {}
    for event in events:
        numbers = event.source_lines()
        assert len(numbers) == len(event.raw), event
        assert numbers == sorted(set(numbers)), (event.line, numbers)
        for n, text in zip(numbers, event.raw, strict=True):
            assert 1 <= n <= len(source) and n not in seen, (n, event)
            seen[n] = event.line
            if "*" not in text:  # a masked secret keeps the line's length, not its text
                assert text == source[n - 1], (n, text, source[n - 1])
    # blank lines separate records; a line of colour codes alone is blank too
    missing = [n for n, text in enumerate(source, 1)
               if ANSI.sub("", text).strip() and n not in seen]
    assert not missing, (missing[:5], [source[n - 1] for n in missing[:5]])


def shown(event: Event) -> str:
    return "\n".join([*event.raw, json.dumps(to_json(event)), format_event(event)])


def record_blocks(events: list[Event]) -> list[tuple[int, int]]:
    """(start, end) 0-based line ranges of events that hold a run of lines of their own."""
    blocks, last = [], 0
    for e in sorted(events, key=lambda e: e.line):
        if e.raw_lines is None and e.line - 1 >= last and e.end_line >= e.line:
            blocks.append((e.line - 1, e.end_line))
            last = e.end_line
    return blocks


PAIRS = [(fmt, path) for fmt in formats.names() for path in TRACES
         if TRACES[path] in (fmt, None)]
FOREIGN = [(fmt, path) for fmt in formats.names() for path in TRACES
           if TRACES[path] not in (fmt, None)]


def _fuzz(fmt: str, path: Path, data: st.DataObject) -> None:
    lines = data.draw(window(path))
    base = b"".join(lines)
    before = parse_bytes(base, fmt)
    damaged: Mutated = data.draw(mutation(lines, record_blocks(before)))
    text = b"".join(damaged.lines)
    events = parse_bytes(text, fmt)
    check_every_line_once(text, events)
    out = "\n".join(shown(e) for e in events)
    # What the parser gave out before it read the first damaged line is final: the
    # damage cannot change it (an exchange waits for the result line after it, an OpenSC
    # message for the line that shows it has no continuation).
    intact = {e.line: shown(e) for e in parse_bytes(base, fmt, upto=damaged.first)}
    after = {e.line: shown(e) for e in events if e.line in intact}
    assert after == intact, damaged.name
    if damaged.whole_records and TRACES[path] == fmt:
        # a window may begin inside a PIN record: only what the damage exposed counts
        base_out = "\n".join(shown(e) for e in before)
        leaked = [f for f in secret_forms(path) if f in out and f not in base_out]
        assert not leaked, (damaged.name, leaked)


_FORMS: dict[Path, list[str]] = {}


def secret_forms(path: Path) -> list[str]:
    if path not in _FORMS:
        has_truth = Path(f"{path}.expected.json").exists()
        _FORMS[path] = fixture_secret_forms(path) if has_truth else []
    return _FORMS[path]


@pytest.mark.parametrize("fmt", formats.names())
@FUZZ
@given(data=st.data())
def test_damaged_traces_of_its_own_format(fmt, data):
    """Each parser on its own format's fixtures (all fixtures when none is detected as it)."""
    own = [p for f, p in PAIRS if f == fmt and TRACES[p] == fmt] or [p for _, p in PAIRS]
    _fuzz(fmt, data.draw(st.sampled_from(own)), data)


@FUZZ
@given(data=st.data())
def test_damaged_traces_of_other_formats(data):
    """A parser forced onto another format's trace (--format): unparsed, never a crash."""
    fmt, path = data.draw(st.sampled_from(FOREIGN))
    _fuzz(fmt, path, data)


@pytest.mark.parametrize("fmt", formats.names())
@settings(max_examples=EXAMPLES or 150, deadline=None, derandomize=not EXAMPLES, database=None)
@given(blob=st.binary(max_size=3000))
def test_random_bytes(fmt, blob):
    events = parse_bytes(blob, fmt)
    check_every_line_once(blob, events)
    for e in events:
        shown(e)


# Regressions the fuzzers found, each from its minimal example.

def test_glued_spy_line_outside_a_record_is_one_event():
    """atheris: "[in] type = ...[out] pInfo: " (the spy glues the two) outside any record
    gave a second Unparsed with no raw line, which the one-line view could not show."""
    data = b"[in] type = 0x00001055[out] pInfo: \n"
    events = parse_bytes(data, "pkcs11-spy")
    check_every_line_once(data, events)
    assert [(e.kind, e.raw) for e in events] == [("unparsed", [data.decode().rstrip("\n")])]
    assert "not parsed" in format_event(events[0])


def test_pcsc_spy_time_no_clock_gives():
    """atheris: a libpcscspy stamp of 30 digits raised OverflowError out of the parser;
    the call is kept, with no time and no duration."""
    data = (b"7F6F24A266C0@>|1795792233|638111111111111111111111111111064|SCardBeginTransaction\n"
            b"7F6F24A266C0@0x2D931E18\n"
            b"7F6F24A266C0@<|1795792233|637890|SCardBeginTransaction|Command successful.|0x0\n")
    events = parse_bytes(data, "pcsc-spy-raw")
    check_every_line_once(data, events)
    assert [(e.function, e.rv, e.time, e.duration) for e in events] == [
        ("SCardBeginTransaction", 0, None, None)]


def test_spy_line_the_parser_fails_on_is_kept_once():
    """atheris: an info line whose value only starts like hex went into its record and,
    through the parser's safety net, into an Unparsed event too: twice."""
    data = (b"4: C_GetTokenInfo\n[out] pInfo: \n"
            b"      flags:                   42dB80@<|1795792\n")
    events = parse_bytes(data, "pkcs11-spy")
    check_every_line_once(data, events)
    (call,) = events
    assert call.problems == ["line 3: parser error: ValueError: invalid literal for int() "
                             "with base 16: '42dB80@<|1795792'"]


def test_pcsc_spy_dump_row_with_a_control_character():
    """atheris: a dump row whose blanks held \\x1c passed the hex check (\\s) and made
    bytes.fromhex raise out of the parser."""
    data = b"SCardTransmit\n o  0000 90 00                               \x1c           ..\n"
    events = parse_bytes(data, "pcsc-spy")
    check_every_line_once(data, events)


def test_opensc_apdu_never_answered_has_no_duration():
    """Found reading a hostile trace: an APDU with no response kept its start time
    (seconds since the first message) as its duration, shown as hours in ms."""
    data = (b"P:1224; T:0x1 15:10:12.158 [opensc-tool] apdu.c:378:sc_single_transmit: \n"
            b"Outgoing APDU (5 bytes):\n00 B0 00 00 10 .....\n"
            b"P:1224; T:0x1 15:10:13.158 [opensc-tool] apdu.c:378:sc_single_transmit: \n"
            b"Outgoing APDU (5 bytes):\n00 B0 00 10 10 .....\n")
    apdus = [e for e in parse_bytes(data, "opensc-debug") if e.kind == "apdu"]
    assert [(a.incomplete, a.duration) for a in apdus] == [(True, None), (True, None)]
