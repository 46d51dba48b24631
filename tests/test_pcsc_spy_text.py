"""pcsc-spy's printed output (pkspy/formats/pcsc_spy_text.py) over real renderings
of libpcscspy 1.9.9 captures (fixtures/pcsc-spy/*.txt, made by
fixtures/make_card_fixtures.py), checked against what the card's own journal and
the program that made the trace recorded (`.expected.json`, never read from the
trace), and against the raw parser's events for the same run (`*.raw`).
"""

from __future__ import annotations

import json
import random
import re
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

from pkspy.formats import detect, parse
from pkspy.model import ApduExchange, DebugLine, Event, PcscCall, Unparsed, to_json
from pkspy.pipeline import open_events
from pkspy.redact import Redactor

DIR = ROOT / "fixtures" / "pcsc-spy"
TRACES = sorted(DIR.glob("*.txt"))
CRASH = DIR / "pyscard-crash.txt"
ANSI = re.compile(r"\x1b\[[0-9;]*m")


@pytest.fixture(params=TRACES, ids=lambda p: p.stem)
def trace(request) -> Path:
    return request.param


def _events(trace: Path, reveal: bool = True) -> list[Event]:
    return list(open_events(str(trace), reveal=reveal)[1])


def _calls(events: list[Event]) -> list[PcscCall | ApduExchange]:
    return [e for e in events if isinstance(e, PcscCall)
            or (isinstance(e, ApduExchange) and e.function)]


def _lines(text: str) -> list[Event]:
    return list(parse(((line, 0) for line in text.splitlines()), "pcsc-spy"))


def test_detected_and_counted_as_the_card_saw_it(trace):
    s, truth = summary(trace), expected(trace)
    assert s["format"] == "pcsc-spy"
    assert truth["reader"] in s["readers"]
    assert s["unparsed_lines"] == 0
    if truth["atr"]:
        assert s["atr"] == [truth["atr"]]
    failed = sorted((f["function"], f["rv"]) for f in s["failed_pcsc_calls"])
    assert failed == sorted((f["function"], f["rv"]) for f in truth["failed_calls"])
    if trace == CRASH:
        # The card answered 9000 (its journal says so), but the program died inside the
        # spy before the answer was written: the trace holds the command and nothing else.
        assert (truth["apdus"], truth["status_words"]) == (1, {"9000": 1})
        assert (s["apdus"], s["apdus_unanswered"], s["status_words"]) == (0, 1, {})
        assert s["pcsc_calls_by_function"] == {**truth["calls_by_function"], "SCardTransmit": 1}
    else:
        assert s["apdus"] == truth["apdus"]
        assert s["status_words"] == truth["status_words"]
        # the transmit on a wrong handle never reached the card: no response
        assert s["apdus_unanswered"] == 1
        assert s["pcsc_calls_by_function"] == truth["calls_by_function"]


def test_every_exchange_in_order(trace):
    truth = expected(trace)
    apdus = [e for e in _events(trace) if isinstance(e, ApduExchange)]
    on_the_wire = [a for a in apdus if a.rv == 0]
    want = [(x["command"].upper(), x["response"].upper(), x["sw"].upper())
            for x in truth["exchanges"]]
    got = [(a.command.hex().upper(), a.response.hex().upper(), f"{a.sw:04X}")
           for a in on_the_wire]
    if trace == CRASH:
        assert got == []
        (last,) = apdus
        assert last.command.hex().upper() == truth["crashing_apdu"] == want[0][0]
        assert last.incomplete and last.response is None and last.rv is None
        assert last.function == truth["crashed_in"]
        return
    assert got == want
    assert all(a.reader == truth["reader"] and a.duration is not None and a.duration > 0
               and a.function == "SCardTransmit" for a in on_the_wire)
    (failed,) = [a for a in apdus if a.rv != 0]
    assert ("SCardTransmit", f"0x{failed.rv:08X}") in [(f["function"], f["rv"])
                                                      for f in truth["failed_calls"]]
    assert failed.response is None and failed.sw is None and not failed.incomplete
    assert failed.reader is None  # a handle no SCardConnect returned


