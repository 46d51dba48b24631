"""Property tests: random PINs put into real records of every format, in every
place a PIN goes, never come out of any output.

The traces are real fixtures with one record rewritten the way the tracer
prints it (pkcs11-display.c print_generic rows, OpenSC sc_hex_dump rows,
libpcscspy hex lines), so everything around the PIN stays real.
"""

from __future__ import annotations

import json
import re

from conftest import ROOT, source_lines
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from test_hex_apdu import EXCHANGES, FORMS

from pkspy.analysis import Analysis
from pkspy.formats import parse
from pkspy.model import to_json
from pkspy.redact import Redactor
from pkspy.report.export import Trace, render_markdown
from pkspy.report.lines import format_event

SPY = (ROOT / "fixtures/pkcs11-spy/pkcs11-spy-0.27.1-softhsm2.log").read_text()
OPENSC = (ROOT / "fixtures/opensc-debug/opensc-tool-d3.log").read_text()
PCSC = (ROOT / "fixtures/pcsc-spy/pyscard.raw").read_text()

PRINTABLE = st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E),
                    min_size=4, max_size=16)
DIGITS = st.text(alphabet="0123456789", min_size=4, max_size=12)
PINS = st.one_of(PRINTABLE, DIGITS)


def spy_dump(data: bytes) -> list[str]:
    """print_generic: 16 bytes a row, hex padded to 48, then the ASCII column."""
    rows = []
    for at in range(0, len(data), 16):
        chunk = data[at:at + 16]
        hexpart = "".join(f"{b:02X} " for b in chunk).ljust(48)
        text = "".join(chr(b) if 31 < b < 128 else "." for b in chunk).ljust(16)
        rows.append(f"    {at:08X}  {hexpart} {text}")
    return rows


def opensc_dump(data: bytes) -> list[str]:
    """sc_hex_dump: the first row unpadded, later rows padded to 16 slots."""
    rows = []
    for at in range(0, len(data), 16):
        chunk = data[at:at + 16]
        hexpart = "".join(f"{b:02X} " for b in chunk)
        if at:
            hexpart = hexpart.ljust(48)
        rows.append(hexpart + "".join(chr(b) if 32 <= b < 127 else "." for b in chunk))
    return rows


def outputs(text: str, fmt: str) -> str:
    """Everything pkspy would print for this trace: tail lines, JSON, raw, a report."""
    redactor = Redactor()
    trace = Trace("generated", fmt)
    trace.analysis.format = fmt
    parts = []
    for event in parse(source_lines(text), fmt):
        event = redactor(event)
        trace.analysis.add(event)
        trace.timeline.append(format_event(event))
        parts += [format_event(event), json.dumps(to_json(event)), *event.raw]
    parts.append(json.dumps(Analysis.summary(trace.analysis)))
    parts.append(render_markdown([trace]))
    return "\n".join(parts)


_BASE: dict[str, str] = {}


def ordinary(pin: str, fmt: str, text: str) -> bool:
    """Whether the PIN is not already ordinary output of the unchanged fixture
    ("AUTH" is in CKA_ALWAYS_AUTHENTICATE): such a PIN could not be told apart."""
    if fmt not in _BASE:
        _BASE[fmt] = outputs(text, fmt)
    return pin not in _BASE[fmt] and pin.encode().hex().upper() not in _BASE[fmt].upper()


