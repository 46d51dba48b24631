"""ISO/IEC 7816-4 APDUs: command parsing, CLA bits, instruction names, status words,
GET RESPONSE / 61XX chains, and which commands carry a PIN.

Exports: Cla, parse_cla, Command, parse_command, split_response, ins_name,
ins_meanings, aid_name, applet_of, StatusWord, status_word, sw_text, Exchange,
ResponseJoiner, join_responses, pin_apdu, PIN_INS.

Sources: ISO/IEC 7816-3/-4/-8/-9 (APDU cases, CLA coding, INS and SW assignments);
GlobalPlatform Card Specification 2.3.1 §11 (GP classes and commands); ETSI TS
102 221 and 3GPP TS 51.011 (UICC / GSM commands); NIST SP 800-73-4 (PIV); OpenPGP
card 3.4; Yubico yubikit (PIV/OpenPGP extensions). Status-word texts come from
pyscard's error checkers (smartcard.sw.*) where they know the word; 9000, 61XX,
6CXX and 63CX are decoded here, and the rest comes from _iso7816_data (generated
by scripts/gen_code_tables.py), as do the INS names; pyscard has no INS table.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from smartcard.sw import SWExceptions
from smartcard.sw.ISO7816_4_SW1ErrorChecker import iso7816_4SW1
from smartcard.sw.ISO7816_4ErrorChecker import iso7816_4SW
from smartcard.sw.ISO7816_8ErrorChecker import iso7816_8SW
from smartcard.sw.ISO7816_9ErrorChecker import iso7816_9SW
from smartcard.sw.op21_ErrorChecker import op21_SW

from decoders import _iso7816_data as _d

# --- CLA -------------------------------------------------------------------------

_SM = {0: None, 1: "proprietary", 2: "header not authenticated", 3: "header authenticated"}


@dataclass(frozen=True)
class Cla:
    value: int
    proprietary: bool  # b8 set: the card's own class (GlobalPlatform, ETSI, vendors)
    valid: bool  # False for FF (PPS / PC/SC reader pseudo-APDUs) and the RFU 20-3F
    chaining: bool  # more commands of this chain follow
    secure_messaging: str | None  # None, or how the command is protected
    channel: int  # logical channel 0-19


def parse_cla(cla: int) -> Cla:
    """ISO 7816-4 §5.4.1 class byte. A proprietary class is read with the same bit
    layout (as GlobalPlatform codes 80-87, C0-CF and E0-EF); ETSI's A0 has none."""
    proprietary = bool(cla & 0x80)
    low = cla & 0x7F
    if cla == 0xFF or 0x20 <= low < 0x40:
        return Cla(cla, proprietary, cla != 0xFF and proprietary, False, None, 0)
    if low < 0x20:  # first interindustry: 000x xxcc
        return Cla(cla, proprietary, True, bool(low & 0x10), _SM[low >> 2 & 3], low & 3)
    # further interindustry: 01sx cccc, channels 4-19
    sm = "header not authenticated" if low & 0x20 else None
    return Cla(cla, proprietary, True, bool(low & 0x10), sm, 4 + (low & 0x0F))


# --- command APDUs -----------------------------------------------------------------

@dataclass(frozen=True)
class Command:
    cla: int
    ins: int
    p1: int
    p2: int
    data: bytes
    lc: int | None  # Nc as coded; None when there is no data field
    le: int | None  # Ne (00 means 256, or 65536 extended); None when absent
    case: int | None  # 1-4; None when the body fits no case (see problem)
    extended: bool
    problem: str | None = None
    raw: bytes = field(default=b"", repr=False)

    @property
    def p1p2(self) -> int:
        return self.p1 << 8 | self.p2

    @property
    def cla_info(self) -> Cla:
        return parse_cla(self.cla)

    def name(self, applet: str | None = None) -> str:
        return ins_name(self.ins, self.cla, applet, self.p1, self.p2)


