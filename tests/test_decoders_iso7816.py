"""decoders.iso7816: APDU cases, CLA bits, INS by class, status words, chains, PIN commands."""

from __future__ import annotations

import pytest
from smartcard.sw import SWExceptions
from smartcard.sw.ISO7816_4ErrorChecker import iso7816_4SW
from smartcard.sw.ISO7816_8ErrorChecker import iso7816_8SW
from smartcard.sw.ISO7816_9ErrorChecker import iso7816_9SW
from smartcard.sw.op21_ErrorChecker import op21_SW

from decoders import _iso7816_data as data
from decoders import iso7816 as iso

H = bytes.fromhex


# --- command APDU cases (ISO 7816-3 §12.1) ---------------------------------------------

@pytest.mark.parametrize(("apdu", "case", "extended", "lc", "le", "body"), [
    ("00A40400", 1, False, None, None, ""),
    ("00B0000000", 2, False, None, 256, ""),  # Le 00 = 256
    ("00B0000010", 2, False, None, 16, ""),
    ("00A4040007A0000003080000", 3, False, 7, None, "A0000003080000"),
    ("00A4040007A000000308000000", 4, False, 7, 256, "A0000003080000"),
    ("00CB3FFF055C035FC10500", 4, False, 5, 256, "5C035FC105"),
    ("00B0000000FFFF", 2, True, None, 65535, ""),
    ("00B00000000000", 2, True, None, 65536, ""),  # extended Le 0000 = 65536
    ("00DB3FFF000003010203", 3, True, 3, None, "010203"),
    ("002A9E9A0000030102030000", 4, True, 3, 65536, "010203"),
    ("002A9E9A0000030102030100", 4, True, 3, 256, "010203"),
])
def test_cases(apdu, case, extended, lc, le, body):
    c = iso.parse_command(H(apdu))
    assert (c.case, c.extended, c.lc, c.le, c.data, c.problem) == (
        case, extended, lc, le, H(body), None)
    assert c.raw == H(apdu)


@pytest.mark.parametrize(("apdu", "problem"), [
    ("0020008108313233343536", "Lc says 8 data bytes but 6 follow it"),
    ("00A404000000", "a 00 byte where a short Lc cannot be 0"),
    ("00DB3FFF00000A5C035F", "extended Lc says 10 data bytes but 3 follow it"),
    ("00DB3FFF00000001", "extended Lc says 0 data bytes but 1 follow it"),
])
def test_malformed_body_keeps_header_and_bytes(apdu, problem):
    c = iso.parse_command(H(apdu))
    assert c.case is None and c.problem == problem
    assert c.data == H(apdu)[4:]  # nothing dropped
    assert c.name() == iso.ins_name(H(apdu)[1])


@pytest.mark.parametrize("apdu", ["", "00", "00A404"])
def test_under_four_bytes_raises(apdu):
    with pytest.raises(ValueError, match="at least 4 bytes"):
        iso.parse_command(H(apdu))


# --- CLA (ISO 7816-4 §5.4.1, GlobalPlatform §11.1.4) ------------------------------------

@pytest.mark.parametrize(("cla", "proprietary", "valid", "chaining", "sm", "channel"), [
    (0x00, False, True, False, None, 0),
    (0x10, False, True, True, None, 0),
    (0x04, False, True, False, "proprietary", 0),
    (0x08, False, True, False, "header not authenticated", 0),
    (0x0C, False, True, False, "header authenticated", 0),
    (0x03, False, True, False, None, 3),
    (0x1F, False, True, True, "header authenticated", 3),
    (0x40, False, True, False, None, 4),
    (0x6F, False, True, False, "header not authenticated", 19),
    (0x5F, False, True, True, None, 19),
    (0x80, True, True, False, None, 0),  # GlobalPlatform
    (0x84, True, True, False, "proprietary", 0),  # GP with secure messaging (C-MAC)
    (0x81, True, True, False, None, 1),
    (0xE0, True, True, False, "header not authenticated", 4),
    (0xA0, True, True, False, None, 0),  # GSM: no ISO bits
    (0xFF, True, False, False, None, 0),  # PPS / PC/SC pseudo-APDU
    (0x20, False, False, False, None, 0),  # RFU
])
def test_cla(cla, proprietary, valid, chaining, sm, channel):
    c = iso.parse_cla(cla)
    assert (c.proprietary, c.valid, c.chaining, c.secure_messaging, c.channel) == (
        proprietary, valid, chaining, sm, channel)


