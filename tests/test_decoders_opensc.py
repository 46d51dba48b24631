"""decoders.opensc against sc_strerror() of the libopensc on this machine, and log lines."""

from __future__ import annotations

import ctypes
import ctypes.util

import pytest

from decoders import opensc, pkcs11


def _strerror():
    path = ctypes.util.find_library("opensc")
    if not path:
        return None
    lib = ctypes.CDLL(path)
    lib.sc_strerror.restype = ctypes.c_char_p
    lib.sc_strerror.argtypes = [ctypes.c_int]
    return lambda code: lib.sc_strerror(code).decode()


STRERROR = _strerror()
needs_lib = pytest.mark.skipif(STRERROR is None, reason="libopensc not installed (opensc)")


@needs_lib
def test_every_text_is_what_sc_strerror_prints():
    for code in range(-2000, 2001):  # both signs: sc_strerror takes the absolute value
        assert opensc.text(code) == STRERROR(code), code


@needs_lib
def test_the_table_holds_exactly_the_codes_libopensc_knows():
    # errors.h is not installed by Debian's opensc; the library's table is the source here
    known = {c for c in range(-2000, 1) if STRERROR(c) != "Unknown error"} | {-1900}
    assert set(opensc._ERRORS) == known


def test_shape_of_the_table():
    named = [e for e in opensc._ERRORS.values() if e.name]
    assert len(named) == 85
    assert sorted(e.value for e in opensc._ERRORS.values() if not e.name) == [
        -1507, -1302, -1301, -1103, -1102]
    assert len({e.name for e in named}) == 85
    for e in named:
        assert opensc.value(e.name) == e.value
        assert opensc.name(e.value) == e.name


def test_ckr_targets_are_real_return_values():
    for e in opensc._ERRORS.values():
        if e.ckr:
            assert pkcs11.value(e.ckr) is not None, e.ckr
    assert opensc.ckr(-1214) == "CKR_PIN_INCORRECT"
    assert opensc.ckr(-1212) == "CKR_PIN_LOCKED"
    assert opensc.ckr(-1201) == "CKR_GENERAL_ERROR"


@pytest.mark.parametrize(("line", "code", "text", "consistent"), [
    # OpenSC 0.23 debug log message parts (after "file.c:NNN:func: ")
    ("returning with: 0 (Success)", 0, "Success", True),
    ("returning with: -1208 (Card does not support the requested operation)", -1208,
     "Card does not support the requested operation", True),
    ("returning with: 1", 1, None, True),
    ("'SELECT' error: -1201 (File not found)", -1201, "File not found", True),
    ("SW Check failed: -1201 (File not found)", -1201, "File not found", True),
    ("libopensc return value: -1214 (PIN code or key incorrect)", -1214,
     "PIN code or key incorrect", True),
    ("returning with: -1113 (Unresponsive card (correctly inserted?))", -1113,
     "Unresponsive card (correctly inserted?)", True),
    ("returning with: -1114 (Reader detached (hotplug device?))", -1114,
     "Reader detached (hotplug device?)", True),  # 0.13-0.20 wording
    ("returning with: -1201 (Card does not support the requested operation)", -1201,
     "Card does not support the requested operation", False),
])
def test_parse_log(line, code, text, consistent):
    r = opensc.parse_log(line)
    assert (r.code, r.text, r.consistent) == (code, text, consistent)
    if not consistent:
        assert r.text_codes == (-1208,)


@pytest.mark.parametrize("line", ["SCardControl failed: 0x8010001f", "called",
                                  "Outgoing APDU (12 bytes):", ""])
def test_parse_log_leaves_other_lines(line):
    assert opensc.parse_log(line) is None


def test_by_text():
    assert opensc.by_text("card does not support the requested operation") == [-1208]
    assert opensc.by_text("Reader detached (hotplug device?)") == [-1114]
    assert opensc.by_text("UNUSED") == [-1102, -1103, -1301, -1302, -1507]
    assert opensc.by_text("no such text") == []


def test_lookup_outside_the_table():
    assert opensc.lookup(-5) is None and opensc.name(-1221) is None
    assert opensc.meaning(-1221) == "" and opensc.ckr(-1221) is None
    assert opensc.text(-1221) == "Unknown error" and opensc.text(1208) == opensc.text(-1208)
    assert opensc.value("sc_error_pin_code_incorrect") == -1214
    assert opensc.value("SC_ERROR_NOPE") is None
