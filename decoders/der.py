"""Short human summaries of DER-encoded PKCS#11 attribute values, with asn1crypto.

Exports: describe, find_certificates, FoundCertificate, certificate_summary,
rfc4514, DESCRIBED.

What each attribute holds is PKCS#11 3.2 §4 (certificate, key and data
objects); names are written per RFC 4514, certificates and keys are read per
RFC 5280 / RFC 5480 / RFC 8410 by asn1crypto. Nothing here raises on bad input:
a value that should be DER and is not comes back as hex with a note (CKA_VALUE,
which is the secret on key objects, gets the note without the hex).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import zlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

# asn1crypto is imported where it is used: most rows never show a DER value, and
# loading it is a few per cent of pkspy view's start-up.
if TYPE_CHECKING:
    from asn1crypto import keys, x509

_HEX_SHOWN = 32  # bytes of a malformed value worth showing


def _hex(data: bytes) -> str:
    shown = data[:_HEX_SHOWN].hex(" ").upper()
    return shown + (" …" if len(data) > _HEX_SHOWN else "")


def _malformed(data: bytes, why: str) -> str:
    return f"{_hex(data)} ({len(data)} bytes; not valid DER: {why})"


def _reason(e: Exception) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__


# --- RFC 4514 names ----------------------------------------------------------------------

# RFC 4514 §3 short names, then descriptors registered for LDAP (RFC 4519, RFC 2985);
# any other type is written as its dotted OID, as §2.3 asks.
_SHORT = {
    "2.5.4.3": "CN", "2.5.4.7": "L", "2.5.4.8": "ST", "2.5.4.10": "O", "2.5.4.11": "OU",
    "2.5.4.6": "C", "2.5.4.9": "STREET", "0.9.2342.19200300.100.1.25": "DC",
    "0.9.2342.19200300.100.1.1": "UID", "2.5.4.5": "serialNumber", "2.5.4.4": "SN",
    "2.5.4.42": "GN", "2.5.4.12": "title", "2.5.4.43": "initials", "2.5.4.44":
    "generationQualifier", "2.5.4.46": "dnQualifier", "2.5.4.65": "pseudonym",
    "2.5.4.97": "organizationIdentifier", "2.5.4.15": "businessCategory",
    "2.5.4.17": "postalCode", "2.5.4.41": "name", "1.2.840.113549.1.9.1": "emailAddress",
}
# Universal string types whose value RFC 4514 writes as text (§2.4); the rest as #hex.
_STRING_TAGS = frozenset({12, 18, 19, 20, 22, 26, 27, 28, 30})


def _escape(value: str) -> str:
    """RFC 4514 §2.4: escape , + " \\ < > ; everywhere, a leading # or space, a trailing
    space, and NUL."""
    out = []
    for i, ch in enumerate(value):
        if ch in ',+"\\<>;' or (i == 0 and ch in "# ") or (i == len(value) - 1 and ch == " "):
            out.append("\\" + ch)
        elif ch == "\0":
            out.append("\\00")
        else:
            out.append(ch)
    return "".join(out)


def _ava(ava: x509.NameTypeAndValue) -> str:
    from asn1crypto import core

    oid = ava["type"].dotted
    raw = ava["value"].dump()
    parsed = core.load(raw)
    if parsed.class_ == 0 and parsed.tag in _STRING_TAGS:
        text = _escape(str(parsed.native))
    else:
        text = "#" + raw.hex()
    return f"{_SHORT.get(oid, oid)}={text}"


def rfc4514(name: x509.Name) -> str:
    """The RFC 4514 string of a Name: last RDN first, AVAs of one RDN joined by '+'."""
    rdns = name.chosen
    return ",".join("+".join(_ava(a) for a in rdn) for rdn in reversed(list(rdns)))


# --- keys, curves, points ----------------------------------------------------------------

_NIST = {"secp192r1": "P-192", "secp224r1": "P-224", "secp256r1": "P-256",
         "secp384r1": "P-384", "secp521r1": "P-521"}
# RFC 8410 curve OIDs, which PKCS#11 3.0 also allows in CKA_EC_PARAMS.
_EXTRA_CURVES = {"1.3.101.110": "X25519", "1.3.101.111": "X448", "1.3.101.112": "Ed25519",
                 "1.3.101.113": "Ed448"}


def _curve_name(oid: str) -> str:
    from asn1crypto import keys

    name = keys.NamedCurve._map.get(oid) or _EXTRA_CURVES.get(oid)
    if not name:
        return f"unknown curve {oid}"
    alias = f", {_NIST[name]}" if name in _NIST else ""
    return f"{name} ({oid}{alias})"


def _key(info: keys.PublicKeyInfo) -> str:
    from asn1crypto import keys

    algorithm = info.algorithm
    if algorithm == "ec":
        kind, curve = info.curve
        curve_text = _curve_name(keys.NamedCurve.unmap(curve)) if kind == "named" else kind
        return f"EC {curve_text}, {info.bit_size} bits"
    if algorithm in ("ed25519", "ed448", "x25519", "x448"):
        return {"ed25519": "Ed25519", "ed448": "Ed448", "x25519": "X25519", "x448": "X448"}[
            algorithm]
    return f"{algorithm.upper()} {info.bit_size} bits"


def _ec_params(data: bytes) -> str:
    """CKA_EC_PARAMS: a named-curve OID, a PrintableString curve name (PKCS#11 3.0 for
    Edwards/Montgomery keys), NULL (implicitlyCA) or explicit parameters."""
    from asn1crypto import core, keys

    value = core.load(data, strict=True)
    if isinstance(value, core.ObjectIdentifier):
        return _curve_name(value.dotted)
    if isinstance(value, core.PrintableString):
        return f'"{value.native}" (curve named by a PrintableString)'
    if isinstance(value, core.Null):
        return "implicitlyCA (NULL: the curve is set elsewhere)"
    params = keys.ECDomainParameters.load(data, strict=True)
    if params.name == "specified":
        field = params.chosen["field_id"]
        bits = field["parameters"].native.bit_length() if field["field_type"].native == \
            "prime_field" else "?"
        return f"explicit curve parameters ({field['field_type'].native}, {bits} bits)"
    raise ValueError(f"a {type(value).__name__}, not curve parameters")


_POINT_SIZES = {49: 192, 57: 224, 65: 256, 97: 384, 129: 512, 133: 521}


def _point(point: bytes) -> str | None:
    """An EC point encoding (SEC 1 §2.3.3) or an RFC 8410 public key, or None."""
    n = len(point)
    if point[:1] == b"\x04" and n % 2 == 1 and n > 1:
        size = _POINT_SIZES.get(n, (n - 1) // 2 * 8)
        return f"uncompressed point, {n} bytes ({size}-bit curve)"
    if point[:1] in (b"\x02", b"\x03") and n > 1:
        return f"compressed point, {n} bytes ({(n - 1) * 8}-bit curve)"
    if n in (32, 56, 57):
        kind = {32: "Ed25519/X25519", 56: "X448", 57: "Ed448"}[n]
        return f"{kind} public key, {n} bytes"
    return None


def _ec_point(data: bytes) -> str:
    """CKA_EC_POINT: DER OCTET STRING around the point, which some modules leave out."""
    from asn1crypto import core

    try:
        wrapped = core.OctetString.load(data, strict=True).native
    except ValueError:
        wrapped = None
    if wrapped is not None and _point(wrapped):
        return _point(wrapped)
    raw = _point(data)
    if raw:
        return f"{raw}, without the DER OCTET STRING that PKCS#11 asks for"
    raise ValueError("neither an OCTET STRING holding a point nor a raw point")


def _serial(number: int) -> str:
    """Upper-case hex in whole bytes, as `openssl x509 -serial` prints it."""
    digits = f"{abs(number):X}"
    return ("-" if number < 0 else "") + ("0" * (len(digits) % 2)) + digits


def _integer(data: bytes) -> str:
    from asn1crypto import core

    number = core.Integer.load(data, strict=True).native
    text = _serial(number)
    return text if number >= 1 << 64 or number < 0 else f"{text} ({number})"


# --- certificates ------------------------------------------------------------------------

def _when(moment: _dt.datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%SZ")


def certificate_summary(der: bytes, now: _dt.datetime | None = None) -> str:
    """Subject, issuer, serial, validity, key and SHA-256 fingerprint of an X.509
    certificate; raises ValueError if it is not one."""
    from asn1crypto import x509

    cert = x509.Certificate.load(der, strict=True)
    try:
        subject, issuer = rfc4514(cert.subject), rfc4514(cert.issuer)
        serial = cert.serial_number
        start, end = cert.not_valid_before, cert.not_valid_after
        key = _key(cert.public_key)
    except (ValueError, TypeError, KeyError) as e:
        raise ValueError(_reason(e)) from e
    now = now or _dt.datetime.now(_dt.timezone.utc)
    state = " (expired)" if now > end else " (not yet valid)" if now < start else ""
    fingerprint = hashlib.sha256(der).hexdigest().upper()
    fingerprint = ":".join(fingerprint[i:i + 2] for i in range(0, 64, 2))
    return (f"certificate subject {subject or '(empty)'}; issuer {issuer or '(empty)'}; "
            f"serial {_serial(serial)}; valid {_when(start)} to {_when(end)}{state}; {key}; "
            f"SHA-256 {fingerprint}")


def _certificate_value(data: bytes) -> str | None:
    """CKA_VALUE is a certificate only on certificate objects; describe it when it parses,
    say why when it starts like one (SEQUENCE, then the tbsCertificate SEQUENCE) but does
    not, and leave anything else alone: it may be a key or data, which only the caller
    knows how to show. No hex here: on a key object this value is the secret."""
    try:
        return certificate_summary(data)
    except ValueError as cert_error:
        if data[:1] != b"\x30":
            return None
        try:
            return "public key " + _public_key(data)
        except (ValueError, TypeError, KeyError):
            pass
        outer = _der_length(data, 0)
        if outer and data[outer[0]:outer[0] + 1] == b"\x30" and outer[1] > 100:
            return (f"not a valid certificate ({len(data)} bytes, the DER says "
                    f"{sum(outer)}): {_reason(cert_error)}")
        return None


# --- printable ids and labels, dates ------------------------------------------------------

def _text(data: bytes) -> str | None:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return f'"{text}"' if text and text.isprintable() else None


def _date(data: bytes) -> str | None:
    """CK_DATE: 8 ASCII digits YYYYMMDD (empty when unset)."""
    text = data.decode("ascii", "replace")
    if len(data) == 8 and text.isdigit():
        return f"{text[:4]}-{text[4:6]}-{text[6:]}"
    return None


def _der(decode):
    """Run a DER decoder; bad input gives the hex with what was wrong."""
    def run(data: bytes) -> str | None:
        try:
            return decode(data)
        except Exception as e:  # hostile DER raises many types; show it as hex
            return _malformed(data, _reason(e))
    return run


def _public_key(data: bytes) -> str:
    from asn1crypto import keys

    return _key(keys.PublicKeyInfo.load(data, strict=True))


def _name(data: bytes) -> str:
    from asn1crypto import x509

    return rfc4514(x509.Name.load(data, strict=True)) or "(empty name)"


def _modulus(data: bytes) -> str | None:
    bits = int.from_bytes(data, "big").bit_length()
    return f"{bits}-bit modulus" if bits else None


def _exponent(data: bytes) -> str | None:
    return str(int.from_bytes(data, "big")) if 0 < len(data) <= 8 else None


DESCRIBED = {
    "CKA_VALUE": _certificate_value,
    "CKA_SUBJECT": _der(_name),
    "CKA_ISSUER": _der(_name),
    "CKA_SERIAL_NUMBER": _der(_integer),
    "CKA_EC_PARAMS": _der(_ec_params),
    "CKA_ECDSA_PARAMS": _der(_ec_params),
    "CKA_EC_POINT": _der(_ec_point),
    "CKA_PUBLIC_KEY_INFO": _der(_public_key),
    "CKA_MODULUS": _modulus,
    "CKA_PUBLIC_EXPONENT": _exponent,
    "CKA_ID": _text,
    "CKA_LABEL": _text,
    "CKA_START_DATE": _date,
    "CKA_END_DATE": _date,
}


def describe(attr_name: str, data: bytes) -> str | None:
    """A short summary of an attribute value, or None when there is nothing to add.

    ``attr_name`` is the CKA_ name as a trace prints it (padding and case ignored).
    CKA_VALUE is summarised only when it is a certificate (or a SubjectPublicKeyInfo):
    on key objects it is secret or raw, and is left to the caller. Never raises.
    """
    decoder = DESCRIBED.get(attr_name.strip().upper())
    if decoder is None or not data:
        return None
    try:
        return decoder(bytes(data))
    except Exception as e:  # a decoder bug must not take a trace view down
        return _malformed(bytes(data), _reason(e))


# --- certificates inside APDU responses -------------------------------------------------

@dataclass(frozen=True)
class FoundCertificate:
    offset: int  # where it starts in the data (of the gzip stream, when compressed)
    length: int  # DER length (of the whole certificate, even when truncated)
    der: bytes  # the bytes present
    summary: str
    complete: bool  # False: the data ends inside it (one READ BINARY chunk of several)
    compressed: bool = False  # found inside gzip (PIV CertInfo 71 01 01)


_GUNZIP_LIMIT = 1 << 20  # a certificate is kilobytes; refuse to inflate a bomb
# Parses of "30 8x .." that were not certificates before a scan gives up: each costs
# about a millisecond, and a 64 KiB response can hold 20 000 such byte pairs.
_MAX_MISSES = 32


def _der_length(data: bytes, i: int) -> tuple[int, int] | None:
    """(header length, content length) of a DER SEQUENCE at i, or None."""
    if i + 2 > len(data) or data[i] != 0x30:
        return None
    first = data[i + 1]
    if first < 0x80:
        return 2, first
    n = first & 0x7F
    if n not in (1, 2, 3) or i + 2 + n > len(data):
        return None
    return 2 + n, int.from_bytes(data[i + 2:i + 2 + n], "big")


def _scan(data: bytes, compressed: bool, base: int = 0) -> list[FoundCertificate]:
    found: list[FoundCertificate] = []
    i = misses = 0
    while i < len(data) - 4 and misses < _MAX_MISSES:
        if data[i] != 0x30 or data[i + 1] not in (0x81, 0x82, 0x83):
            i += 1
            continue
        header, length = _der_length(data, i) or (0, 0)
        total = header + length
        if header and i + total <= len(data):
            der = data[i:i + total]
            try:
                found.append(FoundCertificate(base + i, total, der, certificate_summary(der),
                                              True, compressed))
                i += total
                continue
            except ValueError:
                misses += 1
        elif header and data[i + header:i + header + 1] == b"\x30" and \
                _der_length(data, i + header) and length > 200:
            # a certificate cut by the end of the data: tbsCertificate follows the header
            der = data[i:]
            found.append(FoundCertificate(base + i, total, der,
                                          f"certificate, {len(der)} of {total} bytes (cut)",
                                          False, compressed))
            break
        i += 1
    return found


def find_certificates(data: bytes) -> list[FoundCertificate]:
    """X.509 certificates inside response data: raw DER (READ BINARY of an EF, OpenPGP
    DO 7F21), PIV's 53 { 70 cert, 71 CertInfo, FE } object from GET DATA, and
    gzip-compressed PIV certificates. Never raises."""
    data = bytes(data)
    try:
        found = _scan(data, False)
        start = data.find(b"\x1f\x8b\x08")
        while start != -1:
            inflater = zlib.decompressobj(wbits=31)
            try:
                plain = inflater.decompress(data[start:], _GUNZIP_LIMIT)
            except zlib.error:
                plain = b""
            found += _scan(plain, True, start)
            start = data.find(b"\x1f\x8b\x08", start + 3)
        return found
    except Exception:  # scanning untrusted bytes must never raise
        return []