# --- INS names by class and applet ----------------------------------------------------

@pytest.mark.parametrize(("ins", "cla", "applet", "p1p2", "name"), [
    (0xE6, 0x00, None, None, "TERMINATE DF"),
    (0xE6, 0x80, None, None, "INSTALL"),
    (0xE6, 0x84, None, None, "INSTALL"),
    (0xE8, 0x00, None, None, "TERMINATE EF"),
    (0xE8, 0x80, None, None, "LOAD"),
    (0xE4, 0x80, None, None, "DELETE"),
    (0xE2, 0x00, None, None, "APPEND RECORD"),
    (0xE2, 0x80, None, None, "STORE DATA"),
    (0xF2, 0xA0, None, None, "STATUS"),
    (0xF2, 0x80, None, None, "GET STATUS"),
    (0xF2, 0x00, "openpgp", None, "SET PIN RETRIES (Yubico)"),
    (0x88, 0x00, None, None, "INTERNAL AUTHENTICATE"),
    (0x88, 0xA0, None, None, "RUN GSM ALGORITHM"),
    (0x20, 0xA0, None, None, "VERIFY CHV"),
    (0x10, 0x80, None, None, "TERMINAL PROFILE"),
    (0x10, 0x00, None, None, "PERFORM SCQL OPERATION"),
    (0xFE, 0x00, None, None, "TERMINATE CARD USAGE"),
    (0xFE, 0x00, "piv", None, "IMPORT ASYMMETRIC KEY (Yubico PIV)"),
    (0xE6, 0x00, "openpgp", None, "TERMINATE DF"),
    (0x2A, 0x00, None, 0x9E9A, "PSO: COMPUTE DIGITAL SIGNATURE"),
    (0x2A, 0x00, None, 0x8086, "PSO: DECIPHER"),
    (0x2A, 0x00, None, 0x1234, "PERFORM SECURITY OPERATION"),
    (0xA4, 0x00, None, None, "SELECT"),
    (0xC0, 0x00, None, None, "GET RESPONSE"),
    (0x5F, 0x00, None, None, "INS 5F"),
])
def test_ins_name_by_class(ins, cla, applet, p1p2, name):
    p1, p2 = (p1p2 >> 8, p1p2 & 0xFF) if p1p2 is not None else (None, None)
    assert iso.ins_name(ins, cla, applet, p1, p2) == name


def test_every_tabled_ins_has_its_iso_name_under_cla_00():
    for ins, (name, *_rest) in data.INSTRUCTIONS.items():
        assert iso.ins_name(ins, 0x00) == name


def test_ins_meanings_list_every_class():
    assert iso.ins_meanings(0xE6) == [("ISO/IEC 7816-9, CLA 00", "TERMINATE DF"),
                                      ("GlobalPlatform, CLA 80/84", "INSTALL")]


@pytest.mark.parametrize(("aid", "name", "applet"), [
    ("A000000308000010000100", "PIV", "piv"),
    ("D2760001240103040006123456780000", "OpenPGP card", "openpgp"),
    ("A000000151000000", "GlobalPlatform issuer security domain", "gp"),
    ("E82B0601040181C31F0201", "SmartCard-HSM", None),
    ("A0000000041010", None, None),
])
def test_aids(aid, name, applet):
    assert iso.aid_name(H(aid)) == name and iso.applet_of(H(aid)) == applet


# --- status words ------------------------------------------------------------------------

def _pyscard_words():
    seen = {}
    for table in (iso7816_4SW, iso7816_8SW, iso7816_9SW, op21_SW):
        for sw1, (exc, texts) in table.items():
            for sw2, text in texts.items():
                seen.setdefault(sw1 << 8 | sw2, (text, exc))
    return sorted(seen.items())


CATEGORY = {SWExceptions.WarningProcessingException: "warning",
            SWExceptions.ExecutionErrorException: "execution error",
            SWExceptions.CheckingErrorException: "checking error",
            SWExceptions.SecurityRelatedException: "security error"}


