"""Trace formats: one incremental parser per format, and format detection.

A parser has ``feed(text, lineno, offset) -> list[Event]`` and
``close() -> list[Event]``; ``parse`` drives one over lines.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

from pkspy.formats import hex_apdu, pkcs11_logger
from pkspy.formats._colour import uncoloured
from pkspy.formats.hex_apdu import HexApduParser
from pkspy.formats.opensc_debug import OpenscDebugParser
from pkspy.formats.p11kit import P11KitParser
from pkspy.formats.pcsc_spy import PcscSpyRawParser
from pkspy.formats.pcsc_spy_text import PcscSpyTextParser
from pkspy.formats.pcscd import PcscdParser
from pkspy.formats.pkcs11_logger import Pkcs11LoggerParser
from pkspy.formats.spy import SpyParser
from pkspy.model import Event

PARSERS = {p.format: p for p in (SpyParser, OpenscDebugParser, PcscSpyRawParser, PcscdParser,
                                 PcscSpyTextParser, HexApduParser, P11KitParser,
                                 Pkcs11LoggerParser)}

# Decisive first-lines tests, in the order of formats.md §5.
_SIGNS = [
    (PcscSpyRawParser.format, re.compile(r"^[0-9A-F]+@[<>]\|\d+\|\d+\|SCard\w+")),
    (SpyParser.format, re.compile(r"^\*{5,} OpenSC PKCS#11 spy \*{5,}")),
    (SpyParser.format, re.compile(r"^\d+: (C_\w+|SetOperationState)\s*$")),
    (OpenscDebugParser.format, re.compile(
        r"^(?:P:\d+; T:(?:0x)?\d+ |0x[0-9a-fA-F]+ )(?:\d{4}-\d\d-\d\d )?"
        r"\d\d:\d\d:\d\d\.\d{3} \[[^\]]*\] ")),
    # <=0.17 on Windows: a date and time, then [app] file:line:func:
    (OpenscDebugParser.format, re.compile(
        r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} \[[^\]]*\] \S+:\d+:\w+: ")),
    # pkcs11-logger: [pid : ][tid : ] then its banner, a separator or a timestamped step
    (Pkcs11LoggerParser.format, pkcs11_logger.SIGN),
    # p11-kit log-calls: a call's first input or output line (its name alone says little)
    (P11KitParser.format, re.compile(r"^(?:(?:  IN| OUT): \w+ = \S|C_\w+ = CKR_\w+\s*$)")),
    # the delta in microseconds, the thread id with -T, then file:line:function()
    (PcscdParser.format, re.compile(
        r"^-?\d{8} (?:\[(?:\d+|0x[0-9a-fA-F]+)\] )?[^\s:]+:\d+:\w+\(\) ")),
    (PcscSpyTextParser.format, re.compile(r"^ *(?:\(t\d+\) )?(?:SCard\w+|SCarControl)\s*$")),
    # hex APDUs last: a prefixed line here, bare hex lines in detect()
    (HexApduParser.format, hex_apdu.SIGN),
]

DETECT_LINES = 200


def detect(lines: Iterable[str]) -> str | None:
    """The format of a trace from its first lines, or None."""
    seen = 0
    hex_lines, not_hex = 0, False
    for text in lines:
        text = uncoloured(text)
        if not text.strip():
            continue
        for name, sign in _SIGNS:
            if sign.match(text):
                return name
        kind = hex_apdu.plain_kind(text)
        hex_lines += kind == "hex"
        not_hex = not_hex or kind is None
        seen += 1
        if seen >= DETECT_LINES:
            break
    # bare hex APDUs, only when nothing else is in the head
    return HexApduParser.format if hex_lines >= 2 and not not_hex else None


def parse(lines: Iterable[tuple[str, int]], fmt: str, first_line: int = 1) -> Iterator[Event]:
    """Events from (text, offset) lines, numbering lines from ``first_line``."""
    parser = PARSERS[fmt]()
    for lineno, (text, offset) in enumerate(lines, first_line):
        yield from parser.feed(text, lineno, offset)
    yield from parser.close()


def names() -> list[str]:
    return sorted(PARSERS)