def assert_no_pin(out: str, pin: str) -> None:
    raw = pin.encode()
    h = raw.hex()
    for form in (h, h.upper(), " ".join(re.findall("..", h)), " ".join(re.findall("..", h.upper())),
                 ":".join(re.findall("..", h))):
        assert form not in out, form
    if pin.isdigit():
        # A short number ("0000", "1234") is also ordinary text of a trace (times, line
        # numbers, offsets): only its hex forms prove a leak. Longer ones must be gone
        # wherever they are not part of a longer number.
        if len(pin) >= 6:
            assert not re.search(rf"(?<![0-9]){pin}(?![0-9])", out)
    else:
        assert pin not in out


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pin=PINS, new_pin=PINS)
def test_spy_pins_in_every_pin_argument(pin, new_pin):
    assume(ordinary(pin, "pkcs11-spy", SPY) and ordinary(new_pin, "pkcs11-spy", SPY))
    lines = SPY.splitlines()
    at = lines.index("7: C_Login")
    # C_Login of process 1 with this PIN, then C_SetPIN old -> new, C_InitPIN, C_InitToken
    def record(n, function, fields):
        out = [f"{n}: {function}", "P:2636; T:0x140636708403264 2026-11-27 14:16:11.878",
               "[in] hSession = 0x1"]
        for name, value in fields:
            out.append(f"[in] {name} 00007ffc96b21a2f / {len(value)}")
            out += spy_dump(value)
        return [*out, "Returned:  0 CKR_OK", ""]

    p, n = pin.encode(), new_pin.encode()
    login = [*lines[at:at + 4], f"[in] pPin[ulPinLen] 00007ffc96b21a2f / {len(p)}",
             *spy_dump(p), "Returned:  160 CKR_PIN_INCORRECT", ""]
    extra = (record(70, "C_SetPIN", [("pOldPin[ulOldLen]", p), ("pNewPin[ulNewLen]", n)])
             + record(71, "C_InitPIN", [("pPin[ulPinLen]", n)])
             + record(72, "C_InitToken", [("pPin[ulPinLen]", p)]))
    text = "\n".join(lines[:at] + login + extra + lines[at + 7:]) + "\n"
    out = outputs(text, "pkcs11-spy")
    assert "‹PIN redacted" in out and "‹new PIN redacted" in out
    assert_no_pin(out, pin)
    assert_no_pin(out, new_pin)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pin=PINS, padded=st.booleans())
def test_opensc_verify_apdus(pin, padded):
    assume(ordinary(pin, "opensc-debug", OPENSC))
    data = pin.encode() + (b"\xff" * (8 - len(pin)) if padded and len(pin) < 8 else b"")
    apdu = bytes([0x00, 0x20, 0x00, 0x81, len(data)]) + data
    lines = OPENSC.splitlines()
    at = lines.index("00 20 00 00 06 37 33 31 39 30 32 . ...731902")
    text = "\n".join([*lines[:at - 1], f"Outgoing APDU ({len(apdu)} bytes):",
                      *opensc_dump(apdu), *lines[at + 1:]]) + "\n"
    text = text.replace("731902", "").replace("37 33 31 39 30 32", "")  # the fixture's own PIN
    out = outputs(text, "opensc-debug")
    assert f"‹PIN redacted, {len(data)} bytes›" in out
    assert_no_pin(out, pin)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(puk=PINS, new_pin=PINS)
def test_pcsc_spy_reset_retry_counter(puk, new_pin):
    assume(ordinary(puk, "pcsc-spy-raw", PCSC) and ordinary(new_pin, "pcsc-spy-raw", PCSC))
    data = puk.encode() + new_pin.encode()
    apdu = bytes([0x00, 0x2C, 0x00, 0x81, len(data)]) + data
    lines = PCSC.splitlines()
    verify = "@00 20 00 00 06 37 33 31 39 30 32 "  # the fixture's VERIFY with a wrong PIN
    at = next(i for i, line in enumerate(lines) if line.endswith(verify))
    tid = lines[at].split("@")[0]
    lines[at - 1] = f"{tid}@0x{len(apdu):08X}"
    lines[at] = f"{tid}@" + "".join(f"{b:02X} " for b in apdu)
    out = outputs("\n".join(lines) + "\n", "pcsc-spy-raw")
    assert f"‹PUK and new PIN redacted, {len(data)} bytes›" in out
    assert_no_pin(out, puk)
    assert_no_pin(out, new_pin)


PCSCD = (ROOT / "fixtures/pcscd/pcscd-apdu.log").read_text()
PCSC_TEXT = (ROOT / "fixtures/pcsc-spy/pyscard.txt").read_text()
# The PIN commands (ISO 7816-4): VERIFY, CHANGE REFERENCE DATA, RESET RETRY COUNTER;
# P1 00 for the last two carries the old PIN / PUK and the new PIN one after the other.
PIN_COMMANDS = st.sampled_from([(0x20, 0x00), (0x24, 0x00), (0x2C, 0x00), (0x2C, 0x01)])


