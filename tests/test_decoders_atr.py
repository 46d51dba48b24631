"""decoders.atr: structure through pyscard, our own length/TCK checks, pcsc-tools names."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from smartcard.ATR import ATR

from decoders import atr

SYSTEM_LIST = Path("/usr/share/pcsc/smartcard_list.txt")
VSMARTCARD = bytes.fromhex("3B9513810180 73FF01000B".replace(" ", ""))  # vicc, real
CONTACTLESS = bytes.fromhex("3B8F8001804F0CA000000306030001000000006A")  # PC/SC part 3 MIFARE


@pytest.mark.parametrize("raw", [VSMARTCARD, CONTACTLESS,
                                 bytes.fromhex("3BFE1800008031FE45803180664090A4162A00830F9000"
                                               "EF")])
def test_structure_agrees_with_pyscard(raw):
    a, ref = atr.parse(raw), ATR(list(raw))
    assert a.historical == bytes(ref.getHistoricalBytes())
    assert a.protocols == tuple(ref.getSupportedProtocols())
    assert a.tck == ref.getChecksum() and a.tck_ok == ref.checksumOK
    assert (a.fi, a.di) == (ref.getClockRateConversion(), ref.getBitRateFactor())
    assert a.problems == ()


def test_vsmartcard_fields():
    a = atr.parse(VSMARTCARD)
    assert a.convention == "direct" and a.protocols == ("T=1",)
    assert a.interface == ("TA1=13", "TD1=81", "TD2=01")
    assert a.historical == bytes.fromhex("8073FF0100") and a.tck == 0x0B


@pytest.mark.parametrize(("hexatr", "problem"), [
    ("3B8F8001", "truncated: 4 bytes, the structure needs 20 (15 historical bytes, TCK)"),
    ("3B8F", "truncated: the interface bytes run past the 2 bytes given"),
    ("3B8F8001804F0CA00000030603000100000000",
     "TCK missing: a protocol other than T=0 is indicated"),
    ("3B8F8001804F0CA000000306030001000000006B", "TCK 6B is wrong: T0 to TCK do not XOR to 00"),
    ("3B021450 00", "1 byte after the end of the ATR (T=0 only: there is no TCK)"),
    ("3B8F8001804F0CA000000306030001000000006A0000", "2 bytes after the end of the ATR"),
    ("3C00", "TS is 3C; it must be 3B (direct) or 3F (inverse convention)"),
    ("3B", "an ATR has at least 2 bytes (TS and T0), got 1"),
])
def test_problems_pyscard_does_not_report(hexatr, problem):
    assert problem in atr.parse(bytes.fromhex(hexatr.replace(" ", ""))).problems


def test_parse_never_raises():
    rng = random.Random(7816)
    for _ in range(5000):
        n = rng.randrange(0, 40)
        raw = bytes([rng.choice((0x3B, 0x3F, rng.randrange(256)))]) + rng.randbytes(n)
        assert isinstance(atr.describe(raw), str)


@pytest.mark.parametrize(("text", "raw"), [
    ("3B 8F 80 01", "3B8F8001"), ("3B8F8001", "3B8F8001"), ("3b:8f:80:01", "3B8F8001"),
    ("0x3B8F8001", "3B8F8001"), ("3B 8F 8", None), ("zz", None), ("", None),
])
def test_parse_hex(text, raw):
    assert atr.parse_hex(text) == (bytes.fromhex(raw) if raw else None)


@pytest.mark.skipif(not SYSTEM_LIST.exists(), reason="pcsc-tools' smartcard_list.txt absent")
def test_names_from_the_installed_list(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))  # no user copies in the way
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    assert "vsmartcard - iso7816 (Other)" in atr.card_names(VSMARTCARD)
    entry = next(e for e in atr.cards(VSMARTCARD) if e[0] == "vsmartcard - iso7816 (Other)")
    assert entry[1].startswith("https://")


def _write_list(path: Path) -> Path:
    # A list in pcsc-tools' format, written here (the real one is GPL and never copied).
    path.write_text("# test list\n"
                    "3B 95 13 81 01 80 73 FF 01 00 0B\n"
                    "\tVirtual card for the tests\n"
                    "\thttps://example.org/vicc\n"
                    "\n"
                    "3B 8F 80 01 80 4F 0C A0 00 00 03 06 .. 00 .. 00 00 00 00 ..\n"
                    "\tSome storage card\n"
                    "3B 8F 80 01 80 4F 0C A0 00 00 03 06 03 00 01 00 00 00 00 6A\n"
                    "\tThe same card, exact ATR\n"
                    "\n"
                    "3B [89]5 .*\n"
                    "\tAny 3B 85/95 card\n")
    return path


def test_names_from_a_given_list(tmp_path):
    paths = [_write_list(tmp_path / "smartcard_list.txt")]
    assert atr.card_names(VSMARTCARD, paths) == ["Virtual card for the tests", "Any 3B 85/95 card"]
    assert atr.cards(VSMARTCARD, paths)[0] == ("Virtual card for the tests",
                                               "https://example.org/vicc")
    assert atr.card_names(CONTACTLESS, paths) == ["Some storage card", "The same card, exact ATR"]
    assert atr.card_names(bytes.fromhex("3B021450"), paths) == []


def test_user_cache_comes_before_the_system_list(monkeypatch, tmp_path):
    _write_list(tmp_path / "smartcard_list.txt")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert atr.LIST_PATHS()[0] == tmp_path / "smartcard_list.txt"
    assert atr.card_names(VSMARTCARD)[0] == "Virtual card for the tests"


def test_no_list_means_no_name_and_no_error(monkeypatch, tmp_path):
    monkeypatch.setattr(atr, "LIST_PATHS", lambda: [tmp_path / "absent.txt", tmp_path])
    assert atr.card_names(VSMARTCARD) == [] and atr.cards(VSMARTCARD) == []
    assert atr.card_names(VSMARTCARD, [tmp_path / "missing"]) == []
