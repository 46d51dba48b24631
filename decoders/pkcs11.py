"""PKCS#11 numbers <-> names, flag words, and attribute typing for trace decoding.

Exports: GROUPS, name, ckr_name, ckr_meaning, value, flags, is_vendor,
ulong_from_le, ATTRIBUTE_KINDS, ENUM_KINDS, SECRET_ATTRIBUTES, SECRET_IF_KEY,
SECRET_KEY_CLASSES, is_secret.

Names come from PyKCS11's module-level constants (its reverse dicts keep the
last name seen for a number, so CKS 1 reads CKS_LAST_VALIDATION_OK there);
what PyKCS11 lacks is generated into _pkcs11_extra. Where a group reuses
numbers for two structures (CKS, CKH, CKG, CKZ, CKP, CKV), name() takes a
``context``; without one it means the structure traces show most: the 2.x one,
or CKA_PROFILE_ID's for CKP (_pkcs11_extra.DEFAULT_CONTEXT).
"""

from __future__ import annotations

import re

import PyKCS11

from decoders import _pkcs11_extra as _x

GROUPS = ("CKR", "CKA", "CKM", "CKO", "CKK", "CKU", "CKS", "CKC", "CKD", "CKG", "CKH", "CKZ",
          "CKP", "CKN", "CKT", "CKV")
FLAG_CONTEXTS = tuple(_x.FLAGS)
VENDOR_DEFINED = 0x80000000
_ULONG64_MAX = (1 << 64) - 1
# CK_UNAVAILABLE_INFORMATION is ~0UL: 64 bits on LP64 spies, 32 on Windows ones.
_UNAVAILABLE = (_ULONG64_MAX, 0xFFFFFFFF)

# Where one number has several names, the one the OASIS header defines first;
# the others are deprecated or misspelt aliases (CKK_ECDSA, CAST5, *_KEY_DERIVE,
# CKM_DSA_PROBABLISTIC_...). Without this, whichever name PyKCS11 lists last wins.
_PREFERRED = frozenset({
    "CKA_SUBPRIME_BITS", "CKA_EC_PARAMS",
    "CKK_EC", "CKK_CAST128",
    "CKM_CAST128_KEY_GEN", "CKM_CAST128_ECB", "CKM_CAST128_CBC", "CKM_CAST128_MAC",
    "CKM_CAST128_MAC_GENERAL", "CKM_CAST128_CBC_PAD",
    "CKM_PBE_MD5_CAST128_CBC", "CKM_PBE_SHA1_CAST128_CBC",
    "CKM_SHA3_224_KEY_DERIVATION", "CKM_SHA3_256_KEY_DERIVATION", "CKM_SHA3_384_KEY_DERIVATION",
    "CKM_SHA3_512_KEY_DERIVATION", "CKM_SHAKE_128_KEY_DERIVATION", "CKM_SHAKE_256_KEY_DERIVATION",
    "CKM_EC_KEY_PAIR_GEN", "CKM_DSA_PROBABILISTIC_PARAMETER_GEN",
})

# Label spellings of OpenSC's pkcs11-spy that no header defines.
_SPY_TYPOS = {
    "CKK_EC_MONTOGMERY": "CKK_EC_MONTGOMERY",
    "CKM_SHA3_383_RSA_PKCS": "CKM_SHA3_384_RSA_PKCS",  # it means SHA3-384
}

_NAMES: dict[str, int] = {}  # every accepted spelling -> number
_TABLES: dict[tuple[str, str | None], dict[int, str]] = {}  # (group, context) -> number -> name


def _add(group: str, context: str | None, name_: str, number: int) -> None:
    _NAMES[name_] = number
    table = _TABLES.setdefault((group, context), {})
    if number not in table or name_ in _PREFERRED:
        table[number] = name_


def _build() -> None:
    for n, v in vars(PyKCS11).items():
        group = n.partition("_")[0]
        if type(v) is not int or group not in (*GROUPS, "CKF"):
            continue
        if group == "CKF":  # flag names only resolve by value(); flags() reads _x.FLAGS
            _NAMES[n] = v
        else:
            _add(group, _x.ALT_CONTEXT.get(n, _x.DEFAULT_CONTEXT.get(group)), n, v)
    for (group, context), table in _x.TABLES.items():
        for v, n in table.items():
            _add(group, context, n, v)
    for group, table in _x.VENDOR.items():
        for v, n in table.items():
            _add(group, _x.DEFAULT_CONTEXT.get(group), n, v)
    _NAMES.update(_x.MISC)
    # 3.2 erratum: the working headers add CKF_ARRAY_ATTRIBUTE to these two; accept both.
    _TABLES["CKA", None][0x4000062A] = "CKA_ENCAPSULATE_TEMPLATE"
    _TABLES["CKA", None][0x4000062B] = "CKA_DECAPSULATE_TEMPLATE"


