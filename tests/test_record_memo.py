"""The summary's spy reader (pkspy/record_memo.py) gives the full decoder's events.

A record whose text was read before is copied, not parsed again. These tests read
real traces both ways and compare every event field, raw lines included, on
repeated runs (where copies are made), on damaged traces, and on
the two things a copy depends on besides its text: the object classes the parser
knows and the secrets the redactor knows.
"""

from __future__ import annotations

import dataclasses
import io
import re
from pathlib import Path

import pytest
from conftest import SPY_TRACES, fixture_secret_forms
from fuzz_mutations import mutation, window
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_fuzz_parsers import parse_bytes, record_blocks

from pkspy import fastscan, record_memo
from pkspy.analysis import Analysis
from pkspy.formats.spy import SpyParser
from pkspy.model import Event, Pkcs11Call, Redacted
from pkspy.pipeline import open_events
from pkspy.redact import Redactor
from pkspy.report import summary

PYKCS11 = next(p for p in SPY_TRACES if p.name == "softhsm2-pykcs11.log")


def memo_events(data: bytes) -> tuple[list[Event], record_memo.MemoReader]:
    parser, redact = SpyParser(), Redactor()
    reader = record_memo.MemoReader(parser, redact)
    events = list(reader.events(io.BytesIO(data), 0, len(data), 1))
    events += [redact(e) for e in parser.close()]
    return events, reader


def full_events(path: Path) -> list[Event]:
    _, events = open_events(str(path), fmt="pkcs11-spy", copies=False)
    return list(events)


def fields(event: Event) -> dict:
    """Everything an event says, its raw lines included."""
    return {"type": type(event).__name__} | {f.name: getattr(event, f.name)
                                              for f in dataclasses.fields(event)}


def assert_same_events(path: Path) -> record_memo.MemoReader:
    memo, reader = memo_events(path.read_bytes())
    assert [fields(e) for e in memo] == [fields(e) for e in full_events(path)]
    return reader


def runs(*parts: bytes) -> bytes:
    """Each part as a run of its own, after the spy's banner."""
    banner = b"\n\n*************** OpenSC PKCS#11 spy *****************\nLoaded: \"m.so\"\n\n"
    return b"".join(banner + part for part in parts)


def record(path: Path, seq: int, function: str) -> bytes:
    """The text of the first call ``seq: function``, up to its blank line."""
    text = path.read_bytes()
    at = re.search(rb"^%d: %s\n" % (seq, function.encode()), text, re.MULTILINE).start()
    return text[at:text.index(b"\n\n", at) + 2]


@pytest.mark.parametrize("trace", SPY_TRACES, ids=lambda p: p.stem)
def test_every_spy_fixture_read_twice(trace: Path, tmp_path: Path) -> None:
    """The second copy of each fixture is copies of the first where its records were clean."""
    doubled = tmp_path / trace.name
    doubled.write_bytes(trace.read_bytes() * 2)
    reader = assert_same_events(doubled)
    assert reader.copies > 0


@pytest.mark.parametrize("trace", SPY_TRACES, ids=lambda p: p.stem)
def test_a_windows_log_read_twice(trace: Path, tmp_path: Path) -> None:
    """The spy on Windows ends its lines with CRLF: records end at CRLF CRLF there."""
    crlf = tmp_path / trace.name
    crlf.write_bytes(trace.read_bytes().replace(b"\n", b"\r\n") * 2)
    reader = assert_same_events(crlf)
    assert reader.copies > 0 and reader.gap == b"\r\n\r\n"


def test_summary_of_repeated_runs_is_the_full_decoders(tmp_path: Path) -> None:
    """fastscan reads every chunk of a spy log with it: one chunk, and many."""
    trace = tmp_path / "all.log"
    trace.write_bytes(b"".join(p.read_bytes() for p in SPY_TRACES) * 3)
    expected = summary.summarize(str(trace), parallel=False)
    one = fastscan.read_chunk(str(trace), fastscan.Chunk(0, trace.stat().st_size), [], True)
    assert one.analysis.summary() == expected
    assert fastscan.summarize(str(trace), "pkcs11-spy", workers=2, pieces=9) == expected


def test_a_copy_is_not_made_where_the_object_class_differs(tmp_path: Path) -> None:
    """The same C_GetAttributeValue text reads CKA_VALUE of handle 0x8: public where the
    run made 0x8 a certificate, a secret where it generated 0x8 as an AES key (whose
    value no earlier record showed: only the class tells them apart)."""
    read_value = record(PYKCS11, 49, "C_GetAttributeValue")  # hObject 0x8, CKA_VALUE dumped
    aes_key = record(PYKCS11, 17, "C_GenerateKey")
    certificate = record(PYKCS11, 20, "C_CreateObject")
    assert b"CKO_CERTIFICATE" in certificate and b"CKM_AES_KEY_GEN" in aes_key
    certificate = re.sub(rb"\*phObject = 0x\w+", b"*phObject = 0x8", certificate)
    aes_key = re.sub(rb"hKey = 0x\w+", b"hKey = 0x8", aes_key)
    trace = tmp_path / "classes.log"
    trace.write_bytes(runs(certificate + read_value + read_value, aes_key + read_value))
    reader = assert_same_events(trace)
    assert reader.copies >= 1  # the second read in the first run
    values = [next(a for a in e.arg("pTemplate", "out").value if a.name == "CKA_VALUE").value
              for e in memo_events(trace.read_bytes())[0]
              if isinstance(e, Pkcs11Call) and e.function == "C_GetAttributeValue"]
    assert [isinstance(v, Redacted) for v in values] == [False, False, True]
    for form in fixture_secret_forms(PYKCS11):
        assert form not in repr(values[-1])