def test_pcsc_calls_per_thread_in_order(trace):
    truth = expected(trace)
    names: list[str] = []  # pcsc-spy numbers its threads as they first appear
    for call in truth["calls"]:
        if call["thread"] not in names:
            names.append(call["thread"])
    want = {f"t{names.index(c['thread'])}": [] for c in truth["calls"]}
    for c in truth["calls"]:
        want[f"t{names.index(c['thread'])}"].append((c["function"], c["rv"]))
    calls = _calls(_events(trace))
    got: dict[str, list] = {}
    for c in calls:
        if c.rv is not None:
            got.setdefault(c.tid, []).append((c.function, f"0x{c.rv:08X}"))
    assert got == want
    assert len(got) == truth["threads"]
    unfinished = [c for c in calls if c.rv is None]
    assert len(unfinished) == (0 if truth.get("complete", True) else 1)
    assert not [c for c in calls if isinstance(c, PcscCall) and c.problems]


def test_same_events_as_the_raw_stream_of_the_same_run():
    """pcsc-spy renders libpcscspy's raw stream: both parsers must tell the same story."""

    def story(path: Path) -> dict[str, list]:
        fmt = "pcsc-spy-raw" if path.suffix == ".raw" else "pcsc-spy"
        threads: dict[str, str] = {}  # raw TIDs and t0, t1... in order of appearance
        out: dict[str, list] = {}
        for e in open_events(str(path), fmt=fmt, reveal=True)[1]:
            if isinstance(e, (PcscCall, ApduExchange)):
                d = to_json(e)
                for key in ("line", "end_line", "offset", "tid", "time"):
                    d.pop(key, None)
                key = threads.setdefault(e.tid or "", f"thread {len(threads)}")
                out.setdefault(key, []).append(d)
        return out

    for name in ("pyscard", "pyscard-threads", "pyscard-crash"):
        raw, text = story(DIR / f"{name}.raw"), story(DIR / f"{name}.txt")
        assert raw == text, name
    assert story(DIR / "pyscard.txt") == story(DIR / "pyscard-color.txt")


def test_threads_are_told_apart():
    trace = DIR / "pyscard-threads.txt"
    truth = expected(trace)
    events = _events(trace)
    for e in _calls(events):
        prefix = " (t0) " if e.tid == "t0" else "     (t1) "
        assert all(line.startswith(prefix) for line in e.raw), e.line
        assert e.source_lines() == sorted(e.source_lines())
    poll = [c for c in _calls(events) if c.tid == "t1"]
    assert [c.function for c in poll] == [c["function"] for c in truth["calls"]
                                          if c["thread"] == "poll"]
    # the poll thread's calls are interleaved with the other thread's lines
    assert any(c.source_lines() != list(range(c.line, c.end_line + 1)) for c in poll)
    stats = [e for e in events if isinstance(e, DebugLine) and e.what == "stats"]
    assert {e.tid for e in stats} == {"t0", "t1"}
    rows = {(e.tid, e.function) for e in stats if e.function}
    assert ("t1", "SCardGetStatusChange") in rows and ("t1", "SCardTransmit") not in rows


def test_crash_leaves_the_last_transmit_incomplete():
    events = _events(CRASH)
    last = [e for e in events if not isinstance(e, DebugLine)][-1]
    assert isinstance(last, ApduExchange) and last.incomplete and last.response is None
    assert last.raw[-1].startswith(" i  0000 00 A4 00 0C 02 3F 00")
    # what follows is pcsc-spy's statistics table, each line kept and said to be one
    after = [e for e in events if e.line > last.end_line]
    assert after and all(isinstance(e, DebugLine) and e.what == "stats" for e in after)
    assert not [e for e in events if isinstance(e, Unparsed)]


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
        r = pkspy(*args, str(trace))
        assert r.returncode == 0, r.stderr
        out = r.stdout.decode()
        assert not [f for f in forms if f in out], args


def test_no_raw_line_holds_a_pin(trace):
    forms = fixture_secret_forms(trace)
    for event in _events(trace, reveal=False):
        text = "\n".join(event.raw)
        assert not [f for f in forms if f in text], event.line


def test_pin_rows_are_masked_in_place():
    events = _events(DIR / "pyscard.txt", reveal=False)
    verify = [e for e in events if isinstance(e, ApduExchange) and e.command[:2] == b"\x00\x20"
              and e.command_data is not None]
    row = verify[0].raw[verify[0].command_span[0]]
    assert row == " i  0000 00 20 00 00 06 ** ** ** ** ** **                . ...******"


# -- what the fixtures do not show, from pcsc-spy's source ------------------------