_build()


def _ulong(number: int) -> int:
    """A CK_ULONG printed with %ld (Windows, or ~0 anywhere) comes out negative."""
    return number & 0xFFFFFFFF if number < 0 else number


def is_vendor(number: int) -> bool:
    return _ulong(number) >= VENDOR_DEFINED


def name(group: str, number: int, context: str | None = None) -> str:
    """Canonical name of ``number`` in ``group``; never raises for any number.

    Unknown numbers come back as GROUP_VENDOR_DEFINED+0x5 or GROUP_0x00001234,
    both of which value() reads back. ``context`` picks the other structure of
    a group that reuses numbers (e.g. "validation" for CKS, "ml_kem" for CKP).
    """
    key = (group, context or _x.DEFAULT_CONTEXT.get(group))
    if context and key not in _TABLES:
        raise ValueError(f"unknown context {context!r} for {group}")
    number = _ulong(number)
    known = _TABLES.get(key, {}).get(number)
    if known:
        return known
    if number in _UNAVAILABLE and group != "CKR":
        return "CK_UNAVAILABLE_INFORMATION"
    if number >= VENDOR_DEFINED:
        offset = number - VENDOR_DEFINED
        return f"{group}_VENDOR_DEFINED" + (f"+0x{offset:x}" if offset else "")
    return f"{group}_0x{number:08x}"


def ckr_name(rv: int) -> str:
    return name("CKR", rv)


def ckr_meaning(rv: int) -> str:
    return _x.CKR_MEANINGS.get(_ulong(rv), "")


# Numbers printed in place of a name: by the spy ("CKA_? (0x0000abcd)",
# "Unknown Mechanism (80001234)", "Value 8000000A not found for type ...")
# and by name() itself ("CKR_VENDOR_DEFINED+0x5", "CKM_0x00001234").
_NUMERIC = [
    re.compile(r"CK[A-Z]?_\? \((?:0x)?(?P<hex>[0-9a-fA-F]+)\)"),
    re.compile(r"Unknown \w+ \((?:0x)?(?P<hex>[0-9a-fA-F]+)\)"),
    re.compile(r"Value (?P<hex>[0-9a-fA-F]+) not found for type \w+"),
    re.compile(r"CK[A-Z]?_VENDOR_DEFINED(?:\+0x(?P<offset>[0-9a-fA-F]+))?"),
    re.compile(r"CK[A-Z]?_0x(?P<hex>[0-9a-fA-F]+)"),
    re.compile(r"0x(?P<hex>[0-9a-fA-F]+)"),
    re.compile(r"(?P<dec>[0-9]+)"),
]
_NSS_TAG = re.compile(r"\((?:NSS|Netsc)\)$")  # OpenSC 0.27+ / older spies


def _nss_name(label: str) -> str:
    """CKO_NETSCAPE_CRL, CKA_TRUST_SERVER_AUTH, CKA_CERT_SHA1_HASH -> the CK?_NSS_* name."""
    group, _, rest = label.partition("_")
    rest = re.sub(r"^(?:NETSCAPE|NSS)(?:_|$)", "", rest)
    return f"{group}_NSS_{rest}" if rest else f"{group}_NSS"


def value(label: str) -> int | None:
    """Number for a constant's name as a trace prints it, or None.

    Tolerates pkcs11-spy quirks: padding, CKO_NETSCAPE_* and CKA_*(Netsc)/(NSS)
    labels for NSS values, the CKK_EC_MONTOGMERY and CKM_SHA3_383_RSA_PKCS
    typos, and numbers printed in place of names. A bare CKA_TRUST_SERVER_AUTH
    is the 3.2 standard attribute: spies always tag the NSS one.
    """
    label = label.strip().rstrip(":").rstrip()
    if label in _NAMES:
        return _NAMES[label]
    if _NSS_TAG.search(label):
        return _NAMES.get(_nss_name(label[: label.rindex("(")]))
    if label in _SPY_TYPOS:
        return _NAMES[_SPY_TYPOS[label]]
    if "NETSCAPE" in label or label.startswith(("CKA_TRUST_", "CKA_CERT_")):
        return _NAMES.get(_nss_name(label))
    for pattern in _NUMERIC:
        m = pattern.fullmatch(label)
        if m:
            groups = m.groupdict()
            if groups.get("hex"):
                return int(groups["hex"], 16)
            if groups.get("dec"):
                return int(groups["dec"])
            return VENDOR_DEFINED + int(groups.get("offset") or "0", 16)
    return None


