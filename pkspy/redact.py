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

from pkspy.model import Arg, Attribute, Event, Mechanism, Pkcs11Call, Redacted

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
        if self._known:
            event.raw = [self._sweep.sub(_mask_match, line) for line in event.raw]
            if isinstance(event, Pkcs11Call):
                for item in _all_items(event.args):
                    if isinstance(item.value, str):
                        item.value = self._sweep.sub(_mask_match, item.value)
                    elif isinstance(item.value, bytes) and self._holds_secret(item.value):
                        item.secret = "copy of a secret"
                        self._hide(event, item)
        return event

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
        forms: set[str] = set()
        for s in self._known:
            h = s.hex()
            forms.update((h, h.upper(), " ".join(h[i:i + 2] for i in range(0, len(h), 2)),
                          " ".join(h[i:i + 2] for i in range(0, len(h), 2)).upper()))
            text = s.decode("latin-1")
            if text.isprintable():
                forms.add(text)
        alternatives = sorted(forms, key=len, reverse=True)
        self._sweep = re.compile("|".join(re.escape(f) for f in alternatives))


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
