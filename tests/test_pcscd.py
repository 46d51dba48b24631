"""pcscd's debug output with APDUs (pkspy/formats/pcscd.py) over real logs of
pcscd 1.9.9 -f -d -a (fixtures/pcscd, made by fixtures/make_card_fixtures.py),
checked against the card's own journal (`.expected.json`, never read from the
trace). pcscd-apdu.log is the same run as fixtures/pcsc-spy/pyscard.raw.
"""

from __future__ import annotations

import json
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
from test_pcsc_spy_text import PINS, assert_no_secret

from pkspy.formats import detect, parse
from pkspy.formats.pcscd import PcscdParser
from pkspy.model import ApduExchange, DebugLine, Event, Unparsed, to_json
from pkspy.pipeline import open_events
from pkspy.redact import Redactor

DIR = ROOT / "fixtures" / "pcscd"
TRACES = sorted(DIR.glob("*.log"))
SPY_RUN = ROOT / "fixtures" / "pcsc-spy" / "pyscard.raw.expected.json"
TIME = re.compile(r"^\+\d+\.\d{6}s$")
ANSI = re.compile(r"\x1b\[[0-9;]*m")


@pytest.fixture(params=TRACES, ids=lambda p: p.stem)
def trace(request) -> Path:
    return request.param


def _events(trace: Path, reveal: bool = True) -> list[Event]:
    return list(open_events(str(trace), reveal=reveal)[1])


def _lines(text: str) -> list[Event]:
    return list(parse(((line, 0) for line in text.splitlines()), "pcscd"))


def test_detected_and_counted_as_the_card_saw_it(trace):
    s, truth = summary(trace), expected(trace)
    assert s["format"] == "pcscd"
    assert s["apdus"] == truth["apdus"]
    assert s["apdus_unanswered"] == 0
    assert s["status_words"] == truth["status_words"]
    assert s["readers"] == truth["readers"]
    assert s["atr"] == [truth["atr"]]
    assert s["unparsed_lines"] == 0
    # every exchange came with a client's SCardTransmit, which succeeded
    assert s["pcsc_calls_by_function"] == {"SCardTransmit": truth["apdus"]}
    assert s["failed_pcsc_calls"] == []


def test_every_exchange_in_order(trace):
    truth = expected(trace)
    apdus = [e for e in _events(trace) if isinstance(e, ApduExchange)]
    want = [(x["command"].upper(), x["response"].upper(), x["sw"].upper())
            for x in truth["exchanges"]]
    got = [(a.command.hex().upper(), a.response.hex().upper(), f"{a.sw:04X}") for a in apdus]
    assert got == want
    for a in apdus:
        assert (a.function, a.rv, a.reader, a.incomplete) == ("SCardTransmit", 0,
                                                             truth["reader"], False)
        # the SW line's delta is the card's time: vicc answers in about 40 ms
        assert 0.01 < a.duration < 1
        command, response = (ANSI.sub("", line) for line in a.raw)
        assert " APDU: " in command and " SW: " in response


def test_failed_client_calls_carry_their_result(trace):
    """The client calls that failed in the pyscard run (without the transmit on a wrong
    handle: the client library refuses it, pcscd never sees it)."""
    spy = json.loads(SPY_RUN.read_text())
    want = [(f["function"], f["rv"]) for f in spy["failed_calls"]
            if f["function"] != "SCardTransmit"]
    names = {"GET_ATTRIB": "SCardGetAttrib", "CONTROL": "SCardControl"}
    failed = [e for e in _events(trace) if isinstance(e, DebugLine) and e.rv]
    assert [(names[e.message.split()[0]], f"0x{e.rv:08X}") for e in failed] == want
    assert all(e.what == "pcsc" and e.function == "ContextThread"
               and re.fullmatch(r"\w+ for client \d+", e.message) for e in failed)
    # and pkspy tail shows them
    tail = pkspy("tail", "--no-follow", str(trace)).stdout.decode().splitlines()
    assert len([line for line in tail if "SCARD_E_UNSUPPORTED_FEATURE" in line]) == len(want)