def flags(context: str, number: int) -> list[str]:
    """Names of the bits set in a flags word of the given structure, low bit first.

    Bits the structure does not define come back as "0x00000010" entries.
    """
    if context not in _x.FLAGS:
        raise ValueError(f"unknown flags context {context!r}; expected one of {FLAG_CONTEXTS}")
    table = _x.FLAGS[context]
    number = _ulong(number)
    bits = (1 << i for i in range(number.bit_length()) if number >> i & 1)
    return [table.get(bit, f"0x{bit:08x}") for bit in bits]


def ulong_from_le(data: bytes) -> int:
    """A CK_ULONG attribute as the spy dumps it: raw little-endian, 4 or 8 bytes."""
    if len(data) not in (4, 8):
        raise ValueError(f"CK_ULONG must be 4 or 8 bytes, got {len(data)}")
    return int.from_bytes(data, "little")


def _numbers(names: str) -> list[int]:
    return [_NAMES[n] for n in names.split()]


# How each attribute's value is typed (spec data types, not the spy's renderer,
# which e.g. hex-dumps CKA_MODULUS_BITS). Missing types are "bytes".
_KIND_NAMES = {
    "bool": """CKA_TOKEN CKA_PRIVATE CKA_TRUSTED CKA_SENSITIVE CKA_ENCRYPT CKA_DECRYPT
        CKA_WRAP CKA_UNWRAP CKA_SIGN CKA_SIGN_RECOVER CKA_VERIFY CKA_VERIFY_RECOVER
        CKA_DERIVE CKA_EXTRACTABLE CKA_LOCAL CKA_NEVER_EXTRACTABLE CKA_ALWAYS_SENSITIVE
        CKA_MODIFIABLE CKA_COPYABLE CKA_DESTROYABLE CKA_SECONDARY_AUTH
        CKA_ALWAYS_AUTHENTICATE CKA_WRAP_WITH_TRUSTED CKA_OTP_USER_FRIENDLY_MODE
        CKA_RESET_ON_INIT CKA_HAS_RESET CKA_COLOR CKA_X2RATCHET_BOBS1STMSG
        CKA_X2RATCHET_ISALICE CKA_ENCAPSULATE CKA_DECAPSULATE
        CKA_OPENSC_NON_REPUDIATION CKA_OPENSC_ALWAYS_AUTH_ANY_OBJECT""",
    "ulong": """CKA_CERTIFICATE_CATEGORY CKA_JAVA_MIDP_SECURITY_DOMAIN CKA_MODULUS_BITS
        CKA_PRIME_BITS CKA_SUBPRIME_BITS CKA_VALUE_BITS CKA_VALUE_LEN CKA_AUTH_PIN_FLAGS
        CKA_OTP_FORMAT CKA_OTP_LENGTH CKA_OTP_TIME_INTERVAL CKA_OTP_CHALLENGE_REQUIREMENT
        CKA_OTP_TIME_REQUIREMENT CKA_OTP_COUNTER_REQUIREMENT CKA_OTP_PIN_REQUIREMENT
        CKA_PIXEL_X CKA_PIXEL_Y CKA_RESOLUTION CKA_CHAR_ROWS CKA_CHAR_COLUMNS
        CKA_BITS_PER_PIXEL CKA_X2RATCHET_BAGSIZE CKA_X2RATCHET_NR CKA_X2RATCHET_NS
        CKA_X2RATCHET_PNS CKA_HSS_LEVELS CKA_HSS_LMS_TYPE CKA_HSS_LMOTS_TYPE
        CKA_HSS_KEYS_REMAINING CKA_PARAMETER_SET CKA_OBJECT_VALIDATION_FLAGS
        CKA_VALIDATION_LEVEL CKA_VALIDATION_FLAG""",
    "class": "CKA_CLASS",
    "key_type": "CKA_KEY_TYPE",
    "cert_type": "CKA_CERTIFICATE_TYPE",
    "mechanism": "CKA_KEY_GEN_MECHANISM CKA_MECHANISM_TYPE CKA_NAME_HASH_ALGORITHM",
    "hw_feature": "CKA_HW_FEATURE_TYPE",
    "profile": "CKA_PROFILE_ID",
    "trust": """CKA_TRUST_SERVER_AUTH CKA_TRUST_CLIENT_AUTH CKA_TRUST_CODE_SIGNING
        CKA_TRUST_EMAIL_PROTECTION CKA_TRUST_IPSEC_IKE CKA_TRUST_TIME_STAMPING
        CKA_TRUST_OCSP_SIGNING CKA_NSS_TRUST_DIGITAL_SIGNATURE CKA_NSS_TRUST_NON_REPUDIATION
        CKA_NSS_TRUST_KEY_ENCIPHERMENT CKA_NSS_TRUST_DATA_ENCIPHERMENT
        CKA_NSS_TRUST_KEY_AGREEMENT CKA_NSS_TRUST_KEY_CERT_SIGN CKA_NSS_TRUST_CRL_SIGN
        CKA_NSS_TRUST_SERVER_AUTH CKA_NSS_TRUST_CLIENT_AUTH CKA_NSS_TRUST_CODE_SIGNING
        CKA_NSS_TRUST_EMAIL_PROTECTION CKA_NSS_TRUST_IPSEC_END_SYSTEM
        CKA_NSS_TRUST_IPSEC_TUNNEL CKA_NSS_TRUST_IPSEC_USER CKA_NSS_TRUST_TIME_STAMPING
        CKA_NSS_TRUST_STEP_UP_APPROVED""",
    "validation_type": "CKA_VALIDATION_TYPE",
    "validation_authority": "CKA_VALIDATION_AUTHORITY_TYPE",
    "mechanism_list": "CKA_ALLOWED_MECHANISMS",
    "date": "CKA_START_DATE CKA_END_DATE",
    "string": """CKA_LABEL CKA_APPLICATION CKA_UNIQUE_ID CKA_URL CKA_OTP_TIME
        CKA_OTP_USER_IDENTIFIER CKA_OTP_SERVICE_IDENTIFIER CKA_OTP_SERVICE_LOGO_TYPE
        CKA_CHAR_SETS CKA_ENCODING_METHODS CKA_MIME_TYPES CKA_VALIDATION_MODULE_ID
        CKA_VALIDATION_COUNTRY CKA_VALIDATION_CERTIFICATE_IDENTIFIER
        CKA_VALIDATION_CERTIFICATE_URI CKA_VALIDATION_VENDOR_URI CKA_VALIDATION_PROFILE
        CKA_NSS_URL CKA_NSS_EMAIL""",
}
ATTRIBUTE_KINDS: dict[int, str] = {
    number: kind for kind, names in _KIND_NAMES.items() for number in _numbers(names)
}
# Kinds whose value is one CK_ULONG to show as name(group, v, context=context).
ENUM_KINDS: dict[str, tuple[str, str | None]] = {
    "class": ("CKO", None),
    "key_type": ("CKK", None),
    "cert_type": ("CKC", None),
    "mechanism": ("CKM", None),
    "hw_feature": ("CKH", None),
    "profile": ("CKP", None),
    "trust": ("CKT", None),
    "validation_type": ("CKV", "type"),
    "validation_authority": ("CKV", "authority"),
}

