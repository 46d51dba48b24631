"""decoders.der on certificates and keys made now: by openssl, and read back through
SoftHSM2 as a PKCS#11 module returns them. openssl's own output is the reference."""

from __future__ import annotations

import datetime as dt
import gzip
import os
import random
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from asn1crypto import x509

from decoders import der

OPENSSL = shutil.which("openssl")
pytestmark = pytest.mark.skipif(OPENSSL is None, reason="openssl not installed")


def ossl(*args: str, input: bytes | None = None) -> bytes:
    r = subprocess.run([OPENSSL, *args], input=input, capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr.decode()
    return r.stdout


def field(der_file: Path, *options: str) -> str:
    """`openssl x509 -noout -subject -nameopt RFC2253` and friends, value part only."""
    text = ossl("x509", "-inform", "DER", "-in", str(der_file), "-noout", *options,
                "-nameopt", "RFC2253").decode().strip()
    return text.split("=", 1)[1]


SUBJECT = "/C=DE/O=Example, Inc./OU=R&D+UID=jdoe/CN=#Doe; John <jd> /DC=example"


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    d = tmp_path_factory.mktemp("openssl")
    certs = {}
    for name, key in [("rsa", ["-newkey", "rsa:2048"]),
                      ("p256", ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"]),
                      ("p384", ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:secp384r1"]),
                      ("ed25519", ["-newkey", "ed25519"])]:
        ossl("req", "-x509", *key, "-nodes", "-keyout", str(d / f"{name}.key"),
             "-multivalue-rdn", "-subj", SUBJECT if name == "rsa" else f"/CN={name} test/O=Ex",
             "-days", "3650", "-outform", "DER", "-out", str(d / f"{name}.der"))
        certs[name] = d / f"{name}.der"
    return d, certs


def _rdns(rfc4514: str) -> list[set[str]]:
    """Split on unescaped ',' and '+': AVA order inside one RDN is not significant."""
    rdns = re.split(r"(?<!\\),", rfc4514)
    return [set(re.split(r"(?<!\\)\+", rdn)) for rdn in rdns]


@pytest.mark.parametrize("name", ["rsa", "p256", "p384", "ed25519"])
def test_certificate_summary_agrees_with_openssl(made, name):
    _d, certs = made
    path = certs[name]
    summary = der.describe("CKA_VALUE", path.read_bytes())
    m = re.fullmatch(r"certificate subject (.*); issuer (.*); serial ([0-9A-F]+); "
                     r"valid (.*) to (.*?); (.*); SHA-256 ([0-9A-F:]+)", summary)
    assert m, summary
    subject, issuer, serial, start, end, key, fingerprint = m.groups()
    assert _rdns(subject) == _rdns(field(path, "-subject"))
    assert _rdns(issuer) == _rdns(field(path, "-issuer"))
    assert serial == field(path, "-serial")
    assert fingerprint == field(path, "-fingerprint", "-sha256")
    for ours, option in ((start, "-startdate"), (end, "-enddate")):
        theirs = dt.datetime.strptime(field(path, option), "%b %d %H:%M:%S %Y %Z")
        assert ours == theirs.strftime("%Y-%m-%d %H:%M:%SZ")
    text = ossl("x509", "-inform", "DER", "-in", str(path), "-noout", "-text").decode()
    if name == "ed25519":
        assert key == "Ed25519" and "ED25519" in text
    else:
        bits = re.search(r"Public-Key: \((\d+) bit\)", text).group(1)
        assert key.endswith(f"{bits} bits")
        assert key.startswith("RSA" if name == "rsa" else "EC secp")


def test_names_are_rfc4514_with_escapes(made):
    _d, certs = made
    subject = der.describe("CKA_SUBJECT",
                           x509.Certificate.load(certs["rsa"].read_bytes()).subject.dump())
    # the leading '#', ';', '<', '>', the trailing space and the ',' are escaped
    assert subject.startswith("DC=example,CN=\\#Doe\\; John \\<jd\\>\\ ,")
    assert subject.endswith(",O=Example\\, Inc.,C=DE")
    assert {"OU=R&D", "UID=jdoe"} in _rdns(subject)


def test_subject_issuer_and_serial_attributes(made):
    _d, certs = made
    cert = x509.Certificate.load(certs["p256"].read_bytes())
    assert der.describe("CKA_ISSUER", cert.issuer.dump()) == "O=Ex,CN=p256 test"
    serial = der.describe("CKA_SERIAL_NUMBER", cert["tbs_certificate"]["serial_number"].dump())
    assert serial == field(certs["p256"], "-serial")
    assert der.describe("CKA_SERIAL_NUMBER", bytes.fromhex("020101")) == "01 (1)"


@pytest.mark.parametrize(("curve", "text"), [
    ("prime256v1", "secp256r1 (1.2.840.10045.3.1.7, P-256)"),
    ("secp384r1", "secp384r1 (1.3.132.0.34, P-384)"),
    ("secp521r1", "secp521r1 (1.3.132.0.35, P-521)"),
    ("secp256k1", "secp256k1 (1.3.132.0.10)"),
    ("brainpoolP256r1", "brainpoolp256r1 (1.3.36.3.3.2.8.1.1.7)"),
])
def test_ec_params_from_openssl(curve, text):
    assert der.describe("CKA_EC_PARAMS", ossl("ecparam", "-name", curve, "-outform", "DER")) == text


def test_explicit_ec_params():
    params = ossl("ecparam", "-name", "prime256v1", "-param_enc", "explicit", "-outform", "DER")
    assert der.describe("CKA_EC_PARAMS", params) == "explicit curve parameters (prime_field, " \
                                                    "256 bits)"


@pytest.mark.parametrize(("value", "text"), [
    ("06032B6570", "Ed25519 (1.3.101.112)"),
    ("130C656477617264733235353139", '"edwards25519" (curve named by a PrintableString)'),
    ("0500", "implicitlyCA (NULL: the curve is set elsewhere)"),
    ("06032A0304", "unknown curve 1.2.3.4"),
])
def test_other_ec_params(value, text):
    assert der.describe("CKA_EC_PARAMS", bytes.fromhex(value)) == text


def test_public_key_info_and_ec_point_from_openssl(made):
    d, _certs = made
    spki = ossl("pkey", "-in", str(d / "p384.key"), "-pubout", "-outform", "DER")
    assert der.describe("CKA_PUBLIC_KEY_INFO", spki) == \
        "EC secp384r1 (1.3.132.0.34, P-384), 384 bits"
    rsa = ossl("pkey", "-in", str(d / "rsa.key"), "-pubout", "-outform", "DER")
    assert der.describe("CKA_PUBLIC_KEY_INFO", rsa) == "RSA 2048 bits"
    point = spki[-97:]  # the BIT STRING's content: 04 || X || Y
    assert point[0] == 4
    wrapped = bytes([0x04, len(point)]) + point
    assert der.describe("CKA_EC_POINT", wrapped) == "uncompressed point, 97 bytes (384-bit curve)"
    assert der.describe("CKA_EC_POINT", point) == ("uncompressed point, 97 bytes (384-bit curve), "
                                                   "without the DER OCTET STRING that PKCS#11 "
                                                   "asks for")


def test_modulus_from_openssl(made):
    d, _certs = made
    modulus = ossl("rsa", "-in", str(d / "rsa.key"), "-noout", "-modulus").decode()
    raw = bytes.fromhex(modulus.strip().split("=", 1)[1])
    assert der.describe("CKA_MODULUS", raw) == "2048-bit modulus"
    assert der.describe("CKA_MODULUS", b"\x00" + raw) == "2048-bit modulus"
    assert der.describe("CKA_PUBLIC_EXPONENT", b"\x01\x00\x01") == "65537"


@pytest.mark.parametrize(("attr", "value", "text"), [
    ("CKA_ID", b"k1", '"k1"'),
    ("CKA_ID", bytes.fromhex("4f2b1a"), None),
    ("CKA_LABEL", "Schlüssel".encode(), '"Schlüssel"'),
    ("CKA_LABEL", b"a\nb", None),
    ("CKA_START_DATE", b"20250131", "2025-01-31"),
    ("CKA_END_DATE", b"", None),
    ("  cka_id ", b"abc", '"abc"'),  # spy padding and case
    ("CKA_CLASS", b"\x01\x00\x00\x00", None),  # not ours to describe
])
def test_small_values(attr, value, text):
    assert der.describe(attr, value) == text


def test_validity_state(made):
    _d, certs = made
    raw = certs["rsa"].read_bytes()
    later = dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=4000)
    earlier = dt.datetime(2000, 1, 1, tzinfo=dt.timezone.utc)
    assert "(expired)" in der.certificate_summary(raw, now=later)
    assert "(not yet valid)" in der.certificate_summary(raw, now=earlier)
    assert "(expired)" not in der.certificate_summary(raw)


# --- malformed input: hex with a note, never an exception -------------------------------------

def test_truncated_certificate(made):
    _d, certs = made
    raw = certs["rsa"].read_bytes()[:300]
    text = der.describe("CKA_VALUE", raw)
    assert text.startswith(f"not a valid certificate (300 bytes, the DER says "
                           f"{len(certs['rsa'].read_bytes())}): ")
    assert "30 82" not in text  # no hex: on a key object CKA_VALUE is the secret


@pytest.mark.parametrize(("attr", "value"), [
    ("CKA_SUBJECT", "300531"), ("CKA_ISSUER", "0401FF"), ("CKA_EC_PARAMS", "0603"),
    ("CKA_EC_POINT", "0102"), ("CKA_SERIAL_NUMBER", "1234"), ("CKA_PUBLIC_KEY_INFO", "3000"),
])
def test_malformed_der_is_hex_with_a_note(attr, value):
    text = der.describe(attr, bytes.fromhex(value))
    assert text.startswith(bytes.fromhex(value).hex(" ").upper())
    assert "not valid DER" in text


def test_cka_value_that_is_not_a_certificate_is_left_to_the_caller():
    assert der.describe("CKA_VALUE", bytes(range(1, 33))) is None  # e.g. an AES key
    assert der.describe("CKA_VALUE", b"\x30\x1e" + bytes(30)) is None  # one that starts 30


def test_describe_never_raises(made):
    _d, certs = made
    rng = random.Random(690)
    seeds = [p.read_bytes() for p in certs.values()]
    for _ in range(400):
        raw = bytearray(rng.choice(seeds))
        for _ in range(rng.randrange(1, 6)):
            raw[rng.randrange(len(raw))] = rng.randrange(256)
        raw = bytes(raw[:rng.randrange(1, len(raw) + 1)])
        for attr in der.DESCRIBED:
            result = der.describe(attr, raw)
            assert result is None or isinstance(result, str)
        assert isinstance(der.find_certificates(raw), list)


# --- certificates inside APDU responses -------------------------------------------------------

def _tlv(tag: bytes, value: bytes) -> bytes:
    n = len(value)
    length = bytes([n]) if n < 0x80 else bytes([0x82]) + n.to_bytes(2, "big")
    return tag + length + value


def test_piv_certificate_object(made):
    _d, certs = made
    raw = certs["p256"].read_bytes()
    # GET DATA 5FC105 answer: 53 { 70 cert, 71 CertInfo 00, FE LRC }
    obj = _tlv(b"\x53", _tlv(b"\x70", raw) + b"\x71\x01\x00\xfe\x00")
    (found,) = der.find_certificates(obj + b"\x90\x00")
    assert found.der == raw and found.complete and not found.compressed
    assert found.summary == der.describe("CKA_VALUE", raw)


def test_piv_compressed_certificate(made):
    _d, certs = made
    raw = certs["rsa"].read_bytes()
    obj = _tlv(b"\x53", _tlv(b"\x70", gzip.compress(raw)) + b"\x71\x01\x01\xfe\x00")
    (found,) = der.find_certificates(obj)
    assert found.der == raw and found.compressed


def test_several_and_cut_certificates(made):
    _d, certs = made
    a, b = certs["rsa"].read_bytes(), certs["ed25519"].read_bytes()
    found = der.find_certificates(b"\x7f\x21\x82\x00\x00" + a + b)  # OpenPGP DO 7F21 and more
    assert [f.der for f in found] == [a, b]
    (cut,) = der.find_certificates(a[:255])  # one READ BINARY chunk of several
    assert not cut.complete and cut.length == len(a)
    assert cut.summary == f"certificate, 255 of {len(a)} bytes (cut)"
    assert der.find_certificates(random.Random(1).randbytes(4096)) == []
    assert der.find_certificates(b"") == []


# --- the same values as a PKCS#11 module returns them (SoftHSM2 through PyKCS11) ----------

SOFTHSM = next((p for p in ("/usr/lib/softhsm/libsofthsm2.so",
                            "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
                            "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
                            "/usr/local/lib/softhsm/libsofthsm2.so") if Path(p).exists()), None)


@pytest.mark.skipif(SOFTHSM is None or shutil.which("softhsm2-util") is None,
                    reason="softhsm2 not installed")
def test_values_read_from_softhsm(made, tmp_path, monkeypatch):
    PyKCS11 = pytest.importorskip("PyKCS11")
    _d, certs = made
    (tmp_path / "tokens").mkdir()
    conf = tmp_path / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {tmp_path / 'tokens'}\nobjectstore.backend = file\n")
    monkeypatch.setenv("SOFTHSM2_CONF", str(conf))
    subprocess.run(["softhsm2-util", "--init-token", "--free", "--label", "der",
                    "--so-pin", "so-pin-der", "--pin", "user-pin-der"], check=True,
                   capture_output=True, env=dict(os.environ))
    lib = PyKCS11.PyKCS11Lib()
    lib.load(SOFTHSM)
    slot = lib.getSlotList(tokenPresent=True)[0]
    session = lib.openSession(slot, PyKCS11.CKF_SERIAL_SESSION | PyKCS11.CKF_RW_SESSION)
    session.login("user-pin-der")
    try:
        def read(handle, attribute):
            return bytes(session.getAttributeValue(handle, [attribute])[0])

        raw = certs["rsa"].read_bytes()
        cert = x509.Certificate.load(raw)
        handle = session.createObject([
            (PyKCS11.CKA_CLASS, PyKCS11.CKO_CERTIFICATE),
            (PyKCS11.CKA_CERTIFICATE_TYPE, PyKCS11.CKC_X_509), (PyKCS11.CKA_TOKEN, False),
            (PyKCS11.CKA_VALUE, raw), (PyKCS11.CKA_SUBJECT, cert.subject.dump()),
            (PyKCS11.CKA_ISSUER, cert.issuer.dump()), (PyKCS11.CKA_ID, b"der-test"),
            (PyKCS11.CKA_SERIAL_NUMBER, cert["tbs_certificate"]["serial_number"].dump())])
        assert der.describe("CKA_VALUE", read(handle, PyKCS11.CKA_VALUE)) == \
            der.certificate_summary(raw)
        assert _rdns(der.describe("CKA_SUBJECT", read(handle, PyKCS11.CKA_SUBJECT))) == \
            _rdns(field(certs["rsa"], "-subject"))
        assert der.describe("CKA_SERIAL_NUMBER", read(handle, PyKCS11.CKA_SERIAL_NUMBER)) == \
            field(certs["rsa"], "-serial")
        assert der.describe("CKA_ID", read(handle, PyKCS11.CKA_ID)) == '"der-test"'

        params = ossl("ecparam", "-name", "prime256v1", "-outform", "DER")
        pub, _priv = session.generateKeyPair(
            [(PyKCS11.CKA_CLASS, PyKCS11.CKO_PUBLIC_KEY), (PyKCS11.CKA_KEY_TYPE, PyKCS11.CKK_EC),
             (PyKCS11.CKA_EC_PARAMS, params), (PyKCS11.CKA_TOKEN, False)],
            [(PyKCS11.CKA_CLASS, PyKCS11.CKO_PRIVATE_KEY), (PyKCS11.CKA_TOKEN, False),
             (PyKCS11.CKA_SIGN, True)], mecha=PyKCS11.MechanismECGENERATEKEYPAIR)
        assert der.describe("CKA_EC_PARAMS", read(pub, PyKCS11.CKA_EC_PARAMS)) == \
            "secp256r1 (1.2.840.10045.3.1.7, P-256)"
        assert der.describe("CKA_EC_POINT", read(pub, PyKCS11.CKA_EC_POINT)) == \
            "uncompressed point, 65 bytes (256-bit curve)"

        rsa_pub, _rsa_priv = session.generateKeyPair(
            [(PyKCS11.CKA_CLASS, PyKCS11.CKO_PUBLIC_KEY), (PyKCS11.CKA_KEY_TYPE, PyKCS11.CKK_RSA),
             (PyKCS11.CKA_MODULUS_BITS, 2048), (PyKCS11.CKA_PUBLIC_EXPONENT, (1, 0, 1)),
             (PyKCS11.CKA_TOKEN, False)],
            [(PyKCS11.CKA_CLASS, PyKCS11.CKO_PRIVATE_KEY), (PyKCS11.CKA_TOKEN, False)])
        assert der.describe("CKA_MODULUS", read(rsa_pub, PyKCS11.CKA_MODULUS)) == \
            "2048-bit modulus"
        assert der.describe("CKA_PUBLIC_EXPONENT", read(rsa_pub, PyKCS11.CKA_PUBLIC_EXPONENT)) \
            == "65537"
    finally:
        session.logout()
        session.closeSession()
