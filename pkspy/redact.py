"""Redaction: the one place that decides what of a trace may be shown.

Parsers mark the fields whose grammar says they are secret (``Arg.secret``:
PINs, plaintext, wrapped keys; ``ApduExchange.secret``: the data of VERIFY,
CHANGE REFERENCE DATA, RESET RETRY COUNTER...; ``DebugLine.secret_text``: a
PIN an OpenSC line prints). Attribute values follow an allow-list, in the
spirit of p11-kit's ``attribute_is_sensitive``: typed values (booleans,
numbers, classes, dates, mechanisms) and the byte values listed below are
shown; every other byte value — key material, unknown and vendor attributes,
CKA_VALUE of anything but a certificate or a public key — is not.

For each secret the redactor

* replaces the value with a ``Redacted`` marker that keeps its length,
* masks the raw lines it was printed on with ``*`` (same number of
  characters, so lines keep their layout: hex and ASCII columns alike), and
* remembers it, and sweeps every later line and value for other copies:
  ASCII, and hex upper and lower case, with or without spaces or colons.

Nothing is redacted only when the user asks for it (``reveal=True``).
"""

from __future__ import annotations

import re
from collections.abc import Callable

from decoders import pkcs11
from pkspy.model import (
    ApduExchange,
    Arg,
    Attribute,
    DebugLine,
    Event,
    Mechanism,
    Pkcs11Call,
    Redacted,
)

MASK = "*"
# Shorter secrets would match by chance inside unrelated hex and text.
MIN_SWEEP = 4

_CKA = {n: pkcs11.value(n) for n in (
    "CKA_LABEL", "CKA_APPLICATION", "CKA_OBJECT_ID", "CKA_ISSUER", "CKA_SERIAL_NUMBER",
    "CKA_AC_ISSUER", "CKA_OWNER", "CKA_ATTR_TYPES", "CKA_URL", "CKA_HASH_OF_SUBJECT_PUBLIC_KEY",
    "CKA_HASH_OF_ISSUER_PUBLIC_KEY", "CKA_CHECK_VALUE", "CKA_SUBJECT", "CKA_ID", "CKA_MODULUS",
    "CKA_PUBLIC_EXPONENT", "CKA_PRIME", "CKA_SUBPRIME", "CKA_BASE", "CKA_EC_PARAMS",
    "CKA_EC_POINT", "CKA_PUBLIC_KEY_INFO", "CKA_UNIQUE_ID", "CKA_ALLOWED_MECHANISMS",
    "CKA_GOSTR3410_PARAMS", "CKA_GOSTR3411_PARAMS", "CKA_GOST28147_PARAMS",
    "CKA_REQUIRED_CMS_ATTRIBUTES", "CKA_DEFAULT_CMS_ATTRIBUTES", "CKA_SUPPORTED_CMS_ATTRIBUTES",
    "CKA_OTP_USER_IDENTIFIER", "CKA_OTP_SERVICE_IDENTIFIER", "CKA_OTP_SERVICE_LOGO",
    "CKA_OTP_SERVICE_LOGO_TYPE", "CKA_CHAR_SETS", "CKA_ENCODING_METHODS", "CKA_MIME_TYPES",
    "CKA_VALUE", "CKA_START_DATE", "CKA_END_DATE")}
# Byte values that describe an object without giving a secret away. CKA_PRIME,
# CKA_SUBPRIME and CKA_BASE are domain parameters, public on DSA and DH keys.
PRINTABLE_BYTES = frozenset(v for n, v in _CKA.items() if n != "CKA_VALUE" and v is not None)
# CKA_VALUE holds a certificate or a public value on these, a secret on the rest.
PUBLIC_VALUE_CLASSES = frozenset(pkcs11.value(n) for n in ("CKO_CERTIFICATE", "CKO_PUBLIC_KEY"))


def attribute_printable(attr: Attribute, object_class: int | None) -> bool:
    """Whether a template entry's value may be shown (an allow-list, not a deny-list)."""
    if attr.type in pkcs11.SECRET_ATTRIBUTES:
        return False
    if attr.type == _CKA["CKA_VALUE"]:
        return object_class in PUBLIC_VALUE_CLASSES
    if attr.type is not None and (attr.type in PRINTABLE_BYTES
                                  or pkcs11.ATTRIBUTE_KINDS.get(attr.type, "bytes") != "bytes"):
        return True  # listed, or typed: booleans, numbers, classes, dates, mechanisms, text
    return not isinstance(attr.value, bytes)