def test_result_line_of_2_2_and_diffable_output():
    events = _lines("SCardBeginTransaction\n"
                    " i hCard: 0x????\n"
                    " => SCARD_E_NO_SMARTCARD [0x8010000C]  [??.??]\n"
                    "SCardCancel\n"
                    " i hCard: 0x1D6F2A3C\n"
                    " => SCARD_S_SUCCESS [0x00000000]  [0.000032]\n")
    begin, cancel = events
    assert (begin.function, begin.rv, begin.duration) == ("SCardBeginTransaction", 0x8010000C,
                                                          None)
    assert begin.args[0].value == "0x????"
    # pcsc-spy prints SCardCancel's context as "hCard"
    assert (cancel.args[0].name, cancel.args[0].value, cancel.duration) == (
        "hContext", 0x1D6F2A3C, 0.000032)


def test_threads_by_indentation_without_t():
    events = _lines("SCardEstablishContext\n"
                    " i dwScope: SCARD_SCOPE_USER (0x00000000)\n"
                    "    SCardIsValidContext\n"
                    "     i hContext: 0x2\n"
                    " o hContext: 0x1\n"
                    "     => SCARD_S_SUCCESS [0x00000000]  [0.000010]\n"
                    " => SCARD_S_SUCCESS [0x00000000]  [0.000020]\n")
    valid, establish = events
    assert (valid.tid, valid.function, valid.args[0].value) == ("t1", "SCardIsValidContext", 2)
    assert (establish.tid, establish.args[1].value) == ("t0", 1)
    assert establish.source_lines() == [1, 2, 5, 7]


def test_lines_of_two_threads_glued_into_one():
    events = _lines(" (t0) SCardControl\n"
                    " (t0)  i hCard: 0x1\n"
                    " (t0)  o bRecvBuffer     (t1) SCardIsValidContext\n"
                    "\n"
                    "     (t1)  i hContext: 0x2\n"
                    " (t0)  => Feature not supported. (SCARD_E_UNSUPPORTED_FEATURE "
                    "[0x8010001F])  [0.000071]\n"
                    "     (t1)  => Command successful. (SCARD_S_SUCCESS [0x00000000])  "
                    "[0.000008]\n")
    control, valid = events
    assert control.function == "SCardControl" and control.rv == 0x8010001F
    assert [a.name for a in control.args] == ["hCard", "bRecvBuffer"]
    assert valid.function == "SCardIsValidContext" and valid.args[0].value == 2
    # the glued line is kept once, whole, by the call of its first part
    assert 3 in control.source_lines() and 3 not in valid.source_lines()


def test_a_thread_that_died_leaves_its_call_incomplete():
    events = _lines("SCardListReaders\n"
                    " i hContext: 0x1\n"
                    " i mszGroups: (null)\n"
                    " o pcchReaders: NULL\n"
                    "Exception in thread Thread-1 (worker):\n"
                    "Traceback (most recent call last):\n"
                    '  File "/usr/bin/pcsc-spy", line 419, in log_out_n_str\n'
                    "    size = int(data, 16)\n"
                    "           ^^^^^^^^^^^^\n"
                    "ValueError: invalid literal for int() with base 16: 'NULL'\n"
                    "\n"
                    "Thread 1/1\n")
    tb, call, stats = events
    assert call.function == "SCardListReaders" and call.incomplete and call.rv is None
    assert call.args[-1].name == "mszReaders" and call.args[-1].value is None
    assert call.problems == ["pcsc-spy's thread stopped: ValueError: invalid literal for "
                             "int() with base 16: 'NULL'"]
    assert tb.what == "traceback" and tb.tid == "t0" and tb.source_lines() == list(range(5, 11))
    assert stats.what == "stats"


def test_garbage_unknown_functions_and_control_results_are_kept():
    events = _lines("Garbage:  00 20 00 00 06 37 33 31 39 30 32 \n"
                    "Unknown function: SCardFoo\n"
                    "SCarControl\n"
                    " i hCard: 0x1\n"
                    " i dwControlCode: CM_IOCTL_GET_FEATURE_REQUEST (0x42000D48)\n"
                    " i bSendLength 0x00000000 (0)\n"
                    " i bSendBuffer\n"
                    " o bRecvLength 0x00000006 (6)\n"
                    " o bRecvBuffer\n"
                    " o  0000 12 04 42 33 00 12                               ..B3..\n"
                    " => Command successful. (SCARD_S_SUCCESS [0x00000000])  [0.000100]\n"
                    "  parsing CM_IOCTL_GET_FEATURE_REQUEST results:\n"
                    "  Tag FEATURE_GET_TLV_PROPERTIES is 0x42330012\n"
                    "something else\n")
    garbage, unknown, control, parsing, tag, other = events
    assert garbage.what == "garbage" and garbage.secret == "PIN"
    assert unknown.what == "error"
    assert control.function == "SCardControl"
    assert control.args[-1].value == bytes.fromhex("120442330012")
    assert (parsing.what, tag.what, tag.function) == ("control", "control", "SCardControl")
    assert isinstance(other, Unparsed)
    redact = Redactor()
    shown = redact(garbage)
    assert "37 33 31 39 30 32" not in shown.message + shown.raw[0]
    assert shown.message.startswith("Garbage: 00 20 00 00 06 ‹PIN redacted")