def parse_command(apdu: bytes) -> Command:
    """Split a command APDU into header, Lc/data and Le (ISO 7816-3 §12.1 cases).

    Raises ValueError below 4 bytes. A body that fits no case keeps the header,
    takes the whole body as data and says why in ``problem``: the header still
    names the command, and the bytes are not lost.
    """
    apdu = bytes(apdu)
    if len(apdu) < 4:
        raise ValueError(f"a command APDU has at least 4 bytes, got {len(apdu)}")
    head = (apdu[0], apdu[1], apdu[2], apdu[3])
    body = apdu[4:]

    def make(data: bytes, lc: int | None, le: int | None, case: int | None, ext: bool,
             problem: str | None = None) -> Command:
        return Command(*head, data, lc, le, case, ext, problem, apdu)

    n = len(body)
    if n == 0:
        return make(b"", None, None, 1, False)
    if n == 1:
        return make(b"", None, body[0] or 256, 2, False)
    if body[0] != 0:  # short Lc
        lc = body[0]
        if n == 1 + lc:
            return make(body[1:], lc, None, 3, False)
        if n == 2 + lc:
            return make(body[1:-1], lc, body[-1] or 256, 4, False)
        return make(body, None, None, None, False,
                    f"Lc says {lc} data bytes but {n - 1} follow it")
    if n == 3:  # 00 + two-byte Le
        return make(b"", None, int.from_bytes(body[1:], "big") or 65536, 2, True)
    if n > 3:
        lc = int.from_bytes(body[1:3], "big")
        if lc and n == 3 + lc:
            return make(body[3:], lc, None, 3, True)
        if lc and n == 5 + lc:
            return make(body[3:-2], lc, int.from_bytes(body[-2:], "big") or 65536, 4, True)
        return make(body, None, None, None, True,
                    f"extended Lc says {lc} data bytes but {n - 3} follow it")
    return make(body, None, None, None, False, "a 00 byte where a short Lc cannot be 0")


def split_response(response: bytes) -> tuple[bytes, int | None]:
    """(data, SW1SW2) of a response APDU; SW is None when fewer than 2 bytes came back."""
    if len(response) < 2:
        return bytes(response), None
    return bytes(response[:-2]), response[-2] << 8 | response[-1]


# --- instruction names ---------------------------------------------------------------

# Where one INS means another command by class or by selected application. Sources:
# GlobalPlatform Card Spec 2.3.1 §11 ("gp": CLA 80-87, C0-CF, E0-EF); ETSI TS 102 221
# §10 ("uicc": its CLA 80 commands); 3GPP TS 51.011 §9 ("gsm": CLA A0); NIST SP
# 800-73-4 and yubikit piv.py ("piv"); OpenPGP card 3.4 §7 and yubikit openpgp.py
# ("openpgp").
_CONTEXT_NAMES: dict[str, dict[int, str]] = {
    "gp": {0x50: "INITIALIZE UPDATE", 0x70: "MANAGE CHANNEL", 0x78: "END R-MAC SESSION",
           0x7A: "BEGIN R-MAC SESSION", 0x82: "EXTERNAL AUTHENTICATE", 0xCA: "GET DATA",
           0xCB: "GET DATA", 0xD8: "PUT KEY", 0xE2: "STORE DATA", 0xE4: "DELETE",
           0xE6: "INSTALL", 0xE8: "LOAD", 0xF0: "SET STATUS", 0xF2: "GET STATUS",
           0xF1: "GENERATE KEY (Yubico SD)"},
    "uicc": {0x10: "TERMINAL PROFILE", 0x12: "FETCH", 0x14: "TERMINAL RESPONSE",
             0x32: "INCREASE", 0x73: "MANAGE SECURE CHANNEL", 0x75: "TRANSACT DATA",
             0x76: "SUSPEND UICC", 0xAA: "TERMINAL CAPABILITY", 0xC2: "ENVELOPE",
             0xF2: "STATUS"},
    "gsm": {0x04: "INVALIDATE", 0x10: "TERMINAL PROFILE", 0x12: "FETCH",
            0x14: "TERMINAL RESPONSE", 0x20: "VERIFY CHV", 0x24: "CHANGE CHV",
            0x26: "DISABLE CHV", 0x28: "ENABLE CHV", 0x2C: "UNBLOCK CHV", 0x32: "INCREASE",
            0x44: "REHABILITATE", 0x88: "RUN GSM ALGORITHM", 0xA2: "SEEK",
            0xC2: "ENVELOPE", 0xF2: "STATUS", 0xFA: "SLEEP"},
    "piv": {0xFB: "RESET (Yubico PIV)", 0xFE: "IMPORT ASYMMETRIC KEY (Yubico PIV)"},
    "openpgp": {0x44: "ACTIVATE FILE", 0xE6: "TERMINATE DF", 0xF1: "GET VERSION (Yubico)",
                0xF2: "SET PIN RETRIES (Yubico)", 0xFB: "GET ATTESTATION (Yubico)"},
}
APPLETS = ("gp", "piv", "openpgp")