class Redactor:
    """Applied to every event on its way out of the parser layer.

    ``on_change(event, index, text)`` is told of every raw line it masks, so a
    copy of the trace can be written in its own format (``pkspy redact``).
    """

    def __init__(self, reveal: bool = False,
                 on_change: Callable[[Event, int, str], None] | None = None) -> None:
        self.reveal = reveal
        self.on_change = on_change
        self._known: set[bytes] = set()
        self._sweep: re.Pattern[str] | None = None

    def __call__(self, event: Event) -> Event:
        if self.reveal:
            return event
        if isinstance(event, Pkcs11Call):
            self._hide_call(event)
        elif isinstance(event, ApduExchange) and event.secret:
            self._hide_apdu(event)
        elif isinstance(event, DebugLine) and event.secret_text is not None:
            self._hide_message(event)
        if self._sweep is not None:
            self._sweep_event(event)
        return event

    @property
    def known(self) -> int:
        """How many secrets it knows: its masks and sweeps change only when this grows."""
        return len(self._known)

    @property
    def secrets(self) -> frozenset[bytes]:
        """Every secret seen so far (long enough to be searched for)."""
        return frozenset(self._known)

    def sweep_text(self, text: str) -> str:
        """``text`` with every copy of a known secret masked."""
        return self._sweep.sub(_mask_match, text) if self._sweep is not None else text

    # -- what is hidden, by event kind ---------------------------------

    def _hide_call(self, call: Pkcs11Call) -> None:
        for arg in _args(call.args):
            if arg.secret:
                self._hide(call, arg)
            if arg.kind == "template" and isinstance(arg.value, list):
                for attr in arg.value:
                    if attr.secret is None and attr.value is not None and not (
                            attribute_printable(attr, arg.object_class)):
                        attr.secret = ("key material" if attr.type in pkcs11.SECRET_ATTRIBUTES
                                       or attr.type == _CKA["CKA_VALUE"] else "attribute value")
                    if attr.secret:
                        self._hide(call, attr)

    def _hide(self, event: Event, item: Arg | Attribute) -> None:
        value = item.value
        if value is None or isinstance(value, Redacted):
            return  # nothing was printed (a request template, a NULL buffer)
        declared = item.length if item.length is not None and item.length >= 0 else None
        if isinstance(value, bytes):
            self._learn(value)
            # a dump cut short (or moved by threads) still says how long the secret was
            length: int | None = declared if declared is not None else len(value)
        else:
            length = declared
        item.value = Redacted(item.secret or "secret", length)
        at = getattr(value, "at", None)  # printed inside a line that says more (_inline.py)
        if at is not None:
            i, start, end = at
            if i < len(event.raw):
                line = event.raw[i]
                self._set_raw(event, i, line[:start] + MASK * len(line[start:end]) + line[end:])
        elif item.span is not None:
            first, last = item.span
            for i in range(first + 1, last + 1):  # the first line is the header: ptr / len
                if i < len(event.raw):
                    self._set_raw(event, i, _mask_row(event.raw[i]))

    def _hide_apdu(self, apdu: ApduExchange) -> None:
        """Keep the command's header (CLA INS P1 P2 Lc), hide its data."""
        start, length = _command_data(apdu.command)
        if not length:
            return
        total = len(apdu.command)
        data = apdu.command[start:start + length]
        self._learn(data)
        self._learn(data.rstrip(b"\xff\x00 "))  # PINs are padded with FF, 00 or spaces
        apdu.command = apdu.command[:start]
        apdu.command_header_len = start
        apdu.command_data = Redacted(apdu.secret or "secret", length)
        if apdu.command_span is not None:
            first, last = apdu.command_span
            rows = _mask_bytes(apdu.raw[first:last + 1], start, start + length, total,
                               apdu.command_row_bytes)
            for i, row in enumerate(rows, first):
                self._set_raw(apdu, i, row)

    def _hide_message(self, event: DebugLine) -> None:
        secret = event.secret_text or ""
        event.secret_text = None
        if not secret:
            return
        self._learn(secret.encode("utf-8", "surrogateescape"))
        marker = str(Redacted(event.secret or "secret", len(secret.encode())))
        event.message = event.message.replace(secret, marker)
        for i, line in enumerate(event.raw):
            if secret in line:
                self._set_raw(event, i, line.replace(secret, MASK * len(secret)))

    # -- copies of secrets seen before ------------------------------------

    def _sweep_event(self, event: Event) -> None:
        sweep = self.sweep_text
        # One search over the whole record first: most records hold no copy. No form
        # of a secret matches a newline, so the joined lines match where a line does.
        if event.raw and self._sweep.search("\n".join(event.raw)) is not None:
            for i, line in enumerate(event.raw):
                masked = sweep(line)
                if masked != line:
                    self._set_raw(event, i, masked)
        if isinstance(event, Pkcs11Call):
            for item in _items(event.args):
                if isinstance(item.value, str):
                    item.value = sweep(item.value)
                elif isinstance(item.value, bytes) and self._holds_secret(item.value):
                    item.secret = "copy of a secret"
                    self._hide(event, item)
        elif isinstance(event, DebugLine):
            event.message = sweep(event.message)
            if event.data is not None and self._holds_secret(event.data):
                event.data = None
                event.message += f" {Redacted('copy of a secret')}"
        elif isinstance(event, ApduExchange):
            if self._holds_secret(event.command):
                event.secret = "copy of a secret"
                self._hide_apdu(event)
            if event.response and self._holds_secret(event.response):
                event.response = None
                event.header = f"{event.header or ''} [the response held a secret: removed]"

    def _holds_secret(self, data: bytes) -> bool:
        return any(s in data for s in self._known)

    def _set_raw(self, event: Event, index: int, text: str) -> None:
        event.raw[index] = text
        if self.on_change is not None:
            self.on_change(event, index, text)

    def _learn(self, secret: bytes) -> None:
        if len(secret) < MIN_SWEEP or secret in self._known:
            return
        self._known.add(secret)
        forms: list[str] = []
        for s in sorted(self._known, key=len, reverse=True):
            pairs = [f"{b:02x}" for b in s]
            for sep in ("", " ", ":"):
                forms += [re.escape(sep.join(pairs)), re.escape(sep.join(pairs).upper())]
            text = s.decode("latin-1")
            if text.isdigit():
                # a numeric PIN: not inside a longer number (line numbers, pids, offsets)
                # (the look-behind after the digits: a pattern whose every branch starts
                # with a literal is scanned for its first characters, ten times faster)
                forms.append(rf"{text}(?<![0-9]{text})(?![0-9])")
            elif text.isprintable():
                forms.append(re.escape(text))
        self._sweep = re.compile("|".join(forms))


