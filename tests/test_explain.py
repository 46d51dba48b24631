"""decoders.explain and `pkspy explain` on what people actually paste."""

from __future__ import annotations

import json
from pathlib import Path

import PyKCS11
import pytest
from conftest import pkspy

from decoders.explain import NAMESPACES, explain, suggest

SYSTEM_LIST = Path("/usr/share/pcsc/smartcard_list.txt")


def first(text: str, namespace: str | None = None):
    found = explain(text, namespace)
    assert found, f"nothing for {text!r}"
    return found[0]


# --- every input form of the issue, and real-world ones -------------------------------------

@pytest.mark.parametrize(("text", "namespace", "name", "value"), [
    ("0xA0", "pkcs11", "CKR_PIN_INCORRECT", 0xA0),
    ("160", "pkcs11", "CKR_PIN_INCORRECT", 0xA0),
    ("A0", "pkcs11", "CKR_PIN_INCORRECT", 0xA0),
    ("CKR_PIN_INCORRECT", "pkcs11", "CKR_PIN_INCORRECT", 0xA0),
    ("ckr_pin_incorrect", "pkcs11", "CKR_PIN_INCORRECT", 0xA0),
    ("-1208", "opensc", "SC_ERROR_NO_CARD_SUPPORT", -1208),
    ("SC_ERROR_PIN_CODE_INCORRECT", "opensc", "SC_ERROR_PIN_CODE_INCORRECT", -1214),
    ("6982", "sw", "SW_SECURITY_STATUS_NOT_SATISFIED", 0x6982),
    ("63C2", "sw", "SW_COUNTER", 0x63C2),
    ("0x8010001F", "pcsc", "SCARD_E_UNSUPPORTED_FEATURE", 0x8010001F),
    ("SCARD_E_NO_SMARTCARD", "pcsc", "SCARD_E_NO_SMARTCARD", 0x8010000C),
    ("GSK 408", "gskit", "GSK_ERROR_BAD_KEYFILE_PASSWORD", 408),
    ("CKM_ECDSA", "pkcs11", "CKM_ECDSA", 0x1041),
    ("CKA_EC_PARAMS", "pkcs11", "CKA_EC_PARAMS", 0x180),
    # from bug reports and logs
    ("2147483674", "pkcs11", "CKR_VENDOR_DEFINED+0x1a", 0x8000001A),  # Pkcs11Interop #188
    ("0x00E0", "pkcs11", "CKR_TOKEN_NOT_PRESENT", 0xE0),  # BMF-RKSV-Technik #302
    ("SW 6A81", "sw", "SW_FUNC_NOT_SUPPORTED", 0x6A81),  # sc-hsm-embedded #7
    ("Returned:  160 CKR_PIN_INCORRECT", "pkcs11", "CKR_PIN_INCORRECT", 0xA0),  # the spy
    ("rv=0xa0", "pkcs11", "CKR_PIN_INCORRECT", 0xA0),
    ("CKR 0xA0", "pkcs11", "CKR_PIN_INCORRECT", 0xA0),
    ("returning with: -1208 (Card does not support the requested operation)", "opensc",
     "SC_ERROR_NO_CARD_SUPPORT", -1208),
    ("'SELECT' error: -1201 (File not found)", "opensc", "SC_ERROR_FILE_NOT_FOUND", -1201),
    ("Virtual PCD 00 00:SCardControl failed: 0x8010001f", "pcsc",
     "SCARD_E_UNSUPPORTED_FEATURE", 0x8010001F),
    ("SCardEstablishContext failed: 0x8010001d", "pcsc", "SCARD_E_NO_SERVICE", 0x8010001D),
    ("-2146435060", "pcsc", "SCARD_E_NO_SMARTCARD", 0x8010000C),  # a Windows LONG
    ("2148532236", "pcsc", "SCARD_E_NO_SMARTCARD", 0x8010000C),  # 64-bit Linux LONG
    ("No smart card inserted.", "pcsc", "SCARD_E_NO_SMARTCARD", 0x8010000C),
    ("Card does not support the requested operation", "opensc", "SC_ERROR_NO_CARD_SUPPORT",
     -1208),
    ("gsk rc = 414", "gskit", "GSK_ERROR_BAD_CERT", 414),
    ("AMQ9633E: Bad SSL certificate for channel, GSKit error 414", "gskit",
     "GSK_ERROR_BAD_CERT", 414),
    ("69 82", "sw", "SW_SECURITY_STATUS_NOT_SATISFIED", 0x6982),
    ("SW1=63 SW2=C1", "sw", "SW_COUNTER", 0x63C1),
    ("R: 6A 82", "sw", "SW_FILE_NOT_FOUND", 0x6A82),
    ("< 90 00", "sw", "SW_NO_ERROR", 0x9000),
    ("SW_FILE_NOT_FOUND", "sw", "SW_FILE_NOT_FOUND", 0x6A82),
    ("CKF_USER_PIN_COUNT_LOW", "pkcs11", "CKF_USER_PIN_COUNT_LOW", 0x10000),
    ("CKA_ECDSA_PARAMS", "pkcs11", "CKA_ECDSA_PARAMS", 0x180),
    ("INS E6", "ins", "TERMINATE DF", 0xE6),
    ("-27", "gskit", "", -27),  # z/OS deprecated API
])
def test_forms(text, namespace, name, value):
    m = first(text)
    assert (m.namespace, m.name, m.value) == (namespace, name, value)