# PERFORM SECURITY OPERATION: P1P2 names the operation (ISO 7816-8 §11).
_PSO = {0x9E9A: "COMPUTE DIGITAL SIGNATURE", 0x9EAC: "COMPUTE DIGITAL SIGNATURE",
        0x9EBC: "COMPUTE DIGITAL SIGNATURE", 0x8086: "DECIPHER", 0x8680: "ENCIPHER",
        0x9080: "HASH", 0x90A0: "HASH", 0x8E80: "COMPUTE CRYPTOGRAPHIC CHECKSUM",
        0x00A2: "VERIFY CRYPTOGRAPHIC CHECKSUM", 0x00A8: "VERIFY DIGITAL SIGNATURE",
        0x00AE: "VERIFY CERTIFICATE", 0x00BE: "VERIFY CERTIFICATE"}


def _contexts(cla: int, applet: str | None) -> list[str]:
    """Which command sets a class byte points at, most specific first."""
    out = [applet] if applet else []
    if 0x80 <= cla <= 0x87 or 0xC0 <= cla <= 0xCF or 0xE0 <= cla <= 0xEF:
        out += ["gp", "uicc"]
    elif 0xA0 <= cla <= 0xAF:
        out.append("gsm")
    return out


def ins_name(ins: int, cla: int = 0x00, applet: str | None = None,
             p1: int | None = None, p2: int | None = None) -> str:
    """Command name for INS under CLA (and the selected applet when known).

    CLA 80/84 E6 is GlobalPlatform's INSTALL, 00 E6 ISO's TERMINATE DF; A0 88 is
    GSM's RUN GSM ALGORITHM. With P1P2, PSO (2A) names its operation. Unknown
    instructions come back as "INS 5F".
    """
    if ins == 0x2A and p1 is not None and p2 is not None and (p1 << 8 | p2) in _PSO:
        return f"PSO: {_PSO[p1 << 8 | p2]}"
    for context in _contexts(cla, applet):
        if ins in _CONTEXT_NAMES.get(context, {}):
            return _CONTEXT_NAMES[context][ins]
    if ins in _d.INSTRUCTIONS:
        return _d.INSTRUCTIONS[ins][0]
    return f"INS {ins:02X}"


def ins_meanings(ins: int) -> list[tuple[str, str]]:
    """Every (where, name) this INS has, ISO's first: for `explain`."""
    out = []
    if ins in _d.INSTRUCTIONS:
        name, family, typical_cla, _meaning, _other = _d.INSTRUCTIONS[ins]
        out.append((f"{family}, CLA {typical_cla}", name))
    where = {"gp": "GlobalPlatform, CLA 80/84", "uicc": "ETSI UICC, CLA 80",
             "gsm": "GSM SIM, CLA A0", "piv": "PIV applet", "openpgp": "OpenPGP applet"}
    for context, table in _CONTEXT_NAMES.items():
        if ins in table and all(table[ins] != n for _w, n in out):
            out.append((where[context], table[ins]))
    return out


# Applications by AID prefix. Sources: NIST SP 800-73-4 (PIV), OpenPGP card 3.4 §4.2.1,
# GlobalPlatform Card Spec (ISD), ISO 7816-15 (PKCS#15), ICAO 9303, FIDO U2F, yubikit,
# OpenSC card-sc-hsm.c and card-gids.c.
AIDS = {
    bytes.fromhex("A000000308"): ("PIV", "piv"),
    bytes.fromhex("D27600012401"): ("OpenPGP card", "openpgp"),
    bytes.fromhex("A000000151000000"): ("GlobalPlatform issuer security domain", "gp"),
    bytes.fromhex("A000000003000000"): ("Open Platform issuer security domain", "gp"),
    bytes.fromhex("A000000063504B43532D3135"): ("PKCS#15", None),
    bytes.fromhex("E82B0601040181C31F0201"): ("SmartCard-HSM", None),
    bytes.fromhex("A0000003974254465901"): ("GIDS", None),
    bytes.fromhex("A0000002471001"): ("ICAO eMRTD (passport)", None),
    bytes.fromhex("A0000006472F0001"): ("FIDO U2F", None),
    bytes.fromhex("A0000005272001"): ("Yubico OTP", None),
    bytes.fromhex("A0000005272101"): ("Yubico OATH", None),
    bytes.fromhex("A000000527471117"): ("Yubico management", None),
}