def _mask_match(m: re.Match[str]) -> str:
    return re.sub(r"[^ ]", MASK, m.group(0))


_SPY_ROW = re.compile(r"^(    [0-9A-F]{8}  )(.{0,48})(.*)$")


def _mask_row(line: str) -> str:
    """Mask a dump row's bytes, keeping its offset and shape."""
    m = _SPY_ROW.match(line)
    if m:
        head, hexpart, ascii_part = m.groups()
        n = len(re.findall(r"[0-9A-F]{2}", hexpart))
        # the ASCII column is one character a byte after a space: spaces in it are bytes too
        ascii_part = ascii_part[:1] + MASK * len(ascii_part[1:1 + n]) + ascii_part[1 + n:]
        return head + re.sub(r"[0-9A-F]{2}", MASK * 2, hexpart) + ascii_part
    return re.sub(r"\S", MASK, line)


def _args(args: list[Arg]):
    for arg in args:
        yield arg
        if arg.kind == "mechanism" and isinstance(arg.value, Mechanism):
            yield from _args(arg.value.params)


def _items(args: list[Arg]):
    for arg in _args(args):
        yield arg
        if arg.kind == "template" and isinstance(arg.value, list):
            yield from arg.value


def _command_data(command: bytes) -> tuple[int, int]:
    """Where a command APDU's data starts, and how long it is (ISO 7816-4 cases 3/4)."""
    if len(command) > 5 and command[4] != 0:
        return 5, min(command[4], len(command) - 5)
    if len(command) > 7 and command[4] == 0:  # extended Lc: 00 hi lo
        return 7, min(int.from_bytes(command[5:7], "big"), len(command) - 7)
    return len(command), 0


# A dump row: an optional prefix (libpcscspy's TID@, pcsc-spy's " i  0000 ", pcscd's
# "00000003 [thread] APDU: ", a pasted "> " or "C:"), then bytes in hex, spaced, with
# colons or run together; terminal colours around it.
_ROW = re.compile(
    r"^(?P<prefix>[0-9A-F]+@|.*?[io] +[0-9A-F]{4} "
    r"|(?:\x1b\[[0-9;]*m)*-?\d{8}(?:\x1b\[[0-9;]*m)* (?:\[[^\]]*\] )?(?:\x1b\[[0-9;]*m)*APDU: "
    r"|\s*(?:=>|->|>|[Cc]:|[Ss][Ee][Nn][Dd]:)\s*"
    r")?(?P<pairs>[0-9A-Fa-f]{2}(?:[ :]?[0-9A-Fa-f]{2})*)")
_PAIR = re.compile(r"[0-9A-Fa-f]{2}")
_TRAILING_SGR = re.compile(r"(?:\x1b\[[0-9;]*m)+$")


def _mask_bytes(rows: list[str], start: int, end: int, total: int,
                per_row: int = 16) -> list[str]:
    """Mask bytes start..end of a dump of ``total`` bytes written as rows of hex.

    A row holds up to ``per_row`` bytes (0: no limit). An ASCII column, where a
    row has one, is its last characters before any closing colour code, one
    per byte (OpenSC pads every row but the first to 16 slots).
    """
    out, pos = [], 0
    for row in rows:
        m = _ROW.match(row)
        if not m:
            out.append(row)
            continue
        spots = [m.start("pairs") + p.start() for p in _PAIR.finditer(m.group("pairs"))]
        n = min(len(spots), total - pos, per_row or len(spots))
        sgr = _TRAILING_SGR.search(row)
        stop = sgr.start() if sgr else len(row)
        ascii_column = bool(row[spots[n - 1] + 2:stop].strip()) if n else False
        chars = list(row)
        for i in range(n):
            if start <= pos + i < end:
                chars[spots[i]:spots[i] + 2] = MASK, MASK
                if ascii_column:
                    chars[stop - n + i] = MASK
        out.append("".join(chars))
        pos += n
    return out