def test_time_is_a_running_offset(trace):
    events = _events(trace)
    times = [float(e.time[1:-1]) for e in events]
    assert all(TIME.match(e.time) for e in events)
    assert events[0].time == "+0.000000s" and times == sorted(times)
    source = [line for line in trace.read_text().splitlines() if line.strip()]
    deltas = sum(int(ANSI.sub("", line)[:8]) for line in source)
    assert times[-1] == pytest.approx(deltas / 1e6)


def test_thread_ids_of_the_coloured_log():
    events = _events(DIR / "pcscd-color.log")
    # pcscd reads -T after its first two lines: those are plain, with no thread id
    assert [e.tid for e in events[:2]] == [None, None]
    assert all(e.tid and e.tid.isdigit() for e in events[2:])
    apdus = [e for e in events if isinstance(e, ApduExchange)]
    assert len({a.tid for a in apdus}) == 1  # the one client's thread
    assert all(e.tid is None for e in _events(DIR / "pcscd-apdu.log"))


def test_readers_and_atr_lines(trace):
    events = [e for e in _events(trace) if isinstance(e, DebugLine)]
    truth = expected(trace)
    assert {e.reader for e in events if e.reader} == set(truth["readers"])
    atrs = [e for e in events if e.atr]
    # at insertion, and again after SCardReconnect with SCARD_RESET_CARD
    assert len(atrs) >= 2 and {e.atr for e in atrs} == {truth["atr"]}
    assert all(e.message.startswith("Card ATR:") for e in atrs)


def test_pin_commands_keep_header_and_length_only(trace):
    assert_pin_commands_redacted(trace)


def test_no_output_holds_a_pin(trace):
    forms = fixture_secret_forms(trace)
    assert any(f in trace.read_text() for f in forms), "the fixture should hold PINs in clear"
    for args in (("tail", "--no-follow"), ("tail", "--no-follow", "--json"), ("summary",),
                 ("summary", "--json")):
        r = pkspy(*args, str(trace))
        assert r.returncode == 0, r.stderr
        out = r.stdout.decode()
        assert not [f for f in forms if f in out], args
    for event in _events(trace, reveal=False):
        text = "\n".join(event.raw)
        assert not [f for f in forms if f in text], event.line


# -- what the fixtures do not show, from pcscd's source --------------------------


def test_driver_failure_leaves_no_response():
    events = _lines(
        "00000010 winscard_svc.c:361:ContextThread() Received command: TRANSMIT from client 3\n"
        "00000002 winscard.c:1596:SCardTransmit() Send Protocol: T=0\n"
        "00000003 APDU: 00 B0 00 00 10 \n"
        "00000900 SW: \n"
        "00000004 ifdwrapper.c:543:IFDTransmit() Card not transacted: 612\n"
        "00000003 winscard.c:1621:SCardTransmit() Card not transacted: "
        "rv=SCARD_E_NOT_TRANSACTED\n"
        "00000004 winscard_svc.c:694:ContextThread() TRANSMIT for client 3, "
        "rv=SCARD_E_NOT_TRANSACTED\n")
    kinds = [e.kind for e in events]
    assert kinds == ["debug", "debug", "apdu", "debug", "debug", "debug"]  # in line order
    apdu = events[2]
    assert apdu.response is None and apdu.sw is None and apdu.incomplete
    assert (apdu.function, apdu.rv) == ("SCardTransmit", 0x80100016)
    assert apdu.duration == 0.0009 and apdu.source_lines() == [3, 4]
    assert events[4].rv == 0x80100016 and events[4].what == "pcsc"


def test_exchanges_wait_for_their_result_line_only_when_it_comes():
    # at --info level pcscd logs APDU and SW lines but no "TRANSMIT for client" line
    apdu, = _lines("00000003 APDU: 00 A4 00 0C 02 3F 00 \n"
                   "00043000 SW: 90 00 \n")
    assert (apdu.sw, apdu.function, apdu.rv, apdu.incomplete) == (0x9000, None, None, False)
    p = PcscdParser()
    assert p.feed("00000001 winscard_svc.c:361:ContextThread() Received command: TRANSMIT "
                  "from client 3", 1, 0)
    assert p.feed("00000003 APDU: 00 A4 00 0C 02 3F 00 ", 2, 0) == []
    assert p.feed("00043000 SW: 90 00 ", 3, 0) == []
    assert p.feed("00000004 winscard.c:1649:SCardTransmit() UnrefReader() count was: 2", 4,
                  0) == []
    out = p.feed("00000004 winscard_svc.c:694:ContextThread() TRANSMIT for client 3, "
                 "rv=SCARD_S_SUCCESS", 5, 0)
    assert [e.line for e in out] == [2, 4, 5] and out[0].rv == 0