def _aid(aid: bytes) -> tuple[str, str | None] | None:
    for prefix, entry in AIDS.items():
        if bytes(aid).startswith(prefix):
            return entry
    return None


def aid_name(aid: bytes) -> str | None:
    """The application a SELECT by AID (00 A4 04 00) names, by prefix."""
    entry = _aid(aid)
    return entry[0] if entry else None


def applet_of(aid: bytes) -> str | None:
    """The ins_name() applet context a selected AID switches to ("piv", "openpgp", "gp")."""
    entry = _aid(aid)
    return entry[1] if entry else None


# --- status words ------------------------------------------------------------------

@dataclass(frozen=True)
class StatusWord:
    sw: int
    name: str | None  # symbolic name (Java Card ISO7816.SW_* style) when known
    meaning: str
    category: str  # "normal processing", "warning", "execution error", "checking error", ...
    ok: bool  # 9000 or 61XX: the command worked
    detail: str | None = None  # the longer project note where pyscard gave the meaning
    tries_left: int | None = None  # 63CX
    available: int | None = None  # 61XX / 9FXX: bytes waiting for GET RESPONSE
    correct_le: int | None = None  # 6CXX: resend with this Le
    sc_error: str | None = None  # what OpenSC's iso7816_check_sw() makes of it
    source: str = "pkspy"

    @property
    def hex(self) -> str:
        return f"{self.sw:04X}"


_PYSCARD_TABLES = (("iso7816_4SW", iso7816_4SW), ("iso7816_8SW", iso7816_8SW),
                   ("iso7816_9SW", iso7816_9SW), ("op21_SW", op21_SW))
_CLASSES = {
    SWExceptions.WarningProcessingException: "warning",
    SWExceptions.ExecutionErrorException: "execution error",
    SWExceptions.SecurityRelatedException: "security error",
    SWExceptions.CheckingErrorException: "checking error",
}
# pyscard's 6200 text ("Response padded/ More APDU commands expected") is not the
# ISO meaning, and its 63CX texts say "PIN verification failed" also for the
# VERIFY-without-data query, which costs no try: both are decoded here instead.
_NOT_FROM_PYSCARD = frozenset({0x6200, *range(0x63C0, 0x63D0)})


def _pyscard(sw1: int, sw2: int) -> tuple[str, str, str] | None:
    """(text, category, table name) from pyscard's checker tables."""
    for table_name, table in _PYSCARD_TABLES:
        entry = table.get(sw1)
        if entry and sw2 in entry[1]:
            return entry[1][sw2], _CLASSES.get(entry[0], "error"), table_name
    return None


def _row(sw: int) -> tuple | None:
    """The project table's row: an exact word first, then the narrowest pattern."""
    rows = [r for r in _d.STATUS_WORDS if r[0] <= sw <= r[1]]
    return min(rows, key=lambda r: r[1] - r[0]) if rows else None


def _category(sw1: int, row: tuple | None) -> str:
    if sw1 in (0x90, 0x61):
        return "normal processing"
    if sw1 in iso7816_4SW1:
        return _CLASSES.get(iso7816_4SW1[sw1], "error")
    return row[4] if row else "proprietary"