def test_detection():
    assert detect(["SCardEstablishContext", " i dwScope: SCARD_SCOPE_USER (0x00000000)"]) == (
        "pcsc-spy")
    assert detect(["     (t1) SCardListReaders"]) == "pcsc-spy"
    assert detect(["\x1b[34mSCardEstablishContext\x1b[0m"]) == "pcsc-spy"


def test_coloured_pin_rows_are_masked_as_the_plain_ones():
    def rows(name: str) -> list[list[str]]:
        return [[ANSI.sub("", line) for line in e.raw]
                for e in _events(DIR / name, reveal=False)
                if isinstance(e, ApduExchange) and e.command_data is not None]

    assert rows("pyscard-color.txt") == rows("pyscard.txt")


def test_short_pin_in_a_coloured_row_is_masked():
    row = "\x1b[32m i  0000 00 20 00 00 03 31 32 33                         . ...123\x1b[0m"
    events = _lines("SCardTransmit\n"
                    "\x1b[32m i hCard: 0x1\x1b[0m\n"
                    "\x1b[32m i bSendLength 0x00000008 (8)\x1b[0m\n"
                    "\x1b[32m i bSendBuffer\x1b[0m\n"
                    f"{row}\n"
                    "\x1b[35m o bRecvBuffer\x1b[0m\n"
                    "\x1b[35m o  0000 90 00                                           ..\x1b[0m\n"
                    " => Command successful. (SCARD_S_SUCCESS [0x00000000])  [0.043909]\n")
    (apdu,) = events
    shown = Redactor()(apdu)
    assert shown.raw[4] == ("\x1b[32m i  0000 00 20 00 00 03 ** ** **                        "
                            " . ...***\x1b[0m")


# -- random PINs in a real record ----------------------------------------------------

PINS = [f"{random.Random(i).randrange(10**3, 10**12)}" if i % 2 else
        "".join(random.Random(i).choices([chr(c) for c in range(0x21, 0x7F)],
                                         k=random.Random(-i).randint(4, 16)))
        for i in range(30)]


def _hexdump(data: bytes) -> list[str]:
    """pcsc-spy's hexdump(): 16 bytes a row, hex padded to 47, a space, the ASCII."""
    rows = []
    for at in range(0, len(data), 16):
        chunk = data[at:at + 16]
        text = "".join(chr(c) if 31 < c < 127 else "." for c in chunk)
        rows.append(f" i  {at:04X} {' '.join(f'{c:02X}' for c in chunk).ljust(47)} {text}")
    return rows


@pytest.mark.parametrize("puk,new_pin", list(zip(PINS, reversed(PINS), strict=True)))
def test_random_pins_in_a_reset_retry_counter(puk, new_pin):
    data = puk.encode() + new_pin.encode()
    apdu = bytes([0x00, 0x2C, 0x00, 0x81, len(data)]) + data
    lines = (DIR / "pyscard.txt").read_text().splitlines()
    at = lines.index(" i  0000 00 20 00 00 06 37 33 31 39 30 32                . ...731902")
    lines[at - 2] = f" i bSendLength 0x{len(apdu):08X} ({len(apdu)})"
    text = "\n".join([*lines[:at], *_hexdump(apdu), *lines[at + 1:]]) + "\n"
    redact = Redactor()
    out = []
    for event in parse(((line, 0) for line in text.splitlines()), "pcsc-spy"):
        event = redact(event)
        out += [json.dumps(to_json(event), ensure_ascii=False), *event.raw]
    out_text = "\n".join(out)
    assert f"‹PUK and new PIN redacted, {len(data)} bytes›" in out_text
    for secret in (puk, new_pin):
        assert_no_secret(out_text, secret)


def assert_no_secret(out: str, secret: str) -> None:
    h = secret.encode().hex()
    spaced = " ".join(h[i:i + 2] for i in range(0, len(h), 2))
    for form in (h, h.upper(), spaced, spaced.upper()):
        assert form not in out
    if not secret.isdigit():
        assert secret not in out
    elif len(secret) >= 6:  # shorter numbers are also times, handles and offsets
        assert not re.search(rf"(?<![0-9]){secret}(?![0-9])", out)
