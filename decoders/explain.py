"""Any code in any namespace: what it is, what it means, what usually causes it.

Exports: Match, NAMESPACES, explain, suggest.

explain("0xA0"), explain("-1208"), explain("6982"), explain("GSK 408"),
explain("408", "gskit"), explain("CKM_ECDSA"), explain("3B 8F 80 01 ..."): a
list of Match, most likely reading first; [] when nothing matches. Numbers are
read as they are written: 160 is decimal, A0 and 0xA0 hex, four hex digits
also a status word, a negative number an OpenSC error (or a Windows LONG).
The tables are the other decoders'; the hints are in _hints.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

import PyKCS11

from decoders import NAMESPACES, _hints, _pkcs11_meanings, atr, gskit, iso7816, opensc, pcsc, pkcs11
from decoders import _iso7816_data as _iso

_ALIASES = {"iso7816": "sw", "ckr": "pkcs11", "scard": "pcsc", "gsk": "gskit"}


@dataclass(frozen=True)
class Match:
    namespace: str  # one of NAMESPACES
    kind: str  # "PKCS#11 return value", "ISO 7816 status word", "PC/SC return code (Windows)" ...
    name: str  # CKR_PIN_INCORRECT, SW_FILE_NOT_FOUND ...; "" when the code has none
    code: str  # the number as the namespace writes it: 0x000000A0, -1208, 6982, 0x8010001F
    meaning: str
    hint: str = ""  # what usually causes it and what to try
    notes: tuple[str, ...] = ()  # platform differences, aliases, log text, confirmation
    value: int | None = None


# --- one namespace at a time: value -> matches (rank, Match); lower rank = more likely ----

_VENDOR_RANK = 9  # a vendor-defined CKR: only when nothing else reads the number


def _ckr(u: int, rank: float, notes: tuple[str, ...] = ()) -> list[tuple[float, Match]]:
    name = pkcs11.ckr_name(u)
    if name.startswith("CKR_0x"):
        return []
    vendor = pkcs11.is_vendor(u)
    meaning = pkcs11.ckr_meaning(u) or ("vendor-defined return value" if vendor else "")
    hint = _hints.CKR.get(name) or (_hints.CKR["CKR_VENDOR_DEFINED"] if vendor else "")
    known_vendor = vendor and "VENDOR_DEFINED" not in name
    if vendor and not known_vendor and u >> 16 == 0x8010:
        return []  # the PC/SC (SCARD) block: no module uses it for its own CKRs
    return [(_VENDOR_RANK if vendor and not known_vendor else rank,
             Match("pkcs11", "PKCS#11 return value", name, f"0x{u:08X} = {u}", meaning, hint,
                   notes, u))]


def _opensc(v: int, rank: float, notes: tuple[str, ...] = ()) -> list[tuple[float, Match]]:
    e = opensc.lookup(v)
    if e is None:
        return []
    more = [f'logged as "{e.text}"']
    if e.ckr and e.ckr != "CKR_OK":
        more.append(f"opensc-pkcs11 turns it into {e.ckr}")
    if e.note:
        more.append(e.note)
    return [(rank, Match("opensc", "OpenSC error", e.name or "(unassigned)", str(v), e.meaning,
                         _hints.SC_ERROR.get(e.name or "", ""), (*notes, *more), v))]


def _sw_hint(sw: int) -> str:
    key = f"{sw:04X}"
    if key in _hints.SW:
        return _hints.SW[key]
    for pattern in ("61XX", "6CXX", "63CX"):
        low, high = int(pattern.replace("X", "0"), 16), int(pattern.replace("X", "F"), 16)
        if low <= sw <= high:
            return _hints.SW[pattern]
    return ""


def _sw(sw: int, rank: float, forced: bool = False,
        notes: tuple[str, ...] = ()) -> list[tuple[float, Match]]:
    s = iso7816.status_word(sw)
    if s.category == "invalid" and not forced:
        return []
    more = list(notes)
    if s.detail:
        more.append(s.detail)
    more.append(f"class: {s.category}" + (f"; text from {s.source}" if s.source != "pkspy"
                                             else ""))
    if s.sc_error and sw != 0x9000:
        more.append(f"OpenSC turns it into {s.sc_error} ({opensc.value(s.sc_error)})")
    return [(rank, Match("sw", "ISO 7816 status word", s.name or "", f"{sw:04X}", s.meaning,
                         _sw_hint(sw), tuple(more), sw))]


def _pcsc(u: int, rank: float) -> list[tuple[float, Match]]:
    codes = pcsc.lookup(u)
    if not codes:
        return []
    forms = f"also printed {pcsc.signed(u)} (Windows LONG)" if u & 0x80000000 else ""
    text = f'pcsc_stringify_error: "{codes[0].linux_text}"'
    lite = [c for c in codes if "pcsc-lite" in c.platforms]
    win = [c for c in codes if "windows" in c.platforms]
    out = []
    if lite and win and [c.name for c in lite] == [c.name for c in win]:
        groups = [("PC/SC return code", lite, ("same on pcsc-lite and Windows",))]
    else:
        groups = []
        if lite:
            groups.append(("PC/SC return code (pcsc-lite)", lite, ()))
        if win:
            groups.append(("PC/SC return code (Windows)", win, ()))
        if lite and not win:
            groups[-1] = (groups[-1][0], lite, ("no such code on Windows",))
        if win and not lite:
            groups[-1] = ("PC/SC return code (Windows only)", win,
                          ("unassigned on pcsc-lite",))
    for i, (kind, group, notes) in enumerate(groups):
        name = group[0].name
        aliases = tuple(f"the same value is also {c.name}" for c in group[1:])
        hint = next((_hints.SCARD[c.name] for c in group if c.name in _hints.SCARD), "")
        extra = (text,) if "pcsc-lite" in kind or kind == "PC/SC return code" else ()
        out.append((rank + i / 10, Match("pcsc", kind, name, f"0x{u:08X}", group[0].meaning, hint,
                                         tuple(x for x in (*notes, *aliases, *extra, forms) if x),
                                         u)))
    return out


def _gskit(v: int, rank: float, platform: str | None = None,
           notes: tuple[str, ...] = ()) -> list[tuple[float, Match]]:
    out = []
    entries = gskit.lookup(v, platform)
    for i, g in enumerate(entries):
        more = list(notes)
        if not g.confirmed and not g.platform.startswith("z/OS"):  # z/OS says so in g.note
            more.append("unconfirmed: number and name from the header alone, no IBM page seen")
        if g.note:
            more.append(g.note)
        if g.ibm_i_message:
            more.append(f"IBM i message {g.ibm_i_message}")
        if platform is None and g.platform.startswith("distributed") and not any(
                e.platform.startswith("z/OS") for e in entries):
            more.append("z/OS System SSL: " + ("same meaning" if v in gskit._d.ZOS
                                               else "not in the (partial) z/OS table"))
        hint = _hints.GSK.get(g.name or "", "") if g.name else ""
        out.append((rank + i / 10, Match("gskit", f"GSKit return code ({g.platform})",
                                         g.name or "", str(v), g.meaning, hint, tuple(more), v)))
    return out


def _atr_match(raw: bytes) -> list[tuple[float, Match]]:
    parsed = atr.parse(raw)
    names = atr.card_names(raw)
    notes = tuple(f"also: {n}" for n in names[1:])
    hint = "" if names else _hints.ATR
    return [(0, Match("atr", "ATR", names[0] if names else "", parsed.hex, atr.describe(raw),
                      hint, notes))]


def _apdu_match(raw: bytes, rank: float) -> list[tuple[float, Match]]:
    try:
        c = iso7816.parse_command(raw)
    except ValueError:
        return []
    secret = iso7816.pin_apdu(raw)
    cla = c.cla_info
    bits = [f"CLA {c.cla:02X}" + (" (proprietary class)" if cla.proprietary else "")]
    if cla.chaining:
        bits.append("chained")
    if cla.secure_messaging:
        bits.append(f"secure messaging, {cla.secure_messaging}")
    if cla.channel:
        bits.append(f"channel {cla.channel}")
    if c.case:
        bits.append(f"case {c.case}{'E' if c.extended else ''}")
    bits.append(f"P1P2 {c.p1p2:04X}")
    if c.lc is not None:
        bits.append(f"Lc {c.lc}")
    if c.le is not None:
        bits.append(f"Le {c.le}")
    notes = []
    if c.problem:
        notes.append(f"malformed: {c.problem}")
    if secret:
        notes.append(f"its data is a secret ({secret}): not shown")
    if c.ins == 0xA4 and c.p1 == 0x04 and c.data and iso7816.aid_name(c.data):
        notes.append(f"selects {iso7816.aid_name(c.data)}")
    shown = raw[:5].hex(" ").upper() + f" ‹{len(c.data)} bytes›" if secret else raw.hex(" ").upper()
    return [(rank, Match("apdu", "command APDU", c.name(), shown, ", ".join(bits), "",
                         tuple(notes)))]


def _ins_match(ins: int) -> list[tuple[float, Match]]:
    meanings = iso7816.ins_meanings(ins)
    if not meanings:
        return []
    (where, name), rest = meanings[0], meanings[1:]
    meaning = _iso.INSTRUCTIONS[ins][3] if ins in _iso.INSTRUCTIONS else where
    notes = (where, *(f"{n} in {w}" for w, n in rest))
    return [(0, Match("ins", "instruction (INS)", name, f"{ins:02X}", meaning, "", notes, ins))]


# --- names ----------------------------------------------------------------------------------

_GROUP_KIND = {
    "CKR": "PKCS#11 return value", "CKA": "PKCS#11 attribute", "CKM": "PKCS#11 mechanism",
    "CKO": "PKCS#11 object class", "CKK": "PKCS#11 key type", "CKU": "PKCS#11 user type",
    "CKS": "PKCS#11 session state", "CKF": "PKCS#11 flag", "CKC": "PKCS#11 certificate type",
    "CKD": "PKCS#11 key derivation function", "CKG": "PKCS#11 MGF / IV generator",
    "CKH": "PKCS#11 hardware feature / hedge type", "CKZ": "PKCS#11 parameter source",
    "CKP": "PKCS#11 profile / PRF / parameter set", "CKN": "PKCS#11 notification",
    "CKT": "PKCS#11 trust value", "CKV": "PKCS#11 validation value", "CK": "PKCS#11 constant",
}
_FLAG_WORDS = {"slot": "CK_SLOT_INFO.flags", "token": "CK_TOKEN_INFO.flags",
               "session": "CK_SESSION_INFO.flags", "mechanism": "CK_MECHANISM_INFO.flags",
               "message": "message-function flags", "interface": "CK_INTERFACE.flags",
               "init": "C_Initialize flags", "wait": "C_WaitForSlotEvent flags",
               "otp": "OTP flags", "hkdf": "HKDF salt type"}
_CK_NAME = re.compile(r"CK[A-Z]?_[A-Z][A-Z0-9_]*")


def _ck_name(label: str) -> list[tuple[float, Match]]:
    if not _CK_NAME.fullmatch(label):
        return []
    v = pkcs11.value(label)
    if v is None:
        return []
    group = label.split("_")[0]
    notes = []
    if group == "CKR":
        meaning, hint = pkcs11.ckr_meaning(v), _hints.CKR.get(label, "")
    else:
        meaning = _pkcs11_meanings.MEANINGS.get(label, "")
        hint = _hints.CK.get(label, "")
    if group in pkcs11.GROUPS:
        canonical = pkcs11.name(group, v)
        if canonical != label:
            notes.append(f"another name for {canonical}")
    if group == "CKF":
        words = [_FLAG_WORDS.get(c, c) for c in pkcs11.FLAG_CONTEXTS if label in pkcs11.flags(c, v)]
        notes.append("a bit of " + (", ".join(words) or "an attribute type (CKF_ARRAY_ATTRIBUTE)"))
    if not meaning and group in pkcs11.GROUPS:
        meaning = _pkcs11_meanings.MEANINGS.get(pkcs11.name(group, v), "")
    if not meaning and group in ("CKM", "CKK"):
        meaning = {"CKM": "mechanism ", "CKK": "key type "}[group] + label[4:].replace("_", " ")
    return [(0, Match("pkcs11", _GROUP_KIND.get(group, "PKCS#11 constant"), label,
                      f"0x{v:08X}", meaning, hint, tuple(notes), v))]


_SW_NAMES = {row[3]: row for row in _iso.STATUS_WORDS}


def _other_name(label: str) -> list[tuple[float, Match]]:
    if label.startswith("SC_"):
        v = opensc.value(label)
        return _opensc(v, 0) if v is not None else []
    if label.startswith("SCARD_"):
        v = pcsc.value(label)
        return _pcsc(v, 0) if v is not None else []
    if label.startswith("GSK_"):
        v = gskit.value(label)
        return _gskit(v, 0) if v is not None else []
    if label in _SW_NAMES:
        low, high, pattern = _SW_NAMES[label][:3]
        if low == high:
            return _sw(low, 0)
        _rank, m = _sw(low, 0)[0]
        return [(0, Match("sw", m.kind, label, pattern, _SW_NAMES[label][5],
                          _sw_hint(low), (_SW_NAMES[label][4],)))]
    return []


# --- reading the input ---------------------------------------------------------------------

_DEC = re.compile(r"[+-]?\d+")
_HEX0X = re.compile(r"[+-]?0[xX]([0-9A-Fa-f]+)")
_HEXBARE = re.compile(r"[0-9A-Fa-f]*[A-Fa-f][0-9A-Fa-f]*")
_BYTES = re.compile(r"[0-9A-Fa-f]{2}(?:[\s:]+[0-9A-Fa-f]{2})+(?:\s*\.\.\.|…)?")


def _valid_sw(sw: int) -> bool:
    return 0x61 <= sw >> 8 <= 0x6F or 0x90 <= sw >> 8 <= 0x9F


def _numbers(text: str, ns: str | None) -> list[tuple[float, Match]]:
    """A number written in decimal, 0x-hex or bare hex, read in every namespace it fits."""
    out: list[tuple[float, Match]] = []

    def want(namespace: str) -> bool:
        return ns is None or ns == namespace

    if _DEC.fullmatch(text):
        v, form = int(text), "dec"
    elif _HEX0X.fullmatch(text):
        v, form = int(text.replace("0x", "").replace("0X", ""), 16), "hex"
    elif _HEXBARE.fullmatch(text):
        v, form = int(text, 16), "hex"
    else:
        return []
    digits = text.lstrip("+-")
    if want("sw") and len(digits) == 4 and re.fullmatch(r"[0-9A-Fa-f]{4}", digits):
        sw = int(digits, 16)
        if _valid_sw(sw) or ns == "sw":
            out += _sw(sw, 0, forced=ns == "sw")
    if want("sw") and form == "hex" and digits.lower().startswith("0x") and len(digits) == 6:
        out += _sw(v, 3, forced=ns == "sw")
    u = v & 0xFFFFFFFF if -(1 << 31) <= v < 0 else v
    if want("pcsc") and u != 0 and 0 <= u <= 0xFFFFFFFF:
        out += _pcsc(u, 0)
    if want("opensc"):
        if v < 0:
            out += _opensc(v, 0)
        elif v > 0 and opensc.lookup(-v):
            out += _opensc(-v, 5, ("OpenSC logs its errors as negative numbers",))
        elif v == 0:
            out += _opensc(0, 6)
    if want("pkcs11") and 0 <= u <= 0xFFFFFFFF:
        if v >= 0:
            out += _ckr(u, 1)
        elif u & 0x80000000:  # %ld of a vendor CKR on Windows; -5 is no such thing
            found = _ckr(u, 4, (f"{v} is 0x{u:08X} printed as a signed 32-bit number",))
            out += [(r, m) for r, m in found if u < 0x90000000 or r < _VENDOR_RANK]
        if form == "dec" and re.fullmatch(r"\d+", text) and int(text, 16) != v:
            h = int(text, 16)
            if h <= 0xFFFFFFFF and not pkcs11.is_vendor(h):
                out += _ckr(h, 4, (f"read as hex 0x{text}",))
    if want("gskit"):
        if form == "dec":
            out += _gskit(v, 2)
        elif v:
            out += _gskit(v, 6, notes=(f"0x{v:X} is {v}; GSKit prints its codes in decimal",))
    if want("pcsc") and u == 0:
        out += _pcsc(0, 3)
    if want("gskit") and v == 0 and form != "dec":
        out += _gskit(0, 7)
    return out


def _hex_bytes(text: str, ns: str | None) -> list[tuple[float, Match]]:
    """A run of hex bytes: an ATR (3B/3F ...), a status word (2 bytes), or a command APDU."""
    truncated = text.rstrip().endswith(("...", "…"))
    raw = atr.parse_hex(text.rstrip(" .…"))
    if raw is None or len(raw) < 2:
        return []
    out: list[tuple[float, Match]] = []
    if (ns in (None, "atr") and raw[0] in (0x3B, 0x3F)) or ns == "atr":
        for rank, m in _atr_match(raw):
            if truncated:
                m = Match(m.namespace, m.kind, m.name, m.code + " …", m.meaning, m.hint,
                          ("the input ends in '...': only the start of the ATR was given",
                           *m.notes))
            out.append((rank, m))
    if len(raw) == 2 and ns in (None, "sw"):
        out += _sw(raw[0] << 8 | raw[1], 0, forced=ns == "sw")
    if len(raw) >= 4 and ns in (None, "apdu") and not out:
        out += _apdu_match(raw, 1)
    return out


_PREFIXES = [
    (re.compile(r"(?i)^sw1\s*[:=]?\s*([0-9a-f]{2})[\s,;]*sw2\s*[:=]?\s*([0-9a-f]{2})$"), "sw2"),
    (re.compile(r"(?i)^(?:ckr|rv|returned)\b\s*[:=]?\s*(\S+)(?:\s.*)?$"), "pkcs11"),
    (re.compile(r"(?i)^sw\b\s*[:=]?\s*(.+)$"), "sw"),
    (re.compile(r"(?i)^gsk(?:it)?\b.*?(-?\d+)$"), "gskit"),
    (re.compile(r"(?i)^ins\b\s*[:=]?\s*([0-9a-f]{2})$"), "ins"),
    (re.compile(r"(?i)^atr\b\s*[:=]?\s*(.+)$"), "atr"),
    (re.compile(r"(?i)^(?:apdu|c-apdu|command|>|=>|-->|c:)\s*[:=]?\s*(.+)$"), "apdu"),
    (re.compile(r"(?i)^(?:r-apdu|response|<|<=|<--|r:)\s*[:=]?\s*(.+)$"), "response"),
    (re.compile(r"(?i)scard\w*[^:]*:\s*(0x[0-9a-f]+)$"), "pcsc"),
]


def _prefixed(text: str, ns: str | None) -> list[tuple[float, Match]] | None:
    """Forms that say their namespace ("GSK 408", "SW 6982", "rv=0xA0"); None if none."""
    if "returning with" in text or re.search(r"-\d{3,4}\s*\(", text):
        r = opensc.parse_log(text)
        if r is not None and ns in (None, "opensc"):
            notes = ()
            if not r.consistent:
                owners = ", ".join(f"{c} ({opensc.name(c)})" for c in r.text_codes) or "no code"
                notes = (f'the text "{r.text}" belongs to {owners}: the number is what OpenSC '
                         "returned, the text may come from another version or an edit",)
            found = _opensc(r.code, 0, notes)
            if not r.consistent:
                found += [(1, m) for c in r.text_codes for _r, m in _opensc(c, 1)]
            return found
    for pattern, namespace in _PREFIXES:
        m = pattern.search(text) if namespace == "pcsc" else pattern.match(text)
        if not m:
            continue
        if namespace == "sw2":
            return _sw(int(m.group(1) + m.group(2), 16), 0, forced=True) if ns in (None, "sw") \
                else []
        if namespace == "response":
            raw = atr.parse_hex(m.group(1))
            if raw is None or len(raw) < 2 or ns not in (None, "sw"):
                return []
            data = len(raw) - 2
            note = (f"with {data} data bytes",) if data else ()
            return _sw(raw[-2] << 8 | raw[-1], 0, True, note)
        if ns not in (None, namespace):
            return []
        value = m.group(1).strip()
        if namespace == "gskit":
            parsed = gskit.parse(value) or gskit.parse(text)
            return _gskit(parsed[0], 0, parsed[1]) if parsed else []
        if namespace == "ins":
            return _ins_match(int(value, 16))
        found = _read(value, namespace)
        if m.group(0).lower().startswith("returned"):  # the spy prints CKRs in decimal
            found = [(r, x) for r, x in found if not any(n.startswith("read as hex")
                                                         for n in x.notes)]
        return found
    return None


def _read(text: str, ns: str | None) -> list[tuple[float, Match]]:
    """The input alone, in every namespace (or in ``ns``)."""
    label = text.upper()
    if re.fullmatch(r"[A-Z][A-Z0-9_]*_[A-Z0-9_]+", label):
        found = _ck_name(label) + _other_name(label)
        return [(r, m) for r, m in found if ns in (None, m.namespace)]
    parsed = gskit.parse(text)
    if ns == "gskit" or (parsed and parsed[1] == "zos" and ns is None):
        return _gskit(parsed[0], 0, parsed[1]) if parsed else []
    if ns == "ins" and re.fullmatch(r"[0-9A-Fa-f]{2}", text):
        return _ins_match(int(text, 16))
    if ns == "atr" or _BYTES.fullmatch(text) or (
            re.fullmatch(r"(?:3[bBfF][0-9A-Fa-f]{2,})(?:\.\.\.|…)?", text)
            and len(text.rstrip(".…")) % 2 == 0 and len(text) >= 6):
        found = _hex_bytes(text, ns)
        if found:
            return found
    number = re.fullmatch(r"\d{1,10}", text) and int(text) <= 0xFFFFFFFF
    if ns == "apdu" or (re.fullmatch(r"[0-9A-Fa-f]+", text) and len(text) > 8 and ns is None
                        and not number):
        found = _hex_bytes(text, ns or "apdu")
        if found:
            return found
    return _numbers(text, ns)


def _by_text(text: str, ns: str | None) -> list[tuple[float, Match]]:
    """A message as a log prints it: "Card does not support the requested operation",
    "No smart card inserted." -> the code it belongs to."""
    out: list[tuple[float, Match]] = []
    if ns in (None, "opensc"):
        for code in opensc.by_text(text):
            out += _opensc(code, 1, ("matched by the text OpenSC logs",))
    if ns in (None, "pcsc"):
        code = pcsc.by_text(text)
        if code is not None:
            out += _pcsc(code, 1)
    return out


def _tokens(text: str, ns: str | None) -> list[tuple[float, Match]]:
    """Last resort for a pasted log line: known names in it, else its last number."""
    out: list[tuple[float, Match]] = []
    for token in re.findall(r"\b(?:CK[A-Z]?|SC|SCARD|GSK|SW)_[A-Z0-9_]+\b", text.upper()):
        out += _read(token, ns)
    if out:
        return out
    m = re.search(r"(?:^|[\s:=(#])(-?(?:0x[0-9A-Fa-f]+|\d+|[0-9A-Fa-f]*\d[0-9A-Fa-f]*))\W*$",
                  text)
    return _read(m.group(1), ns) if m and m.group(1) != text else []


def _namespace(namespace: str | None) -> str | None:
    if namespace is None:
        return None
    ns = _ALIASES.get(namespace.lower(), namespace.lower())
    if ns not in NAMESPACES:
        raise ValueError(f"unknown namespace {namespace!r}; expected one of "
                         f"{', '.join(NAMESPACES)}")
    return ns


def explain(text: str, namespace: str | None = None) -> list[Match]:
    """Every reading of ``text``, most likely first; [] when nothing matches.

    ``namespace`` (one of NAMESPACES, or "iso7816") restricts the readings: with
    "gskit", 408 is GSKit's 408 and nothing else. Raises ValueError only for an
    unknown namespace.
    """
    ns = _namespace(namespace)
    text = " ".join(text.strip().strip("'\"`").split())
    if not text:
        return []
    found = _prefixed(text, ns)
    if found is None:
        found = _read(text, ns) or _by_text(text, ns) or _tokens(text, ns)
    if any(rank < _VENDOR_RANK for rank, _m in found):
        found = [(r, m) for r, m in found if r < _VENDOR_RANK]
    seen, out = set(), []
    for _rank, m in sorted(found, key=lambda rm: rm[0]):
        key = (m.namespace, m.kind, m.name, m.code)
        if key not in seen:
            seen.add(key)
            out.append(m)
    return out


def _all_names() -> list[str]:
    names = {n for n in vars(PyKCS11) if _CK_NAME.fullmatch(n)}
    names.update(_pkcs11_meanings.MEANINGS)
    names.update(n for n, *_ in opensc._d.ERRORS.values() if n)
    names.update(row[1] for row in pcsc._d.CODES)
    names.update(row[0] for row in gskit._d.COMMON.values())
    names.update(_SW_NAMES)
    return sorted(names)


def suggest(text: str, limit: int = 3) -> list[str]:
    """Known names close to a misspelt one ("CKR_PIN_INCORECT" -> CKR_PIN_INCORRECT)."""
    label = text.strip().upper()
    if "_" not in label:
        return []
    return difflib.get_close_matches(label, _all_names(), n=limit, cutoff=0.75)