def test_threads_pair_by_thread_id():
    events = _lines(
        "\x1b[36m00000003\x1b[0m [11] \x1b[34mAPDU: 00 B0 00 00 00 \x1b[0m\n"
        "\x1b[36m00000003\x1b[0m [22] \x1b[34mAPDU: 00 C0 00 00 10 \x1b[0m\n"
        "\x1b[36m00010000\x1b[0m [22] \x1b[34mSW: 6A 82 \x1b[0m\n"
        "\x1b[36m00020000\x1b[0m [11] \x1b[34mSW: 90 00 \x1b[0m\n")
    first, second = [e for e in events if isinstance(e, ApduExchange)]
    assert (first.tid, first.command[1], first.sw) == ("11", 0xB0, 0x9000)
    assert (second.tid, second.command[1], second.sw) == ("22", 0xC0, 0x6A82)
    assert first.source_lines() == [1, 4] and first.duration == 0.030003


def test_odd_lines():
    events = _lines("99999999 pcscdaemon.c:666:main() pcsc-lite 2.3.0 daemon ready.\n"
                    "-00000120 winscard_svc.c:361:ContextThread() Received command: "
                    "CMD_VERSION from client 5\n"
                    "00000002 winscard_svc.c:396:ContextThread() CMD_VERSION for client 5, "
                    "Unknown error: 0x80100099\n"
                    "00000002 SW: 90 00 \n"
                    "a driver's own line\n"
                    "00000003 APDU: 00 B0 00 00 00 \n")
    ready, version, result, orphan, driver, unanswered = events
    assert ready.time == "≥+99.999999s"  # a capped delta: later times are lower bounds
    assert version.time == "≥+99.999879s"  # the clock stepped back
    assert result.rv == 0x80100099 and result.what == "pcsc"
    assert orphan.command == b"" and orphan.sw == 0x9000
    assert isinstance(driver, Unparsed)
    assert unanswered.incomplete and unanswered.response is None


def test_detection():
    assert detect(["00000000 debuglog.c:390:DebugLogSetLevel() debug level=debug"]) == "pcscd"
    assert detect(["\x1b[36m00000004\x1b[0m [139928119097344] \x1b[34mpcscdaemon.c:356:main() "
                   "Force colored logs\x1b[0m"]) == "pcscd"
    assert detect(["00000004 [0x16fdf3000] readerfactory.c:1093:RFInitializeReader() x"]) == (
        "pcscd")


def test_short_pin_on_the_apdu_line_is_masked():
    (apdu,) = _lines("00000003 APDU: 00 20 00 81 03 31 32 33 \n"
                     "00043000 SW: 90 00 \n")
    shown = Redactor()(apdu)
    assert shown.raw[0] == "00000003 APDU: 00 20 00 81 03 ** ** ** "


@pytest.mark.parametrize("puk,new_pin", list(zip(PINS, reversed(PINS), strict=True)))
def test_random_pins_in_a_reset_retry_counter(puk, new_pin):
    data = puk.encode() + new_pin.encode()
    apdu = bytes([0x00, 0x2C, 0x00, 0x81, len(data)]) + data
    for trace in TRACES:
        text = trace.read_text()
        old = "APDU: 00 20 00 00 06 37 33 31 39 30 32 "
        assert old in text
        text = text.replace(old, "APDU: " + "".join(f"{b:02X} " for b in apdu))
        redact = Redactor()
        out = []
        for event in parse(((line, 0) for line in text.splitlines()), "pcscd"):
            event = redact(event)
            out += [json.dumps(to_json(event), ensure_ascii=False), *event.raw]
        out_text = "\n".join(out)
        assert f"‹PUK and new PIN redacted, {len(data)} bytes›" in out_text
        for secret in (puk, new_pin):
            assert_no_secret(out_text, secret)