# Secrets, as far as the numbers tell. Always secret: RSA private components,
# the 3.2 key-generation seed, and the Double Ratchet's chain, root and header
# keys and its own DH private key (DHP/DHR are public keys). CKA_VALUE is secret
# only on key objects (d of an EC/DSA/DH/ML-* private key, secret key bytes, the
# OTP secret) but public on certificates and public keys. CKA_PRIME, CKA_SUBPRIME
# and CKA_BASE stay public on DSA/DH private keys: they are domain parameters.
# A redactor should still allowlist what it prints; these are the known secrets.
SECRET_ATTRIBUTES = frozenset(_numbers("""
    CKA_PRIVATE_EXPONENT CKA_PRIME_1 CKA_PRIME_2 CKA_EXPONENT_1 CKA_EXPONENT_2
    CKA_COEFFICIENT CKA_SEED CKA_X2RATCHET_RK CKA_X2RATCHET_CKR CKA_X2RATCHET_CKS
    CKA_X2RATCHET_DHS CKA_X2RATCHET_HKR CKA_X2RATCHET_HKS CKA_X2RATCHET_NHKR
    CKA_X2RATCHET_NHKS CKA_X2RATCHET_BAG"""))
SECRET_IF_KEY = frozenset(_numbers("CKA_VALUE"))
SECRET_KEY_CLASSES = frozenset(_numbers("CKO_PRIVATE_KEY CKO_SECRET_KEY CKO_OTP_KEY"))


def is_secret(attribute: int, object_class: int | None = None) -> bool:
    """Whether an attribute's value is secret; an unknown or vendor class counts as a key."""
    if attribute in SECRET_ATTRIBUTES:
        return True
    if attribute not in SECRET_IF_KEY:
        return False
    return object_class is None or object_class in SECRET_KEY_CLASSES or is_vendor(object_class)