def test_gskit_namespace_option():
    found = explain("408", "gskit")
    assert [(m.namespace, m.name) for m in found] == [("gskit", "GSK_ERROR_BAD_KEYFILE_PASSWORD")]
    assert "z/OS System SSL: not in the (partial) z/OS table" in found[0].notes


def test_zos_message_id():
    m = first("134CC19E")
    assert (m.namespace, m.value, m.kind) == ("gskit", 414, "GSKit return code (z/OS System SSL)")


@pytest.mark.parametrize("text", ["3B 8F 80 01 80 4F 0C A0 00 00 03 06 03 00 01 00 00 00 00 6A",
                                  "3B8F8001804F0CA000000306030001000000006A",
                                  "3b:8f:80:01:80:4f:0c:a0:00:00:03:06:03:00:01:00:00:00:00:6a"])
def test_atr_forms(text):
    m = first(text)
    assert m.namespace == "atr" and m.code.startswith("3B 8F 80 01")
    assert "TCK 6A ok" in m.meaning


@pytest.mark.parametrize("text", ["3B 8F 80 01 ...", "3B8F8001..."])
def test_atr_given_in_part(text):
    m = first(text)
    assert m.namespace == "atr" and m.code == "3B 8F 80 01 …"
    assert "truncated" in m.meaning and any("only the start" in n for n in m.notes)


@pytest.mark.skipif(not SYSTEM_LIST.exists(), reason="pcsc-tools' smartcard_list.txt absent")
def test_atr_gets_its_name():
    assert first("3B 95 13 81 01 80 73 FF 01 00 0B").name == "vsmartcard - iso7816 (Other)"


def test_a_pin_apdu_is_explained_without_its_pin():
    m = first("00 20 00 81 08 31 32 33 34 35 36 FF FF")
    assert (m.namespace, m.name) == ("apdu", "VERIFY")
    shown = json.dumps([m.code, m.meaning, *m.notes])
    assert "31 32 33" not in shown and "313233" not in shown
    assert m.code == "00 20 00 81 08 ‹8 bytes›"
    assert "its data is a secret (PIN): not shown" in m.notes


def test_select_names_the_applet():
    m = first("00A4040009A00000030800001000")
    assert m.name == "SELECT" and "selects PIV" in m.notes


# --- numbers that fit several namespaces: each listed, most likely first --------------------

def test_zero_is_success_everywhere():
    assert [(m.namespace, m.name) for m in explain("0")] == [
        ("pkcs11", "CKR_OK"), ("gskit", "GSK_OK"), ("pcsc", "SCARD_S_SUCCESS"),
        ("opensc", "SC_SUCCESS")]


def test_0x8010001f_has_a_reading_per_platform():
    found = explain("0x8010001F")
    assert [(m.kind, m.name) for m in found] == [
        ("PC/SC return code (pcsc-lite)", "SCARD_E_UNSUPPORTED_FEATURE"),
        ("PC/SC return code (Windows)", "SCARD_E_UNEXPECTED")]
    assert "the same value is also SCARD_E_UNEXPECTED" in found[0].notes
    assert 'pcsc_stringify_error: "Feature not supported."' in found[0].notes


def test_432_means_three_things():
    assert [(m.kind, m.name) for m in explain("432")] == [
        ("PKCS#11 return value", "CKR_NEW_PIN_MODE"),
        ("GSKit return code (distributed GSKit 8 and IBM i)",
         "GSK_ERROR_PKCS11_TOKEN_BADPASSWORD"),
        ("GSKit return code (z/OS System SSL)", "")]
    zos = explain("432", "gskit")[1]
    assert zos.meaning == "session renegotiation not allowed"


def test_decimal_first_then_hex_reading():
    found = explain("160")
    assert [m.name for m in found] == ["CKR_PIN_INCORRECT", "CKR_SAVED_STATE_INVALID"]
    assert found[1].notes == ("read as hex 0x160",)
    assert [m.name for m in explain("Returned:  160 CKR_PIN_INCORRECT")] == ["CKR_PIN_INCORRECT"]


def test_positive_opensc_number_is_noted():
    m = first("1208")
    assert m.value == -1208 and "OpenSC logs its errors as negative numbers" in m.notes


def test_mismatched_opensc_log_line_lists_both():
    found = explain("returning with: -1201 (Card does not support the requested operation)")
    assert [m.value for m in found] == [-1201, -1208]
    assert "belongs to -1208 (SC_ERROR_NO_CARD_SUPPORT)" in found[0].notes[0]


