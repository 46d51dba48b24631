"""APDUs pasted as hex (pkspy/formats/hex_apdu.py).

No program prints this form, so there is no fixture file for it: the texts here
are built, inside the test, from the card's own journal of a real run
(fixtures/pcscd/pcscd-apdu.log.expected.json, `exchanges`: what the virtual
card received and answered), written out in the forms people paste. The
expected counts come from the same file.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import ROOT, fixture_secret_forms, pkspy
from test_pcsc_spy_text import PINS, assert_no_secret

from pkspy.formats import detect, parse
from pkspy.model import ApduExchange, DebugLine, Redacted, Unparsed, to_json
from pkspy.pipeline import open_events
from pkspy.redact import Redactor

TRUTH = json.loads((ROOT / "fixtures" / "pcscd" / "pcscd-apdu.log.expected.json").read_text())
EXCHANGES = [(bytes.fromhex(x["command"]), bytes.fromhex(x["response"]), x.get("step"))
             for x in TRUTH["exchanges"]]


def _spaced(data: bytes) -> str:
    return data.hex(" ").upper()


# Each form: (command line, response line) of one exchange.
FORMS = {
    "angle": lambda c, r, s: (f"> {_spaced(c)}", f"< {_spaced(r)}"),
    "arrows-lower-nospace": lambda c, r, s: (f"=> {c.hex()}", f"<= {r.hex()}"),
    "c-r-colons": lambda c, r, s: (f"C: {c.hex(':').upper()}", f"R: {r.hex(':').upper()}"),
    "dash-arrows-comments": lambda c, r, s: (f"-> {_spaced(c)}   # {s}", f"<- {_spaced(r)}  OK"),
    "send-recv": lambda c, r, s: (f"Send: {_spaced(c)}", f"Recv: {r.hex().upper()}"),
    "bare": lambda c, r, s: (_spaced(c), _spaced(r)),
}


def _text(form: str) -> str:
    lines = []
    for i, (command, response, step) in enumerate(EXCHANGES):
        if form == "bare" and i % 9 == 0:
            lines += [f"# step {i}: {step}", ""]  # comments and blank lines between
        lines += FORMS[form](command, response, step)
    return "\n".join(lines) + "\n"


@pytest.fixture(params=sorted(FORMS))
def pasted(request, tmp_path) -> Path:
    path = tmp_path / f"{request.param}.txt"
    path.write_text(_text(request.param))
    return path


def _lines(text: str) -> list:
    return list(parse(((line, 0) for line in text.splitlines()), "hex-apdu"))


def test_every_exchange_in_order(pasted):
    fmt, events = open_events(str(pasted), reveal=True)
    assert fmt == "hex-apdu"
    events = list(events)
    apdus = [e for e in events if isinstance(e, ApduExchange)]
    assert [(a.command, a.response, a.sw) for a in apdus] == [
        (c, r, int.from_bytes(r[-2:], "big")) for c, r, _ in EXCHANGES]
    assert not [e for e in events if isinstance(e, Unparsed)]
    assert not [a for a in apdus if a.incomplete]
    for e in events:
        assert e.source_lines() == [e.line] + ([e.end_line] if len(e.raw) > 1 else [])


def test_summary_counts_as_the_card_saw_it(pasted):
    r = pkspy("summary", "--json", str(pasted))
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)
    assert s["format"] == "hex-apdu"
    assert s["apdus"] == TRUTH["apdus"]
    assert s["status_words"] == TRUTH["status_words"]
    assert s["unparsed_lines"] == 0


def test_no_output_holds_a_pin(pasted):
    forms = fixture_secret_forms(ROOT / "fixtures" / "pcscd" / "pcscd-apdu.log")
    assert any(f in pasted.read_text() for f in forms)
    for args in (("tail", "--no-follow"), ("tail", "--no-follow", "--json"), ("summary",),
                 ("summary", "--json")):
        r = pkspy(*args, str(pasted))
        assert r.returncode == 0, r.stderr
        out = r.stdout.decode()
        assert not [f for f in forms if f in out], args
    events = list(open_events(str(pasted))[1])
    for event in events:
        text = "\n".join(event.raw)
        assert not [f for f in forms if f in text], event.line
    pins = [e for e in events if isinstance(e, ApduExchange) and e.command_data is not None]
    assert len(pins) == TRUTH["pin_apdus"]
    assert all(isinstance(p.command_data, Redacted) and len(p.command) == 5 for p in pins)


def test_spaced_rows_are_masked_in_place(tmp_path):
    path = tmp_path / "bare.txt"
    path.write_text(_text("bare"))
    events = list(open_events(str(path))[1])
    verify = next(e for e in events if isinstance(e, ApduExchange) and e.command_data
                  and e.command[4] == 6)
    assert verify.raw[0] == "00 20 00 00 06 ** ** ** ** ** **"


# -- malformed input ---------------------------------------------------------------


def test_odd_digit_counts():
    events = _lines("> 00 A4 0 400 02 3F 00\n"
                    "< 90 00\n"
                    "00A40400070\n"
                    "6A 82\n"
                    "> 00 B0 00 00 00\n"
                    "< 6 2 82\n")
    bad_command, orphan, bad_bare, orphan2, unanswered, bad_response = events
    assert isinstance(bad_command, Unparsed) and "odd number of hex digits" in bad_command.reason
    # the response is not paired with another command
    assert orphan.command == b"" and orphan.sw == 0x9000
    assert "could not be read" in orphan.header
    assert isinstance(bad_bare, Unparsed) and bad_bare.reason.startswith("command line")
    assert orphan2.command == b"" and orphan2.sw == 0x6A82
    assert isinstance(bad_response, Unparsed)
    assert unanswered.command == bytes.fromhex("00B0000000") and unanswered.incomplete
    assert "its response line could not be read" in unanswered.header


def test_a_command_with_no_response():
    events = _lines("> 00 A4 00 0C 02 3F 00\n"
                    "> 00 B0 00 00 00\n"
                    "< 90 00\n"
                    "C: 00 C0 00 00 16\n")
    first, second, last = events
    assert first.incomplete and first.response is None
    assert first.header == "[no response: another command followed]"
    assert second.response == b"\x90\x00" and not second.incomplete
    assert last.incomplete and last.header == "[no response: the text ended]"


def test_responses_comments_and_text():
    events = _lines("# VERIFY, then a response with no command\n"
                    "< 63 C2\n"
                    "90 00\n"
                    "00 A4 04 00 02 3F 00    // SELECT MF\n"
                    "90 00 OK\n"
                    "hello world\n"
                    "> SELECT\n")
    comment, orphan, short, select, text, no_bytes = events
    assert isinstance(comment, DebugLine) and comment.message.startswith("# VERIFY")
    assert orphan.command == b"" and orphan.header == "[a response with no command]"
    # with no prefix, two bytes cannot be a command: a response
    assert short.command == b"" and short.sw == 0x9000
    assert select.command == bytes.fromhex("00A40400023F00")
    assert select.header == "// SELECT MF / OK" and select.sw == 0x9000
    assert isinstance(text, Unparsed) and text.reason == "not a hex APDU line"
    assert isinstance(no_bytes, Unparsed) and no_bytes.reason == "command line: no hex bytes"


# -- detection ---------------------------------------------------------------------


def test_detection_is_strict():
    assert detect(["> 00 A4 04 00 07 A0 00 00 00 03 10 10"]) == "hex-apdu"
    assert detect(["C:00A4040007A0000000031010", "R:9000"]) == "hex-apdu"
    assert detect(["# pasted", "00 A4 00 0C 02 3F 00", "", "90 00"]) == "hex-apdu"
    assert detect(["00A4000C023F00"]) is None  # one bare line could be anything
    assert detect(["00 A4 00 0C 02 3F 00", "90 00", "and then it failed"]) is None
    assert detect(["Hello", "> world"]) is None


def test_other_formats_are_not_taken_for_hex():
    traces = [p for d in ("pkcs11-spy", "opensc-debug", "pcsc-spy", "pcscd", "p11-kit",
                          "pkcs11-logger")
              for p in (ROOT / "fixtures" / d).iterdir()
              if p.suffix in (".log", ".raw", ".txt")]
    for trace in traces:
        lines = trace.read_text(errors="replace").splitlines()
        assert detect(lines) not in (None, "hex-apdu"), trace.name
        # nor their middle parts (a cut trace): whatever they are, not hex APDUs
        assert detect(lines[len(lines) // 2:]) != "hex-apdu", trace.name


def test_short_pin_on_a_prefixed_line_is_masked():
    (apdu,) = _lines("> 00:20:00:81:03:31:32:33\n< 90 00\n")
    shown = Redactor()(apdu)
    assert shown.raw[0] == "> 00:20:00:81:03:**:**:**"


@pytest.mark.parametrize("pin,form", [(pin, sorted(FORMS)[i % len(FORMS)])
                                      for i, pin in enumerate(PINS)])
def test_random_pins_in_a_verify(pin, form):
    data = pin.encode()
    command = bytes([0x00, 0x20, 0x00, 0x81, len(data)]) + data
    text = "\n".join([*FORMS[form](*EXCHANGES[0]), *FORMS[form](command, b"\x90\x00", "verify"),
                      *FORMS[form](*EXCHANGES[1])]) + "\n"
    redact = Redactor()
    out = []
    for event in _lines(text):
        event = redact(event)
        out += [json.dumps(to_json(event), ensure_ascii=False), *event.raw]
    out_text = "\n".join(out)
    assert f"‹PIN redacted, {len(data)} bytes›" in out_text
    assert_no_secret(out_text, pin)
    assert pin.encode().hex(":") not in out_text.lower()