def status_word(sw: int) -> StatusWord:
    """Decode SW1SW2; never raises for 0..0xFFFF."""
    sw1, sw2 = sw >> 8 & 0xFF, sw & 0xFF
    row = _row(sw)
    name = row[3] if row else None
    sc_error = row[7] if row else None
    category = _category(sw1, row)
    common = dict(name=name, category=category, sc_error=sc_error or "SC_ERROR_CARD_CMD_FAILED")
    if sw == 0x9000:
        return StatusWord(sw, meaning="success", ok=True, **common)
    if sw1 == 0x61:
        n = sw2 or 256
        text = "256 or more bytes" if not sw2 else f"{n} more bytes"
        return StatusWord(sw, meaning=f"success; {text} available: fetch with GET RESPONSE "
                                      f"(00 C0 00 00 {sw2:02X})", ok=True, available=n, **common)
    if sw1 == 0x6C:
        return StatusWord(sw, meaning=f"wrong Le; resend the same command with Le={sw2:02X} "
                                      f"({sw2 or 256} bytes)", ok=False, correct_le=sw2 or 256,
                          **common)
    if sw1 == 0x63 and sw2 & 0xF0 == 0xC0:
        left = sw2 & 0x0F
        text = {0: "0 tries left: blocked", 1: "1 try left"}.get(left, f"{left} tries left")
        return StatusWord(sw, meaning=text, ok=False, tries_left=left,
                          detail="after VERIFY or another PIN command; also the answer to a "
                                 "VERIFY with no data, which only asks", **common)
    if sw1 == 0x9F:
        n = sw2 or 256
        return StatusWord(sw, meaning=f"success; {n} response bytes available (GSM: GET "
                                      f"RESPONSE A0 C0 00 00 {sw2:02X})", ok=True, available=n,
                          **common)
    known = None if sw in _NOT_FROM_PYSCARD else _pyscard(sw1, sw2)
    if known:
        text, category, table = known
        detail = row[5] if row and row[0] == row[1] else None
        return StatusWord(sw, name=name, meaning=text, category=category, ok=False,
                          detail=detail, sc_error=common["sc_error"], source=f"pyscard {table}")
    if row:
        return StatusWord(sw, meaning=row[5], ok=sw1 == 0x91 and sw2 == 0, **common)
    if not (0x61 <= sw1 <= 0x6F or 0x90 <= sw1 <= 0x9F):
        return StatusWord(sw, name=None, meaning="not a status word (SW1 must be 61-6F or 90-9F)",
                          category="invalid", ok=False)
    if sw1 >= 0x90:
        return StatusWord(sw, meaning="proprietary status (SW1 9X): defined by the application",
                          ok=False, **common)
    return StatusWord(sw, meaning=f"unknown {category} ({sw1:02X}XX)", ok=False, **common)


def sw_text(sw: int) -> str:
    """One line for a trace: '6982 security status not satisfied'."""
    return f"{sw:04X} {status_word(sw).meaning}"


# --- GET RESPONSE / 61XX chains ----------------------------------------------------------

@dataclass(frozen=True)
class Exchange:
    """One logical command/response, however many wire exchanges it took."""

    command: Command | None  # the first command (None if it was under 4 bytes)
    command_data: bytes  # data of all commands of an ISO chain (CLA b5), joined
    data: bytes  # response data of every part, joined
    sw: int | None  # the last status word (None when the last response had < 2 bytes)
    parts: tuple[int, ...]  # indexes of the wire exchanges folded into this one


class ResponseJoiner:
    """Fold wire exchanges into logical ones, incrementally.

    Joins 61XX (and GSM 9FXX) answers with the GET RESPONSEs that fetch the rest,
    6CXX with the resent command, and ISO command chains (CLA b5 set, each part
    answered 9000). add() returns what is complete; the last exchange is held back
    until the next one shows whether it continues, so call flush() at the end.
    """

    def __init__(self) -> None:
        self._index = 0
        self._open: dict | None = None

    def add(self, command: bytes, response: bytes) -> list[Exchange]:
        i, self._index = self._index, self._index + 1
        try:
            cmd = parse_command(command)
        except ValueError:
            cmd = None
        data, sw = split_response(response)
        out = []
        if self._open is not None:
            if cmd is not None and self._continues(cmd):
                self._extend(i, cmd, data, sw)
                return self._settle()
            out += self.flush()
        self._open = {"command": cmd, "command_data": cmd.data if cmd else b"", "data": data,
                      "sw": sw, "parts": [i], "last": cmd}
        return out + self._settle()

    def flush(self) -> list[Exchange]:
        if self._open is None:
            return []
        o, self._open = self._open, None
        return [Exchange(o["command"], o["command_data"], o["data"], o["sw"], tuple(o["parts"]))]

    def _waiting(self) -> str | None:
        o = self._open
        sw, last = o["sw"], o["last"]
        if sw is None or last is None:
            return None
        if sw >> 8 in (0x61, 0x9F):
            return "get_response"
        if sw >> 8 == 0x6C:
            return "resend"
        if sw == 0x9000 and last.cla_info.chaining:
            return "chain"
        return None

    def _continues(self, cmd: Command) -> bool:
        last, waiting = self._open["last"], self._waiting()
        same_channel = cmd.cla_info.channel == last.cla_info.channel
        if waiting == "get_response":
            return cmd.ins == 0xC0 and same_channel
        if waiting == "resend":
            return (cmd.ins, cmd.p1, cmd.p2, cmd.data) == (last.ins, last.p1, last.p2, last.data)
        if waiting == "chain":
            return cmd.ins == last.ins and same_channel
        return False

    def _extend(self, i: int, cmd: Command, data: bytes, sw: int | None) -> None:
        o, waiting = self._open, self._waiting()
        if waiting == "get_response":
            o["data"] += data
        elif waiting == "resend":
            o["data"] = data  # the 6CXX answer carried nothing
        else:
            o["command_data"] += cmd.data
            o["data"] = data
        o["sw"], o["last"] = sw, cmd
        o["parts"].append(i)

    def _settle(self) -> list[Exchange]:
        return [] if self._waiting() else self.flush()


