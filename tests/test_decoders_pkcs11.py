"""decoders.pkcs11: names, spy label quirks, flag contexts, attribute typing."""

from __future__ import annotations

import csv
import importlib.util
from collections import defaultdict
from pathlib import Path

import PyKCS11
import PyKCS11.LowLevel
import pytest

from decoders import _pkcs11_extra as extra
from decoders import pkcs11

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = ROOT.parent / "shared" / "reference" / "codes"
needs_reference = pytest.mark.skipif(
    not (REFERENCE / "pkcs11_constants.csv").exists(), reason="reference CSVs not present")


def _csv(name: str) -> list[dict[str, str]]:
    with (REFERENCE / name).open(newline="") as f:
        return list(csv.DictReader(f))


# --- name(): canonical names, including where PyKCS11's reverse dicts mislead ---

@pytest.mark.parametrize(("group", "number", "context", "expected"), [
    ("CKS", 1, None, "CKS_RO_USER_FUNCTIONS"),  # PyKCS11.CKS[1] is CKS_LAST_VALIDATION_OK
    ("CKS", 1, "validation", "CKS_LAST_VALIDATION_OK"),
    ("CKS", 4, None, "CKS_RW_SO_FUNCTIONS"),
    ("CKM", 0x1040, None, "CKM_EC_KEY_PAIR_GEN"),  # not CKM_ECDSA_KEY_PAIR_GEN
    ("CKA", 0x100, None, "CKA_KEY_TYPE"),
    ("CKA", 0x180, None, "CKA_EC_PARAMS"),  # not CKA_ECDSA_PARAMS
    ("CKA", 0x134, None, "CKA_SUBPRIME_BITS"),  # not CKA_SUB_PRIME_BITS
    ("CKK", 3, None, "CKK_EC"),  # not CKK_ECDSA
    ("CKK", 0x18, None, "CKK_CAST128"),
    ("CKM", 0x320, None, "CKM_CAST128_KEY_GEN"),
    ("CKM", 0x3A5, None, "CKM_PBE_SHA1_CAST128_CBC"),
    ("CKM", 0x397, None, "CKM_SHA3_256_KEY_DERIVATION"),
    ("CKM", 0x2003, None, "CKM_DSA_PROBABILISTIC_PARAMETER_GEN"),  # not the misspelling
    ("CKH", 1, None, "CKH_MONOTONIC_COUNTER"),  # not CKH_HEDGE_REQUIRED
    ("CKH", 2, None, "CKH_CLOCK"),
    ("CKH", 1, "hedge", "CKH_HEDGE_REQUIRED"),
    ("CKG", 1, None, "CKG_MGF1_SHA1"),
    ("CKG", 4, None, "CKG_MGF1_SHA512"),
    ("CKG", 1, "generator", "CKG_GENERATE"),
    ("CKG", 0, "generator", "CKG_NO_GENERATE"),
    ("CKZ", 1, None, "CKZ_DATA_SPECIFIED"),  # not CKZ_SALT_SPECIFIED
    ("CKZ", 1, "salt", "CKZ_SALT_SPECIFIED"),
    ("CKP", 1, None, "CKP_BASELINE_PROVIDER"),
    ("CKP", 1, "prf", "CKP_PKCS5_PBKD2_HMAC_SHA1"),
    ("CKP", 2, "ml_kem", "CKP_ML_KEM_768"),
    ("CKP", 3, "ml_dsa", "CKP_ML_DSA_87"),
    ("CKP", 0xC, "slh_dsa", "CKP_SLH_DSA_SHAKE_256F"),
    ("CKV", 1, None, "CKV_AUTHORITY_TYPE_NIST_CMVP"),
    ("CKV", 4, "type", "CKV_TYPE_HYBRID"),
    ("CKN", 1, None, "CKN_OTP_CHANGED"),
    ("CKT", 2, None, "CKT_TRUST_ANCHOR"),
    ("CKU", 2, None, "CKU_CONTEXT_SPECIFIC"),
    ("CKC", 0, None, "CKC_X_509"),
    ("CKD", 1, None, "CKD_NULL"),
    ("CKO", 3, None, "CKO_PRIVATE_KEY"),
    ("CKR", 0xA0, None, "CKR_PIN_INCORRECT"),
    ("CKA", 0x4000062A, None, "CKA_ENCAPSULATE_TEMPLATE"),  # 3.2 erratum value
    ("CKA", 0x62A, None, "CKA_ENCAPSULATE_TEMPLATE"),  # published value
])
def test_name_canonical(group, number, context, expected):
    assert pkcs11.name(group, number, context) == expected