def test_namespace_restricts():
    assert [m.namespace for m in explain("9000", "sw")] == ["sw"]
    assert explain("6982", "pkcs11") == []
    assert explain("CKR_PIN_INCORRECT", "opensc") == []
    assert [m.value for m in explain("0x9000", "iso7816")] == [0x9000]
    with pytest.raises(ValueError, match="unknown namespace"):
        explain("0", "bogus")


# --- malformed and unknown input ------------------------------------------------------------

@pytest.mark.parametrize("text", ["", "   ", "hello", "0xZZ", "CKR_NOT_A_THING", "-5",
                                  "SC_ERROR_FOO", "3B", "GSK", "SCARD_E_NOPE", "99999999999",
                                  "0x", "--", "6000", "0x80100099"])
def test_unknown(text):
    if text == "6000":  # not a status word (60 is a procedure byte), but IBM i's GSKit 6000
        assert [m.namespace for m in explain(text)] == ["gskit"]
    else:
        assert explain(text) == []


def test_suggest():
    assert suggest("CKR_PIN_INCORECT") == ["CKR_PIN_INCORRECT"]
    assert "SCARD_E_NO_SMARTCARD" in suggest("scard_e_no_smartcrd")
    assert suggest("hello") == []


# --- tables agree with their sources ----------------------------------------------------------

def test_every_pykcs11_ckr_round_trips():
    names = [n for n in vars(PyKCS11) if n.startswith("CKR_") and isinstance(getattr(PyKCS11, n),
                                                                           int)]
    assert len(names) >= 100
    for n in names:
        value = getattr(PyKCS11, n)
        assert first(n).value == value, n
        assert first(f"0x{value:X}", "pkcs11").value == value, n


def test_the_issue_hint_for_a_wrong_pin():
    hint = first("CKR_PIN_INCORRECT").hint
    assert "63Cx" in hint and "CKF_USER_PIN_COUNT_LOW" in hint


def test_every_namespace_is_reachable():
    samples = {"pkcs11": "0xA0", "opensc": "-1208", "sw": "6982", "pcsc": "0x8010000C",
               "gskit": "408", "atr": "3B 02 14 50", "apdu": "00 A4 04 00", "ins": "A4"}
    assert set(samples) == set(NAMESPACES)
    for ns, text in samples.items():
        assert explain(text, ns)[0].namespace == ns


# --- the command ------------------------------------------------------------------------------

def test_cli_text():
    r = pkspy("explain", "0xA0")
    assert r.returncode == 0 and r.stderr == b""
    out = r.stdout.decode()
    assert out.startswith("0xA0\n  PKCS#11 return value: CKR_PIN_INCORRECT (0x000000A0 = 160)\n")
    assert "hint: Wrong PIN." in out


def test_cli_negative_number_is_not_an_option():
    r = pkspy("explain", "-1208")
    assert r.returncode == 0, r.stderr
    assert "SC_ERROR_NO_CARD_SUPPORT (-1208)" in r.stdout.decode()


def test_cli_json_and_gskit_flag():
    r = pkspy("explain", "--gskit", "408", "--json")
    assert r.returncode == 0
    (result,) = json.loads(r.stdout)
    assert result["input"] == "408"
    assert [m["name"] for m in result["matches"]] == ["GSK_ERROR_BAD_KEYFILE_PASSWORD"]
    assert set(result["matches"][0]) == {"namespace", "kind", "name", "code", "meaning", "hint",
                                         "notes", "value"}


def test_cli_unquoted_atr_bytes_are_one_atr():
    words = [f"{b:02X}" for b in bytes.fromhex("3B8F8001804F0CA000000306030001000000006A")]
    r = pkspy("explain", *words)
    assert r.returncode == 0
    assert r.stdout.decode().startswith("3B 8F 80 01 80 4F 0C A0")


def test_cli_unknown_exits_1_with_one_line_on_stderr():
    r = pkspy("explain", "CKR_PIN_INCORECT")
    assert r.returncode == 1 and r.stdout == b""
    assert r.stderr.decode() == ("pkspy: 'CKR_PIN_INCORECT' is not a code pkspy knows in any "
                                 "namespace; did you mean CKR_PIN_INCORRECT?\n")


def test_cli_some_unknown_still_answers_the_rest():
    r = pkspy("explain", "6982", "nonsense", "--json")
    assert r.returncode == 1
    assert [len(x["matches"]) for x in json.loads(r.stdout)] == [1, 0]
    assert r.stderr.decode().count("\n") == 1


def test_cli_usage_errors_exit_2():
    assert pkspy("explain").returncode == 2
    assert pkspy("explain", "--gskit", "--namespace", "sw", "1").returncode == 2
    assert pkspy("explain", "--namespace", "bogus", "1").returncode == 2
