"""decoders.pcsc against pcsc-lite's own header and library, and pyscard's constants."""

from __future__ import annotations

import ctypes
import ctypes.util
import re
from pathlib import Path

import pytest

from decoders import pcsc

HEADER = Path("/usr/include/PCSC/pcsclite.h")
needs_header = pytest.mark.skipif(not HEADER.exists(),
                                  reason="pcsclite.h not installed (libpcsclite-dev)")


def _defines(prefix: str) -> dict[str, int]:
    """`#define SCARD_E_X ((LONG)0x8010000C)` lines that are not commented out."""
    out = {}
    for line in HEADER.read_text().splitlines():
        m = re.match(rf"#define\s+({prefix}\w+)\s+\(\(\w+\)(0x[0-9A-Fa-f]+)\)", line)
        if m:
            out[m.group(1)] = int(m.group(2), 16)
    return out


@needs_header
def test_every_code_of_the_header_resolves_both_ways():
    codes = _defines("SCARD_[EFWSP]_")
    assert len(codes) >= 60
    for name, value in codes.items():
        assert pcsc.value(name, "pcsc-lite") == value, name
        assert name in pcsc.names(value, "pcsc-lite"), name


@needs_header
def test_every_pcsc_lite_entry_is_in_the_header():
    codes = _defines("SCARD_[EFWSP]_")
    for c in pcsc._CODES:
        if "pcsc-lite" in c.platforms:
            assert codes.get(c.name) == c.value, c.name


@needs_header
def test_header_leaves_0x80100022_unassigned():
    assert 0x80100022 not in _defines("SCARD_").values()
    assert pcsc.names(0x80100022, "pcsc-lite") == []
    assert pcsc.names(0x80100022, "windows") == ["SCARD_E_UNSUPPORTED_FEATURE"]


@needs_header
def test_reader_state_bits_match_the_header():
    states = _defines("SCARD_STATE_")
    for name, value in states.items():
        if value:
            assert pcsc.reader_state(value) == (0, [name]), name


def test_pyscard_constants_agree():
    scard = pytest.importorskip("smartcard.scard")
    names = [n for n in dir(scard) if re.match(r"SCARD_[EFWSP]_", n)]
    assert len(names) >= 60
    for n in names:
        assert pcsc.value(n) == getattr(scard, n) & 0xFFFFFFFF, n


def _stringify():
    path = ctypes.util.find_library("pcsclite")
    if not path:
        return None
    lib = ctypes.CDLL(path)
    lib.pcsc_stringify_error.restype = ctypes.c_char_p
    lib.pcsc_stringify_error.argtypes = [ctypes.c_long]
    return lambda code: lib.pcsc_stringify_error(code).decode()


def test_linux_text_is_what_libpcsclite_prints():
    stringify = _stringify()
    if stringify is None:
        pytest.skip("libpcsclite not installed")
    for c in pcsc._CODES:
        assert pcsc.linux_text(c.value) == stringify(c.value), hex(c.value)
        if not c.linux_text.startswith("Unknown error"):
            assert pcsc.by_text(stringify(c.value)) in [x.value for x in pcsc._CODES
                                                        if x.linux_text == c.linux_text]


def test_the_0x8010001f_alias():
    assert pcsc.names(0x8010001F, "pcsc-lite") == ["SCARD_E_UNSUPPORTED_FEATURE",
                                                    "SCARD_E_UNEXPECTED"]
    assert pcsc.name(0x8010001F) == "SCARD_E_UNSUPPORTED_FEATURE"  # what pcsc-spy prints
    assert pcsc.name(0x8010001F, "windows") == "SCARD_E_UNEXPECTED"
    assert pcsc.value("SCARD_E_UNSUPPORTED_FEATURE") == 0x8010001F
    assert pcsc.value("SCARD_E_UNSUPPORTED_FEATURE", "windows") == 0x80100022
    assert pcsc.value("SCARD_E_UNEXPECTED", "windows") == 0x8010001F


@pytest.mark.parametrize("printed", [0x8010001F, -2146435041, 2148532255, 0xFFFFFFFF8010001F])
def test_signed_and_unsigned_forms(printed):
    assert pcsc.unsigned(printed) == 0x8010001F
    assert pcsc.signed(printed) == -2146435041
    assert pcsc.lookup(printed) == pcsc.lookup(0x8010001F)


@pytest.mark.parametrize("value", [0x80100032, 0x80100033, 0x80100034, 0x80100070,
                                   0x80100071, 0x80100072])
def test_windows_only_codes(value):
    (code,) = pcsc.lookup(value)
    assert code.platforms == ("windows",)
    assert pcsc.name(value) is None and pcsc.name(value, "windows") == code.name


def test_unknown_and_bad_platform():
    assert pcsc.lookup(0x80100099) == []
    assert pcsc.linux_text(0x80100099) == "Unknown error: 0x80100099"
    assert pcsc.meaning(0x80100099) == ""
    with pytest.raises(ValueError, match="unknown platform"):
        pcsc.lookup(0, "macos")


def test_unknown_res_msg_spelling_is_accepted_never_printed():
    assert pcsc.value("SCARD_E_UNKNOWN_RES_MSG") == 0x8010002B
    assert pcsc.names(0x8010002B) == ["SCARD_E_UNKNOWN_RES_MNG"]


@pytest.mark.parametrize(("state", "counter", "flags"), [
    (0x00010022, 1, ["SCARD_STATE_CHANGED", "SCARD_STATE_PRESENT"]),
    (0x00000012, 0, ["SCARD_STATE_CHANGED", "SCARD_STATE_EMPTY"]),
    (0x00000000, 0, ["SCARD_STATE_UNAWARE"]),
    (0x00030122, 3, ["SCARD_STATE_CHANGED", "SCARD_STATE_PRESENT", "SCARD_STATE_INUSE"]),
    (0x00008000, 0, ["0x8000"]),
])
def test_reader_state(state, counter, flags):
    assert pcsc.reader_state(state) == (counter, flags)


def test_by_text():
    assert pcsc.by_text("No smart card inserted.") == 0x8010000C
    assert pcsc.by_text("no smart card inserted") == 0x8010000C
    assert pcsc.by_text("Unknown error: 0x80100032") == 0x80100032
    assert pcsc.by_text("something else") is None