@pytest.mark.parametrize(("group", "number", "expected"), [
    ("CKR", 0xCE534351, "CKR_NSS_CERTDB_FAILED"),
    ("CKR", 0xCE534352, "CKR_NSS_KEYDB_FAILED"),
    ("CKO", 0xCE534353, "CKO_NSS_TRUST"),
    ("CKA", 0xCE536358, "CKA_NSS_TRUST_SERVER_AUTH"),
    ("CKA", 0xCE534351, "CKA_NSS_URL"),
    ("CKA", 0xCF534302, "CKA_SPKI"),
    ("CKM", 0xCE53436C, "CKM_NSS_CHACHA20_POLY1305"),
    ("CKK", 0xD4321003, "CKK_GOSTR3410_512"),
    ("CKT", 0xCE534351, "CKT_NSS_TRUSTED"),
    ("CKR", 0x80000000, "CKR_VENDOR_DEFINED"),
    ("CKP", 0x80000000, "CKP_VENDOR_DEFINED"),
    ("CKR", 0x80000005, "CKR_VENDOR_DEFINED+0x5"),
    ("CKM", 0x80001234, "CKM_VENDOR_DEFINED+0x1234"),
    ("CKU", 0x80000001, "CKU_VENDOR_DEFINED+0x1"),  # no header name; same spelling
    ("CKM", 0x12345, "CKM_0x00012345"),
    ("CKA", 0x7FFFFFFF, "CKA_0x7fffffff"),
    ("CKM", (1 << 64) - 1, "CK_UNAVAILABLE_INFORMATION"),  # CKA_KEY_GEN_MECHANISM of imports
    ("CKM", 0xFFFFFFFF, "CK_UNAVAILABLE_INFORMATION"),  # the same on Windows
    ("CKR", 0xFFFFFFFF, "CKR_VENDOR_DEFINED+0x7fffffff"),  # a return value is never that
])
def test_name_vendor_and_unknown(group, number, expected):
    assert pkcs11.name(group, number) == expected
    assert pkcs11.value(expected) == (number if expected != "CK_UNAVAILABLE_INFORMATION"
                                      else (1 << 64) - 1)


def test_name_unknown_group_and_context():
    assert pkcs11.name("XYZ", 1) == "XYZ_0x00000001"  # an unknown group is not an error
    with pytest.raises(ValueError, match="context"):
        pkcs11.name("CKS", 1, "bogus")
    with pytest.raises(ValueError):
        pkcs11.name("CKA", 1, "profile")


def test_every_duplicate_number_has_exactly_one_preferred_name():
    """A PyKCS11 update that adds an alias must come with a preference, not a coin toss."""
    by_number = defaultdict(set)
    for n, v in vars(PyKCS11).items():
        group = n.partition("_")[0]
        if type(v) is int and group in pkcs11.GROUPS:
            context = extra.ALT_CONTEXT.get(n, extra.DEFAULT_CONTEXT.get(group))
            by_number[group, context, v].add(n)
    duplicates = {k: names for k, names in by_number.items() if len(names) > 1}
    assert len(duplicates) == 20
    for (group, context, v), names in duplicates.items():
        chosen = names & pkcs11._PREFERRED
        assert len(chosen) == 1, names
        assert pkcs11.name(group, v, context) == chosen.pop()


def test_every_pykcs11_constant_round_trips():
    for n, v in vars(PyKCS11).items():
        group = n.partition("_")[0]
        if type(v) is int and group in (*pkcs11.GROUPS, "CKF"):
            assert pkcs11.value(n) == v, n
            if group != "CKF":
                context = extra.ALT_CONTEXT.get(n)
                assert pkcs11.value(pkcs11.name(group, v, context)) == v, n


def test_extra_tables_agree_with_pykcs11():
    """PyKCS11.LowLevel (not the package) does define CKP/CKN/CKT/CKV and the flags."""
    for table in extra.TABLES.values():
        for v, n in table.items():
            assert getattr(PyKCS11.LowLevel, n) == v, n
    for table in extra.FLAGS.values():
        for v, n in table.items():
            assert getattr(PyKCS11, n) == v, n
    for n, v in extra.MISC.items():
        assert getattr(PyKCS11.LowLevel, n) == v, n


# --- return values ---