def pin_apdu(ins: int, p1: int, pin: str, new_pin: str) -> bytes:
    data = pin.encode() + (new_pin.encode() if (ins, p1) in ((0x24, 0x00), (0x2C, 0x00))
                           else b"")
    return bytes([0x00, ins, p1, 0x81, len(data)]) + data


def check(out: str, apdu: bytes, *pins: str) -> None:
    assert f"redacted, {apdu[4]} bytes›" in out
    for pin in pins:
        assert_no_pin(out, pin)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pin=PINS, new_pin=PINS, command=PIN_COMMANDS)
def test_pcscd_pin_apdus(pin, new_pin, command):
    """pcscd -d -a: debuglog.c log_xxd prints the whole APDU on one line."""
    assume(ordinary(pin, "pcscd", PCSCD) and ordinary(new_pin, "pcscd", PCSCD))
    apdu = pin_apdu(*command, pin, new_pin)
    line = "00000004 APDU: 00 20 00 00 06 37 33 31 39 30 32 "  # the fixture's wrong PIN
    assert line in PCSCD
    text = PCSCD.replace(line, "00000004 APDU: " + "".join(f"{b:02X} " for b in apdu))
    check(outputs(text, "pcscd"), apdu, pin, new_pin)


def pcsc_spy_rows(data: bytes) -> list[str]:
    """pcsc-spy's hexdump of a sent buffer: offset, 16 bytes padded to 48, ASCII."""
    rows = []
    for at in range(0, len(data), 16):
        chunk = data[at:at + 16]
        text = "".join(chr(b) if 32 <= b < 127 else "." for b in chunk)
        rows.append(f" i  {at:04X} " + "".join(f"{b:02X} " for b in chunk).ljust(48) + text)
    return rows


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pin=PINS, new_pin=PINS, command=PIN_COMMANDS)
def test_pcsc_spy_printed_pin_apdus(pin, new_pin, command):
    """pcsc-spy's printed output: the hex rows and their ASCII column."""
    assume(ordinary(pin, "pcsc-spy", PCSC_TEXT) and ordinary(new_pin, "pcsc-spy", PCSC_TEXT))
    apdu = pin_apdu(*command, pin, new_pin)
    lines = PCSC_TEXT.splitlines()
    at = lines.index(" i  0000 00 20 00 00 06 37 33 31 39 30 32                . ...731902")
    assert lines[at - 2] == " i bSendLength 0x0000000B (11)"
    lines[at - 2] = f" i bSendLength 0x{len(apdu):08X} ({len(apdu)})"
    text = "\n".join([*lines[:at], *pcsc_spy_rows(apdu), *lines[at + 1:]]) + "\n"
    check(outputs(text, "pcsc-spy"), apdu, pin, new_pin)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pin=PINS, new_pin=PINS, command=PIN_COMMANDS, form=st.sampled_from(sorted(FORMS)))
def test_pasted_hex_pin_apdus(pin, new_pin, command, form):
    """The card's real exchanges pasted in each way people paste them, one PIN
    command among them."""
    def pasted(replaced: bytes | None) -> str:
        lines = []
        for i, (c, r, step) in enumerate(EXCHANGES):
            lines += FORMS[form](replaced if i == 3 and replaced else c, r, step)
        return "\n".join(lines) + "\n"

    key = f"hex-apdu {form}"  # the unchanged exchanges pasted this way
    if key not in _BASE:
        _BASE[key] = outputs(pasted(None), "hex-apdu")
    base = _BASE[key]
    assume(all(p not in base and p.encode().hex().upper() not in base.upper()
               for p in (pin, new_pin)))
    apdu = pin_apdu(*command, pin, new_pin)
    check(outputs(pasted(apdu), "hex-apdu"), apdu, pin, new_pin)