@pytest.mark.parametrize(("sw", "known"), _pyscard_words(), ids=lambda x: f"{x:04X}"
                         if isinstance(x, int) else "")
def test_pyscard_words_keep_pyscard_text_and_class(sw, known):
    text, exc = known
    s = iso.status_word(sw)
    assert s.category == CATEGORY[exc]
    if sw == 0x6200 or 0x63C0 <= sw <= 0x63CF:  # decoded here on purpose (see the module)
        assert s.source == "pkspy"
    else:
        assert (s.meaning, s.source.split()[0]) == (text, "pyscard")


@pytest.mark.parametrize(("sw", "meaning", "ok", "field", "value"), [
    (0x9000, "success", True, None, None),
    (0x6110, "success; 16 more bytes available: fetch with GET RESPONSE (00 C0 00 00 10)",
     True, "available", 16),
    (0x6100, "success; 256 or more bytes available: fetch with GET RESPONSE (00 C0 00 00 00)",
     True, "available", 256),
    (0x6C20, "wrong Le; resend the same command with Le=20 (32 bytes)", False,
     "correct_le", 32),
    (0x6C00, "wrong Le; resend the same command with Le=00 (256 bytes)", False,
     "correct_le", 256),
    (0x63C2, "2 tries left", False, "tries_left", 2),
    (0x63C1, "1 try left", False, "tries_left", 1),
    (0x63C0, "0 tries left: blocked", False, "tries_left", 0),
    (0x9F10, "success; 16 response bytes available (GSM: GET RESPONSE A0 C0 00 00 10)", True,
     "available", 16),
])
def test_computed_words(sw, meaning, ok, field, value):
    s = iso.status_word(sw)
    assert (s.meaning, s.ok) == (meaning, ok)
    if field:
        assert getattr(s, field) == value


def test_every_exact_row_of_the_table_names_its_word():
    for low, high, pattern, name, *_rest in data.STATUS_WORDS:
        if low == high:
            assert iso.status_word(low).name == name, pattern


@pytest.mark.parametrize(("sw", "sc_error"), [
    (0x9000, "SC_SUCCESS"), (0x6982, "SC_ERROR_SECURITY_STATUS_NOT_SATISFIED"),
    (0x6983, "SC_ERROR_AUTH_METHOD_BLOCKED"), (0x63C1, "SC_ERROR_PIN_CODE_INCORRECT"),
    (0x6A82, "SC_ERROR_FILE_NOT_FOUND"), (0x6C10, "SC_ERROR_WRONG_LENGTH"),
    (0x6A90, "SC_ERROR_CARD_CMD_FAILED"),  # OpenSC's default for a word it does not know
])
def test_opensc_mapping(sw, sc_error):
    assert iso.status_word(sw).sc_error == sc_error


@pytest.mark.parametrize(("sw", "category", "meaning"), [
    (0x1234, "invalid", "not a status word (SW1 must be 61-6F or 90-9F)"),
    (0x6000, "invalid", "not a status word (SW1 must be 61-6F or 90-9F)"),  # NULL byte
    (0x6A90, "checking error", "unknown checking error (6AXX)"),
    (0x9A00, "proprietary", "proprietary status (SW1 9X): defined by the application"),
    (0x6438, "execution error", "GP LOAD/INSTALL: an imported Java Card package is not on "
                                "the card"),  # inside 6402-6480, the narrower row wins
])
def test_unknown_and_invalid_words(sw, category, meaning):
    s = iso.status_word(sw)
    assert (s.category, s.meaning) == (category, meaning)


def test_status_word_never_raises():
    for sw in range(0x10000):
        assert iso.status_word(sw).meaning


def test_sw_text():
    assert iso.sw_text(0x6A82) == "6A82 File not found"


# --- GET RESPONSE, 6CXX and command chains --------------------------------------------------