@pytest.mark.parametrize(("rv", "expected"), [
    (0, "CKR_OK"),
    (0xA0, "CKR_PIN_INCORRECT"),
    (0x209, "CKR_PARAMETER_SET_NOT_SUPPORTED"),
    (-2147483000, "CKR_VENDOR_DEFINED+0x288"),  # a 32-bit-long Windows spy's %ld
    (0xCE534351 - (1 << 32), "CKR_NSS_CERTDB_FAILED"),
    (-(1 << 31), "CKR_VENDOR_DEFINED"),
    (2147483649, "CKR_VENDOR_DEFINED+0x1"),  # "Returned:  2147483649 (null)"
])
def test_ckr_name(rv, expected):
    assert pkcs11.ckr_name(rv) == expected


def test_ckr_meaning():
    assert pkcs11.ckr_meaning(0xA0) == "PIN does not match"
    assert pkcs11.ckr_meaning(0x150) == "output buffer too small; required length was returned"
    assert pkcs11.ckr_meaning(0xCE534351 - (1 << 32)) == (
        "NSS softoken could not open/use the certificate database")
    assert pkcs11.ckr_meaning(0x80000005) == ""
    assert pkcs11.ckr_meaning(0x4) == ""  # unassigned
    for n, v in vars(PyKCS11).items():
        if n.startswith("CKR_") and type(v) is int:
            assert pkcs11.ckr_meaning(v), n


# --- value(): labels as traces print them ---

@pytest.mark.parametrize(("label", "expected"), [
    ("CKA_LABEL             ", 0x3),
    ("  CKO_SECRET_KEY           ", 0x4),
    ("CKM_ECDSA_KEY_PAIR_GEN", 0x1040),  # aliases resolve too
    ("CKA_SUB_PRIME_BITS", 0x134),
    ("CKF_MULTI_MESSGE", 0x20),
    ("CKF_RNG", 0x1),
    ("CKP_ML_KEM_768", 0x2),
    ("CK_OTP_PIN", 0x1),
    ("CKO_NETSCAPE_TRUST", 0xCE534353),
    ("CKO_NETSCAPE_CRL               ", 0xCE534351),
    ("CKO_NSS_TRUST", 0xCE534353),
    ("CKA_NETSCAPE_URL", 0xCE534351),
    ("CKA_NETSCAPE_URL(Netsc)                         ", 0xCE534351),
    ("CKA_NSS_URL(NSS)                         ", 0xCE534351),
    ("CKA_NSS_TRUST_DIGITAL_SIGNATURE(NSS)   ", 0xCE536351),
    ("CKA_TRUST_SERVER_AUTH(Netsc)               ", 0xCE536358),
    ("CKA_TRUST_SERVER_AUTH(NSS)               ", 0xCE536358),
    ("CKA_TRUST_SERVER_AUTH ", 0x62C),  # untagged: the 3.2 standard attribute
    ("CKA_TRUST_DIGITAL_SIGNATURE", 0xCE536351),  # no standard namesake: NSS
    ("CKA_CERT_SHA1_HASH(Netsc)                     ", 0xCE5363B4),
    ("CKA_CERT_MD5_HASH(NSS)", 0xCE5363B5),
    ("CKK_EC_MONTOGMERY   ", 0x41),
    ("CKM_SHA3_383_RSA_PKCS                  ", 0x61),
    ("CKA_? (0x0000abcd)", 0xABCD),
    ("CKA_? (0x8000ABCD)", 0x8000ABCD),
    ("Unknown Mechanism (80001234)", 0x80001234),
    (" Unknown Mechanism (00000255)  ", 0x255),  # CKM_SHA224 on a 0.23 spy
    ("Unknown Mechanism (0000210a) : ", 0x210A),
    ("Value 8000000A not found for type CK_OBJECT_CLASS", 0x8000000A),
    ("0x80001234", 0x80001234),
    ("2147483649", 0x80000001),
    ("CKR_VENDOR_DEFINED+0x5", 0x80000005),
    ("CKR_VENDOR_DEFINED", 0x80000000),
    ("CKU_VENDOR_DEFINED+0x1", 0x80000001),
    ("CKM_0x00012345", 0x12345),
    ("CK_UNAVAILABLE_INFORMATION", (1 << 64) - 1),
    ("CKA_X2RATCHET_BAGSIZE ", 0x603),  # the spy prints this for CKA_X2RATCHET_RK too
])
def test_value(label, expected):
    assert pkcs11.value(label) == expected


@pytest.mark.parametrize("label", [
    "(null)", "", "   ", "CKA_NOT_A_THING", "CKO_NETSCAPE_NOTHING", "Unknown Mechanism (zz)",
    "CKA_LABEL extra", "ckr_ok",
])
def test_value_unknown(label):
    assert pkcs11.value(label) is None


# --- flags(): one table per structure ---

