"""Fuzzing the decoders with random codes and bytes, and with real DER mutated: each
documents that it never raises (or raises only ValueError for an argument that names
no table), and must keep that promise on anything a trace can hold.

Budget and determinism as in test_fuzz_parsers.py: few, derandomized examples in CI;
PKSPY_FUZZ_EXAMPLES=N for a longer random run.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from asn1crypto import x509
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from decoders import atr, der, explain, gskit, iso7816, opensc, pcsc, pkcs11

EXAMPLES = int(os.environ.get("PKSPY_FUZZ_EXAMPLES", "0"))
FUZZ = settings(max_examples=EXAMPLES or 800, deadline=None, derandomize=not EXAMPLES,
                suppress_health_check=list(HealthCheck), database=None)

CODES = st.one_of(st.integers(-(1 << 64), 1 << 65), st.sampled_from(
    [0, 1, -1, 0xA0, 0x80000000, 0xFFFFFFFF, 0xFFFFFFFFFFFFFFFF, 0x8010001F, -1208, 0x6982]))


def _certificates() -> list[bytes]:
    """Real DER made now by openssl: EC P-256 and Ed25519 self-signed certificates, their
    public keys and subject names (no openssl: the fixed DER below only)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        return []
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, key in [("p256", ["ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"]),
                          ("ed25519", ["ed25519"])]:
            cert, priv = Path(tmp, f"{name}.der"), Path(tmp, f"{name}.key")
            subprocess.run([openssl, "req", "-x509", "-newkey", *key, "-nodes", "-keyout",
                            str(priv), "-subj", "/CN=pkspy fuzz/O=Ünïcode, Inc.", "-days", "30",
                            "-set_serial", str(2**70 + 5), "-outform", "DER", "-out", str(cert)],
                           check=True, capture_output=True, timeout=60)
            public = subprocess.run([openssl, "pkey", "-in", str(priv), "-pubout", "-outform",
                                     "DER"], check=True, capture_output=True, timeout=60).stdout
            raw = cert.read_bytes()
            out += [raw, public, x509.Certificate.load(raw)["tbs_certificate"]["subject"].dump()]
    return out


CERTIFICATES = _certificates()
REAL_DER = [*CERTIFICATES, bytes.fromhex("06082A8648CE3D030107"),  # prime256v1
            bytes.fromhex("0441046B17D1F2E12C4247F8BCE6E563A440F277037D812DEB33A0F4A13945D8"
                          "98C2964FE342E2FE1A7F9B8EE7EB4A7C0F9E162BCE33576B315ECECBB6406837"
                          "BF51F5"), bytes.fromhex("020101"), bytes.fromhex("0101FF")]


@st.composite
def mutated_der(draw) -> bytes:
    """Real DER cut, with bytes flipped, lengths rewritten, or wrapped in junk."""
    data = bytearray(draw(st.sampled_from(REAL_DER)))
    for _ in range(draw(st.integers(0, 4))):
        how = draw(st.sampled_from(["flip", "cut", "length", "insert", "wrap"]))
        i = draw(st.integers(0, max(0, len(data) - 1)))
        if how == "flip" and data:
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif how == "cut":
            del data[i:]
        elif how == "length" and len(data) > 1:  # a claim of up to 2^32 bytes
            data[1:2] = bytes([draw(st.sampled_from([0x84, 0x83, 0x82, 0x81, 0x80, 0xFF]))])
            data[2:2] = draw(st.binary(min_size=0, max_size=4))
        elif how == "insert":
            data[i:i] = draw(st.binary(max_size=16))
        else:
            junk = st.binary(max_size=8)
            data = bytearray(draw(junk) + bytes(data) + draw(junk))
    return bytes(data)


BYTES = st.one_of(st.binary(max_size=300), mutated_der())
ATTRS = [*sorted(der.DESCRIBED), "CKA_VALUE", "CKA_NOTHING", ""]


@FUZZ
@given(attr=st.sampled_from(ATTRS), data=BYTES)
def test_der_describe_never_raises(attr, data):
    text = der.describe(attr, data)
    assert text is None or isinstance(text, str)


@FUZZ
@given(data=st.one_of(BYTES, st.lists(mutated_der(), max_size=4).map(b"".join)))
def test_find_certificates_never_raises(data):
    for found in der.find_certificates(data):
        assert found.der and isinstance(found.summary, str)


