"""decoders.gskit: the shared numbering, IBM i, and z/OS where numbers mean other things.

The facts checked are those the IBM pages and the gskssl.h translation state (see
../shared/reference/codes.md §3); no GSKit header or library is on the machine.
"""

from __future__ import annotations

import pytest

from decoders import _gskit_data, gskit

DISTRIBUTED = "distributed GSKit 8 and IBM i"
ZOS = "z/OS System SSL"


@pytest.mark.parametrize(("value", "name"), [
    (0, "GSK_OK"), (406, "GSK_ERROR_IO"), (408, "GSK_ERROR_BAD_KEYFILE_PASSWORD"),
    (414, "GSK_ERROR_BAD_CERT"), (420, "GSK_ERROR_SOCKET_CLOSED"), (502, "GSK_WOULD_BLOCK"),
    (401, "GSK_ERROR_BAD_DATE"),  # not BAD_CERT, a common mix-up
    (301, "GSK_CLOSE_FAILED"),  # an old copybook has 203
    (203, "GSK_RSA_TEMP_KEY_PAIR"),
])
def test_confirmed_numbers(value, name):
    (code,) = gskit.lookup(value, "distributed")
    assert code.name == name
    assert gskit.value(name) == value


@pytest.mark.parametrize("value", [406, 408, 414, 420, 502])
def test_codes_seen_on_ibm_pages_are_marked_confirmed(value):
    assert gskit.lookup(value, "distributed")[0].confirmed


def test_header_only_codes_are_marked_unconfirmed():
    above = [v for v in _gskit_data.COMMON if 444 < v < 6000]
    assert above and all(not gskit.lookup(v)[0].confirmed for v in above if v != 502)
    assert not gskit.lookup(432)[0].confirmed and not gskit.lookup(6000, "ibmi")[0].confirmed


@pytest.mark.parametrize(("value", "elsewhere", "on_zos"), [
    (13, "GSK_INVALID_PARAMETER", "size specified for a supplied structure is too small"),
    (109, "GSK_PENDING_CLOSE_ERROR", "no certificate-authority certificates"),
    (204, "GSK_ERROR_LDAP_NO_SUCH_OBJECT", "key database password expired"),
    (432, "GSK_ERROR_PKCS11_TOKEN_BADPASSWORD", "session renegotiation not allowed"),
    (440, "GSK_ERROR_PKCS11_DEVICE", "incorrect key usage"),
])
def test_zos_reuses_numbers(value, elsewhere, on_zos):
    common, zos = gskit.lookup(value)
    assert (common.name, common.platform) == (elsewhere, DISTRIBUTED)
    assert zos.platform == ZOS and zos.name is None and zos.meaning.startswith(on_zos)
    assert gskit.lookup(value, "zos") == [zos]
    assert gskit.name(value) == elsewhere and gskit.name(value, "zos") is None


def test_zos_same_sense_keeps_the_name():
    (code,) = gskit.lookup(407, "zos")
    assert code.name == "GSK_ERROR_BAD_KEYFILE_LABEL" and code.confirmed
    assert len(gskit.lookup(407)) == 1  # nothing different to show


def test_zos_only_and_deprecated_negative_codes():
    assert [c.platform for c in gskit.lookup(302)] == [ZOS]
    (neg,) = gskit.lookup(-27)
    assert neg.platform == ZOS and "no private key" in neg.meaning


def test_zos_fallback_is_marked_unconfirmed():
    (code,) = gskit.lookup(408, "zos")
    assert code.name == "GSK_ERROR_BAD_KEYFILE_PASSWORD" and not code.confirmed
    assert "unconfirmed" in code.note


def test_ibm_i_only_codes():
    assert gskit.lookup(6000, "distributed") == [] and gskit.lookup(6000, "zos") == []
    (code,) = gskit.lookup(6000, "ibmi")
    assert code.name == "GSK_IBMI_ERROR_NOT_TRUSTED_ROOT" and code.platform == "IBM i"
    assert gskit.value("GSK_AS400_ERROR_NOT_TRUSTED_ROOT") == 6000  # older header names
    assert gskit.value("GSK_OS400_ERROR_NOT_TRUSTED_ROOT") == 6000


def test_names_are_unique_and_round_trip():
    names = [row[0] for row in _gskit_data.COMMON.values()]
    assert len(names) == len(set(names)) == 117
    for value, row in _gskit_data.COMMON.items():
        assert gskit.value(row[0].lower()) == value


@pytest.mark.parametrize(("text", "parsed"), [
    ("GSK 408", (408, None)), ("GSKit error 408", (408, None)), ("gsk rc = 414", (414, None)),
    ("GSK_RC=414", (414, None)), ("408", (408, None)), ("-27", (-27, None)),
    ("134CC19E", (414, "zos")), ("0x134cc19e", (414, "zos")),
    ("GSK", None), ("GSK_ERROR_BAD_CERT", None), ("4O8", None),
])
def test_parse(text, parsed):
    assert gskit.parse(text) == parsed


def test_unknown():
    assert gskit.lookup(999) == [] and gskit.name(999) is None and gskit.value("GSK_NOPE") is None
    with pytest.raises(ValueError, match="unknown platform"):
        gskit.lookup(408, "aix")