@pytest.mark.parametrize(("context", "number", "expected"), [
    ("slot", 0x7, ["CKF_TOKEN_PRESENT", "CKF_REMOVABLE_DEVICE", "CKF_HW_SLOT"]),
    ("token", 0x42D, ["CKF_RNG", "CKF_LOGIN_REQUIRED", "CKF_USER_PIN_INITIALIZED",
                      "CKF_RESTORE_KEY_NOT_NEEDED", "CKF_TOKEN_INITIALIZED"]),
    ("session", 0x6, ["CKF_RW_SESSION", "CKF_SERIAL_SESSION"]),
    ("mechanism", 0x60000, ["CKF_WRAP", "CKF_UNWRAP"]),
    ("mechanism", 0x10, ["CKF_MESSAGE_VERIFY"]),  # PyKCS11.CKF[0x10] is CKF_EXCLUDE_PIN
    ("mechanism", 0x20, ["CKF_MULTI_MESSAGE"]),
    ("mechanism", 0x800000, ["CKF_EC_OID"]),
    ("mechanism", 0x80000001, ["CKF_HW", "CKF_EXTENSION"]),
    ("mechanism", 0x1900, ["CKF_ENCRYPT", "CKF_SIGN", "CKF_SIGN_RECOVER"]),
    ("init", 0x2, ["CKF_OS_LOCKING_OK"]),
    ("init", 0x3, ["CKF_LIBRARY_CANT_CREATE_OS_THREADS", "CKF_OS_LOCKING_OK"]),
    ("wait", 0x1, ["CKF_DONT_BLOCK"]),
    ("interface", 0x1, ["CKF_INTERFACE_FORK_SAFE"]),
    ("message", 0x1, ["CKF_END_OF_MESSAGE"]),
    ("otp", 0x10, ["CKF_EXCLUDE_PIN"]),
    ("hkdf", 0x4, ["CKF_HKDF_SALT_KEY"]),
    ("slot", 0x9, ["CKF_TOKEN_PRESENT", "0x00000008"]),
    ("session", 0x1, ["0x00000001"]),  # bit 0 is not a session flag
    ("slot", 0, []),
])
def test_flags(context, number, expected):
    assert pkcs11.flags(context, number) == expected


def test_flags_contexts():
    assert set(pkcs11.FLAG_CONTEXTS) == {"slot", "token", "session", "mechanism", "init",
                                         "wait", "interface", "message", "otp", "hkdf"}
    with pytest.raises(ValueError, match="flags context"):
        pkcs11.flags("info", 1)


def test_is_vendor():
    assert not pkcs11.is_vendor(0)
    assert not pkcs11.is_vendor(0x7FFFFFFF)
    assert pkcs11.is_vendor(0x80000000)
    assert pkcs11.is_vendor(0xCE534351)
    assert pkcs11.is_vendor(-1)


# --- attribute helpers ---

def test_ulong_from_le():
    assert pkcs11.ulong_from_le(bytes.fromhex("0004000000000000")) == 1024  # a 0.23 spy dump
    assert pkcs11.ulong_from_le(bytes.fromhex("10000000")) == 16
    for bad in (b"", b"\x01", b"\x00" * 16):
        with pytest.raises(ValueError):
            pkcs11.ulong_from_le(bad)


@pytest.mark.parametrize(("attr", "kind"), [
    ("CKA_CLASS", "class"),
    ("CKA_KEY_TYPE", "key_type"),
    ("CKA_CERTIFICATE_TYPE", "cert_type"),
    ("CKA_TOKEN", "bool"),
    ("CKA_SENSITIVE", "bool"),
    ("CKA_MODULUS_BITS", "ulong"),
    ("CKA_VALUE_LEN", "ulong"),
    ("CKA_START_DATE", "date"),
    ("CKA_LABEL", "string"),
    ("CKA_APPLICATION", "string"),
    ("CKA_ALLOWED_MECHANISMS", "mechanism_list"),
    ("CKA_KEY_GEN_MECHANISM", "mechanism"),
    ("CKA_PROFILE_ID", "profile"),
    ("CKA_TRUST_SERVER_AUTH", "trust"),
    ("CKA_NSS_TRUST_SERVER_AUTH", "trust"),
    ("CKA_VALIDATION_TYPE", "validation_type"),
])
def test_attribute_kinds(attr, kind):
    assert pkcs11.ATTRIBUTE_KINDS[pkcs11.value(attr)] == kind