def test_find_certificates_gives_up_on_byte_soup(monkeypatch):
    """Regression: 64 KiB of "30 82 00 10 30 82" (a response full of SEQUENCE headers)
    tried 20 000 parses, seconds each time the TUI showed it; now a bounded number,
    and a certificate after a few false starts is still found."""
    tries = []
    real = der.certificate_summary
    monkeypatch.setattr(der, "certificate_summary", lambda d, *a: tries.append(1) or real(d, *a))
    assert der.find_certificates(b"\x30\x82\x00\x10\x30\x82" * 11000) == []
    assert len(tries) <= der._MAX_MISSES
    if not CERTIFICATES:
        pytest.skip("openssl not installed")
    cert = CERTIFICATES[0]
    assert [f.der for f in der.find_certificates(b"\x30\x82\x00\x10\x30\x82" * 5 + cert)] == [cert]


@FUZZ
@given(raw=st.one_of(st.binary(max_size=40), st.sampled_from([
    bytes.fromhex("3B8F8001804F0CA000000306030001000000006A"),
    bytes.fromhex("3BFF1300008131FE450031B9640404ECC173943580"), bytes.fromhex("3B"), b""])))
def test_atr_never_raises(raw):
    parsed = atr.parse(raw)
    assert isinstance(parsed.problems, tuple)
    atr.describe(raw)
    atr.card_names(raw)
    atr.parse_hex(raw.hex(" "))


@FUZZ
@given(apdu=st.binary(max_size=300), response=st.binary(max_size=300),
       pairs=st.lists(st.tuples(st.binary(min_size=4, max_size=12), st.binary(max_size=8)),
                      max_size=8))
def test_apdu_decoding_never_raises(apdu, response, pairs):
    if len(apdu) >= 4:
        cmd = iso7816.parse_command(apdu)
        assert cmd is not None
        iso7816.ins_name(apdu[1], apdu[0], None, apdu[2], apdu[3])
        iso7816.parse_cla(apdu[0])
        iso7816.ins_meanings(apdu[1])
    iso7816.split_response(response)
    iso7816.aid_name(apdu)
    iso7816.applet_of(apdu)
    list(iso7816.join_responses(pairs))


@FUZZ
@given(code=CODES)
def test_code_tables_never_raise(code):
    sw = code & 0xFFFF
    assert iso7816.status_word(sw).meaning is not None
    iso7816.sw_text(sw)
    for group in pkcs11.GROUPS:
        assert pkcs11.name(group, code)
    pkcs11.ckr_meaning(code)
    for context in pkcs11.FLAG_CONTEXTS:
        pkcs11.flags(context, code & 0xFFFFFFFFFFFFFFFF)
    for platform in pcsc.PLATFORMS:
        pcsc.names(code, platform)
    pcsc.meaning(code)
    pcsc.reader_state(code & 0xFFFFFFFF)
    opensc.name(code)
    opensc.meaning(code)
    for platform in gskit.PLATFORMS:
        gskit.lookup(code, platform)


TEXTS = st.one_of(
    st.text(max_size=60),
    st.from_regex(r"(0x)?[0-9a-fA-F]{1,20}", fullmatch=True),
    st.from_regex(r"-?[0-9]{1,25}", fullmatch=True),
    st.from_regex(r"(CK[RAMOK]|SCARD_[EFWS]|SC_ERROR|GSK)_[A-Z_]{0,30}", fullmatch=True),
    st.lists(st.from_regex(r"[0-9A-F]{2}", fullmatch=True), max_size=40).map(" ".join),
    st.sampled_from(["3B 8F 80 01", "00 A4 04 00", "GSK 408", "sw:6982", "atr:3B", "apdu:",
                     "ins:20", "0x", "-", "''", "CKR_PIN_INCORECT", "9000 6A82"]),
)


@FUZZ
@given(text=TEXTS, namespace=st.sampled_from([None, *explain.NAMESPACES, "iso7816"]))
def test_explain_never_raises(text, namespace):
    for m in explain.explain(text, namespace):
        assert m.namespace and isinstance(m.meaning, str)
    explain.suggest(text)
    opensc.by_text(text)
    opensc.parse_log(text)
    pcsc.by_text(text)
    gskit.parse(text)
    pkcs11.value(text)