def test_a_copy_is_not_made_where_the_redactor_learned_a_secret(tmp_path: Path) -> None:
    """Data to sign that holds the user PIN is shown until C_Login shows the PIN, and
    masked after it: the same record text, redacted two ways."""
    login = record(PYKCS11, 8, "C_Login")
    pin_row = re.search(rb"\n(    00000000  [^\n]*)\n", login).group(1)
    pin = bytes.fromhex(pin_row[14:62].decode())
    sign = re.sub(rb"/ 28\n    00000000  [^\n]*\n    00000010  [^\n]*\n",
                  b"/ %d\n%s\n" % (len(pin), pin_row), record(PYKCS11, 66, "C_Sign"))
    assert pin_row in sign and b"CKR_OK" in login
    trace = tmp_path / "learned.log"
    trace.write_bytes(runs(sign + sign + login + sign + sign))
    reader = assert_same_events(trace)
    assert reader.copies >= 2  # before the PIN was known, and after
    signs = [e for e in memo_events(trace.read_bytes())[0]
             if isinstance(e, Pkcs11Call) and e.function == "C_Sign"]
    data = [e.arg("pData").value for e in signs]
    assert data[:2] == [pin, pin] and all(isinstance(d, Redacted) for d in data[2:])


FUZZ = settings(max_examples=300, deadline=None, derandomize=True,
                suppress_health_check=list(HealthCheck), database=None)


@FUZZ
@given(data=st.data())
def test_damaged_traces_read_twice(data, tmp_path_factory) -> None:
    """A window of a real trace, damaged, then read twice: where a record repeats, the
    copy must be what the parser makes of it, torn, cut or not."""
    path = data.draw(st.sampled_from(SPY_TRACES))
    lines = data.draw(window(path))
    damaged = data.draw(mutation(lines, record_blocks(parse_bytes(b"".join(lines),
                                                                  "pkcs11-spy"))))
    text = b"".join(damaged.lines) * 2
    if data.draw(st.booleans()):  # as the spy writes on Windows
        text = text.replace(b"\n", b"\r\n")
    trace = tmp_path_factory.mktemp("fuzz") / "damaged.log"
    trace.write_bytes(text)
    assert_same_events(trace)


def test_analysis_of_copies_equals_the_full_analysis(tmp_path: Path) -> None:
    """Copies share their arguments with the first record: nothing downstream changes them."""
    trace = tmp_path / "twice.log"
    trace.write_bytes(PYKCS11.read_bytes() * 4)
    events, reader = memo_events(trace.read_bytes())
    assert reader.copies > 100
    mine, full = Analysis(format="pkcs11-spy"), Analysis(format="pkcs11-spy")
    for e in events:
        mine.add(e)
    for e in full_events(trace):
        full.add(e)
    assert mine.summary() == full.summary()


def test_copies_mask_a_pin_in_their_own_header_and_stamp(tmp_path: Path) -> None:
    """A numeric PIN that is also the year: once learned, the redactor masks it in every
    stamp line; a copy's own stamp (not the original's) must be masked the same way."""
    login = record(PYKCS11, 8, "C_Login")
    login = re.sub(rb"/ 11\n    00000000  [^\n]*\n",
                   b"/ 4\n    00000000  32 30 32 36" + b" " * 37 + b"2026\n", login)
    sign = record(PYKCS11, 66, "C_Sign")
    trace = tmp_path / "year.log"
    trace.write_bytes(runs(sign + sign + login + sign + sign.replace(b"14:46:06", b"14:47:07")))
    reader = assert_same_events(trace)
    assert reader.copies >= 2
    events = memo_events(trace.read_bytes())[0]
    stamps = [e.raw[1] for e in events if isinstance(e, Pkcs11Call)]
    assert [s.startswith("2026-") for s in stamps] == [True, True, False, False, False]


@pytest.mark.parametrize("trace", SPY_TRACES, ids=lambda p: p.stem)
def test_open_events_copies_for_every_front_end(trace: Path, tmp_path: Path) -> None:
    """tail, export and view read spy files through open_events, which copies: the events
    are those of every line through the parser."""
    doubled = tmp_path / trace.name
    doubled.write_bytes(trace.read_bytes() * 2)
    _, copied = open_events(str(doubled))
    assert [fields(e) for e in copied] == [fields(e) for e in full_events(doubled)]