def test_attribute_kinds_defaults_and_enums():
    for attr in ("CKA_VALUE", "CKA_ID", "CKA_MODULUS", "CKA_EC_POINT", "CKA_SUBJECT"):
        assert pkcs11.value(attr) not in pkcs11.ATTRIBUTE_KINDS  # "bytes"
    for group, context in pkcs11.ENUM_KINDS.values():
        assert group in pkcs11.GROUPS
        pkcs11.name(group, 0, context)  # the context exists
    kind = pkcs11.ENUM_KINDS[pkcs11.ATTRIBUTE_KINDS[pkcs11.value("CKA_CLASS")]]
    assert pkcs11.name(*kind[:1], 3, kind[1]) == "CKO_PRIVATE_KEY"


def test_secret_attributes():
    v = pkcs11.value
    always = {v(n) for n in ("CKA_PRIVATE_EXPONENT", "CKA_PRIME_1", "CKA_PRIME_2",
                             "CKA_EXPONENT_1", "CKA_EXPONENT_2", "CKA_COEFFICIENT", "CKA_SEED")}
    assert always <= pkcs11.SECRET_ATTRIBUTES
    assert {v("CKA_VALUE")} == pkcs11.SECRET_IF_KEY
    assert not pkcs11.SECRET_ATTRIBUTES & pkcs11.SECRET_IF_KEY
    for public in ("CKA_MODULUS", "CKA_PUBLIC_EXPONENT", "CKA_PRIME", "CKA_SUBPRIME",
                   "CKA_BASE", "CKA_EC_POINT", "CKA_CHECK_VALUE", "CKA_X2RATCHET_DHP"):
        assert v(public) not in pkcs11.SECRET_ATTRIBUTES | pkcs11.SECRET_IF_KEY, public


@pytest.mark.parametrize(("attr", "object_class", "secret"), [
    ("CKA_VALUE", "CKO_SECRET_KEY", True),
    ("CKA_VALUE", "CKO_PRIVATE_KEY", True),
    ("CKA_VALUE", "CKO_OTP_KEY", True),
    ("CKA_VALUE", "CKO_CERTIFICATE", False),
    ("CKA_VALUE", "CKO_PUBLIC_KEY", False),
    ("CKA_VALUE", None, True),  # class unknown: fail closed
    ("CKA_VALUE", "CKO_NSS_TRUST", True),  # vendor class: fail closed
    ("CKA_PRIME_1", "CKO_PUBLIC_KEY", True),
    ("CKA_LABEL", "CKO_SECRET_KEY", False),
])
def test_is_secret(attr, object_class, secret):
    cls = pkcs11.value(object_class) if object_class else None
    assert pkcs11.is_secret(pkcs11.value(attr), cls) is secret


# --- against the reference CSVs, when present ---

@needs_reference
def test_every_reference_name_round_trips():
    for row in _csv("pkcs11_constants.csv"):
        assert pkcs11.value(row["name"]) == int(row["value_dec"]), row["name"]
    for row in _csv("pkcs11_vendor_constants.csv"):
        number = int(row["value_hex"], 16)
        assert pkcs11.value(row["name"]) == number, row["name"]
        assert pkcs11.name(row["group"], number) == row["name"]


@needs_reference
def test_reference_names_give_canonical_names():
    """name(group, value(n)) is n itself, or for an alias the header's first name."""
    gen = _load_generator()
    rows = [r for r in _csv("pkcs11_constants.csv") if r["group"] in pkcs11.GROUPS]
    names_of = defaultdict(list)
    for r in rows:
        names_of[r["group"], gen._context(r), int(r["value_dec"])].append(r["name"])
    for r in rows:
        context = gen._context(r)
        got = pkcs11.name(r["group"], pkcs11.value(r["name"]), context)
        same = names_of[r["group"], context, int(r["value_dec"])]
        if len(same) == 1:
            assert got == r["name"]
        else:
            assert got in pkcs11._PREFERRED and got in same, same
        if r["alias_of"]:
            assert got == r["alias_of"]


@needs_reference
def test_reference_meanings_and_flag_contexts():
    gen = _load_generator()
    for r in _csv("pkcs11_constants.csv"):
        if r["group"] == "CKR":
            assert pkcs11.ckr_meaning(int(r["value_dec"])) == r["meaning"], r["name"]
        elif r["group"] == "CKF" and gen._context(r) and not r["alias_of"]:
            assert pkcs11.flags(gen._context(r), int(r["value_dec"])) == [r["name"]]


@needs_reference
def test_generated_module_is_current():
    gen = _load_generator()
    assert gen.render(REFERENCE) == (ROOT / "decoders" / "_pkcs11_extra.py").read_text(), (
        "run scripts/gen_pkcs11_tables.py")


def _load_generator():
    spec = importlib.util.spec_from_file_location(
        "gen_pkcs11_tables", ROOT / "scripts" / "gen_pkcs11_tables.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