def test_join_get_response_resend_and_chaining():
    pairs = [
        (H("00A4040009A00000030800001000"), H("610B")),
        (H("00C000000B"), H("61795F4F0A4F0A00001010") + H("9000")),
        (H("00CB3FFF055C035FC10500"), H("6100")),
        (H("00C0000000"), bytes(254) + H("6110")),
        (H("00C0000010"), bytes(16) + H("9000")),
        (H("00B0000000"), H("6C10")),
        (H("00B0000010"), bytes(range(16)) + H("9000")),
        (H("10DB3FFF03010203"), H("9000")),
        (H("00DB3FFF020405"), H("9000")),
        (H("00200081"), H("63C3")),
        (H("00B0"), H("6D00")),
        (H("00CA006E00"), H("6110")),  # 61XX answered by something other than GET RESPONSE
        (H("00A40400"), H("9000")),
    ]
    got = [(e.command.name() if e.command else None, e.command_data.hex(), len(e.data), e.sw,
            e.parts) for e in iso.join_responses(pairs)]
    assert got == [
        ("SELECT", "a00000030800001000", 11, 0x9000, (0, 1)),
        ("GET DATA (odd INS)", "5c035fc105", 270, 0x9000, (2, 3, 4)),
        ("READ BINARY", "", 16, 0x9000, (5, 6)),
        ("PUT DATA (odd INS)", "0102030405", 0, 0x9000, (7, 8)),
        ("VERIFY", "", 0, 0x63C3, (9,)),
        (None, "", 0, 0x6D00, (10,)),
        ("GET DATA", "", 0, 0x6110, (11,)),
        ("SELECT", "", 0, 0x9000, (12,)),
    ]


def test_joiner_holds_back_only_an_open_chain():
    j = iso.ResponseJoiner()
    assert j.add(H("00CB3FFF055C035FC10500"), H("6104")) == []
    done = j.add(H("00C0000004"), H("01020304") + H("9000"))
    assert [(e.data, e.sw) for e in done] == [(H("01020304"), 0x9000)]
    assert j.add(H("00A40400"), H("9000")) != []  # complete at once
    assert j.flush() == []


def test_get_response_on_another_channel_is_not_joined():
    pairs = [(H("01CA006E00"), H("6102")), (H("00C0000002"), H("AABB9000"))]
    assert [e.parts for e in iso.join_responses(pairs)] == [(0,), (1,)]


# --- which commands carry a PIN ----------------------------------------------------------------

@pytest.mark.parametrize(("apdu", "kind"), [
    # real 0.23 OPENSC_DEBUG=9 shapes (VERIFY, CHANGE REFERENCE DATA, RESET RETRY COUNTER)
    ("00200001063132333435 36", "PIN"),
    ("0024000 10C313233343536363534333231", "old and new PIN"),
    ("002C00010E3837363534333231313131313131", "PUK and new PIN"),
    ("00200081", None),  # no data: asks how many tries are left
    ("0020008100", None),
    ("00200080083132333435 36FFFF", "PIN"),  # PIV PIN padded with FF
    ("0020FF80", None),  # PIV: reset the security status, no data
    ("002400800831323334353637", "old and new PIN"),
    ("00240180083132333435363738", "new PIN"),
    ("002C0181083132333435363738", "PUK"),
    ("002C0281083132333435363738", "new PIN"),  # OpenPGP: new PW1 after PW3
    ("0021000005A0031234", "PIN"),  # VERIFY, BER-TLV form
    ("0028000104313233 34", "PIN"),  # ENABLE VERIFICATION REQUIREMENT with the PIN
    ("0026000104313233 34", "PIN"),
    ("A020000108313233343536FFFF", "PIN"),  # GSM VERIFY CHV
    ("FF20000003FFFFFF", "PIN"),  # PC/SC storage card: present the PIN
    ("0C2000810D8E08AABBCCDDEEFF0011", "PIN (secure messaging)"),
    ("00DA00D3083132333435363738", "reset code"),  # OpenPGP: set the resetting code
    ("00DB3FFF064D04B6007F48", "private key"),  # OpenPGP key import
    ("00FE0700055C035FC105", "private key"),  # Yubico PIV import
    ("00FFFFFF1B03", "management key"),
    ("80D8010102AABB", "secure channel keys"),
    ("00DB3FFF085C035FC10553027000", None),  # PIV certificate upload: public
    ("00A4040007A0000003080000", None),
    ("00B0000000", None),
    ("0020008108313233", "PIN"),  # a cut VERIFY still holds PIN bytes
    ("0020", None),
])
def test_pin_apdu(apdu, kind):
    assert iso.pin_apdu(H(apdu.replace(" ", ""))) == kind
