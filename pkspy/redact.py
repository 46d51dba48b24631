"""Redaction: the one place where secrets leave the event stream.

Parsers mark secret fields (``Arg.secret``, ``Attribute.secret``) where the
grammar tells them what a field holds. The redactor then

* replaces each marked value with a ``Redacted`` marker that keeps the length,
* masks the raw lines the value was printed on (hex and ASCII columns), and
* remembers the secret, and sweeps every later line and text value for other
  copies of it: ASCII, and hex in upper and lower case, with and without
  spaces. A PIN has copies (the spy's dump, a VERIFY APDU in the debug log).

Nothing is redacted only when the user asks for it (``reveal=True``).
"""

from __future__ import annotations

import re

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


class Redactor:
    def __init__(self, reveal: bool = False) -> None:
        self.reveal = reveal
        self._known: set[bytes] = set()
        self._sweep: re.Pattern[str] | None = None

    def __call__(self, event: Event) -> Event:
        if self.reveal:
            return event
        if isinstance(event, Pkcs11Call):
            for item in _secret_items(event.args):
                self._hide(event, item)
        elif isinstance(event, ApduExchange) and event.secret:
            self._hide_apdu(event)
        elif isinstance(event, DebugLine) and event.secret_text is not None:
            self._hide_message(event)
        if self._known:
            self._sweep_event(event)
        return event

    def _sweep_event(self, event: Event) -> None:
        """Mask every copy of a secret seen before, wherever it stands."""
        sweep = self._sweep
        assert sweep is not None
        event.raw = [sweep.sub(_mask_match, line) for line in event.raw]
        if isinstance(event, Pkcs11Call):
            for item in _all_items(event.args):
                if isinstance(item.value, str):
                    item.value = sweep.sub(_mask_match, item.value)
                elif isinstance(item.value, bytes) and self._holds_secret(item.value):
                    item.secret = "copy of a secret"
                    self._hide(event, item)
        elif isinstance(event, DebugLine):
            event.message = sweep.sub(_mask_match, event.message)
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

    def _hide_apdu(self, apdu: ApduExchange) -> None:
        """Keep the command's header (CLA INS P1 P2 Lc), hide its data."""
        start, length = _command_data(apdu.command)
        if not length:
            return
        data = apdu.command[start:start + length]
        self._learn(data)
        self._learn(data.rstrip(b"\xff\x00 "))  # PINs are padded with FF, 00 or spaces
        apdu.command = apdu.command[:start]
        apdu.command_header_len = start
        apdu.command_data = Redacted(apdu.secret or "secret", length)
        if apdu.command_span is not None:
            first, last = apdu.command_span
            apdu.raw[first:last + 1] = _mask_bytes(apdu.raw[first:last + 1], start,
                                                   start + length, start + length,
                                                   apdu.command_row_bytes)

    def _hide_message(self, event: DebugLine) -> None:
        secret = event.secret_text or ""
        event.secret_text = None
        if not secret:
            return
        self._learn(secret.encode("utf-8", "surrogateescape"))
        marker = str(Redacted(event.secret or "secret", len(secret.encode())))
        event.message = event.message.replace(secret, marker)
        event.raw = [line.replace(secret, MASK * len(secret)) for line in event.raw]

    def _holds_secret(self, data: bytes) -> bool:
        return any(s in data for s in self._known)

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
        if item.span is not None:
            first, last = item.span
            for i in range(first + 1, last + 1):  # the first line is the header: ptr / len
                if i < len(event.raw):
                    event.raw[i] = _mask_line(event.raw[i])

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
                forms.append(rf"(?<![0-9]){re.escape(text)}(?![0-9])")
            elif text.isprintable():
                forms.append(re.escape(text))
        self._sweep = re.compile("|".join(forms))


def _mask_match(m: re.Match[str]) -> str:
    return re.sub(r"[^ ]", MASK, m.group(0))


_DUMP = re.compile(r"^(    [0-9A-F]{8}  )(.{0,48})(.*)$")


def _mask_line(line: str) -> str:
    """Mask a dump row's bytes, keeping its offset and shape."""
    m = _DUMP.match(line)
    if m:
        head, hexpart, ascii_part = m.groups()
        return head + re.sub(r"[0-9A-F]{2}", MASK * 2, hexpart) + re.sub(r"\S", MASK, ascii_part)
    return re.sub(r"\S", MASK, line)


def _all_items(args: list[Arg]):
    for arg in args:
        yield arg
        if arg.kind == "template" and isinstance(arg.value, list):
            yield from arg.value
        elif arg.kind == "mechanism" and isinstance(arg.value, Mechanism):
            yield from _all_items(arg.value.params)


def _secret_items(args: list[Arg]):
    for item in _all_items(args):
        if item.secret:
            yield item


def _command_data(command: bytes) -> tuple[int, int]:
    """Where a command APDU's data starts, and how long it is (ISO 7816-4 cases 3/4)."""
    if len(command) > 5 and command[4] != 0:
        return 5, min(command[4], len(command) - 5)
    if len(command) > 7 and command[4] == 0:  # extended Lc: 00 hi lo
        return 7, min(int.from_bytes(command[5:7], "big"), len(command) - 7)
    return len(command), 0


# A dump row: an optional prefix (a tracer's TID@, pcsc-spy's " i  0000 "), hex pairs.
_ROW = re.compile(r"^(?P<prefix>[0-9A-F]+@|.*?[io] +[0-9A-F]{4} )?(?P<pairs>(?:[0-9A-Fa-f]{2} ?)+)")


def _mask_bytes(rows: list[str], start: int, end: int, total: int,
                per_row: int = 16) -> list[str]:
    """Mask bytes start..end of a dump of ``total`` bytes written as "XX XX .. ascii" rows.

    A row holds up to ``per_row`` bytes (0: no limit); an ASCII column, if the
    row has one, is its last characters, one per byte (OpenSC pads every row
    but the first to 16 slots).
    """
    out, pos = [], 0
    for row in rows:
        m = _ROW.match(row)
        if not m:
            out.append(row)
            continue
        base = len(m.group("prefix") or "")
        pairs = (len(m.group("pairs")) + 1) // 3
        n = min(pairs, total - pos, per_row or pairs)
        chars = list(row)
        for i in range(n):
            if start <= pos + i < end:
                chars[base + 3 * i:base + 3 * i + 2] = MASK, MASK
                j = len(row) - n + i
                if j >= base + 3 * n:
                    chars[j] = MASK
        out.append("".join(chars))
        pos += n
    return out