def join_responses(pairs: Iterable[tuple[bytes, bytes]]) -> Iterator[Exchange]:
    """Logical exchanges from (command, response) pairs in wire order."""
    joiner = ResponseJoiner()
    for command, response in pairs:
        yield from joiner.add(command, response)
    yield from joiner.flush()


# --- PIN-carrying commands -------------------------------------------------------------

# INS (even and odd forms) whose data is a PIN. ISO 7816-4 §11.5: VERIFY, CHANGE
# REFERENCE DATA, ENABLE/DISABLE VERIFICATION REQUIREMENT, RESET RETRY COUNTER; the
# same bytes are GSM's VERIFY/CHANGE/DISABLE/ENABLE/UNBLOCK CHV (CLA A0) and PC/SC's
# storage-card VERIFY (CLA FF), so any class counts: a false alarm costs a redacted
# field, a miss leaks a PIN.
PIN_INS = frozenset({0x20, 0x21, 0x24, 0x25, 0x26, 0x28, 0x2C, 0x2D})


def pin_apdu(command: bytes) -> str | None:
    """What secret a command APDU carries in its data, or None.

    "PIN", "old and new PIN", "new PIN", "PUK", "PUK and new PIN" for the PIN
    commands (CHANGE REFERENCE DATA P1 00 = old+new, 01 = new only; RESET RETRY
    COUNTER P1 00 = PUK+new, 01 = PUK, 02 = new); "reset code" for OpenPGP PUT DATA
    of DO D3; "private key" for OpenPGP key import (PUT DATA DB with 4D) and
    Yubico PIV IMPORT ASYMMETRIC KEY (FE); "management key" for Yubico PIV SET
    MANAGEMENT KEY (FF FF); "secure channel keys" for GlobalPlatform PUT KEY (D8).
    VERIFY with no data only asks how many tries are left (63CX): None. Under
    secure messaging the data is enciphered, but it is still the secret:
    " (secure messaging)" is added.
    """
    try:
        c = parse_command(command)
    except ValueError:
        return None
    if not c.data:
        return None
    kind = None
    if c.ins in PIN_INS:
        if c.ins in (0x24, 0x25):
            kind = "new PIN" if c.p1 == 0x01 else "old and new PIN"
        elif c.ins in (0x2C, 0x2D):
            kind = {0x01: "PUK", 0x02: "new PIN"}.get(c.p1, "PUK and new PIN")
        else:
            kind = "PIN"
    elif c.ins == 0xDA and c.p1p2 == 0x00D3:
        kind = "reset code"
    elif ((c.ins == 0xDB and c.data[:1] == b"\x4d")
          or (c.ins == 0xFE and not c.cla_info.proprietary)):
        kind = "private key"
    elif c.ins == 0xFF and c.p1 == 0xFF and not c.cla_info.proprietary:
        kind = "management key"
    elif c.ins == 0xD8 and c.cla_info.proprietary:
        kind = "secure channel keys"
    if kind and c.cla_info.secure_messaging:
        kind += " (secure messaging)"
    return kind
