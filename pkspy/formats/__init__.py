"""Trace formats: one incremental parser per format, and format detection.

A parser has ``feed(text, lineno, offset) -> list[Event]`` and
``close() -> list[Event]``; ``parse`` drives one over lines.

A parser's module is imported only when its format is asked for (``PARSERS[name]``)
or detection gets to its sign: ``pkspy view`` of a spy log loads one parser, not eight.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Iterable, Iterator, Mapping
from functools import cached_property
from typing import TYPE_CHECKING

from pkspy.formats._colour import uncoloured

if TYPE_CHECKING:
    from pkspy.model import Event

# format name -> (module in this package, parser class); the class's ``format`` is the name
_PARSER_PLACES = {
    "pkcs11-spy": ("spy", "SpyParser"),
    "opensc-debug": ("opensc_debug", "OpenscDebugParser"),
    "pcsc-spy-raw": ("pcsc_spy", "PcscSpyRawParser"),
    "pcscd": ("pcscd", "PcscdParser"),
    "pcsc-spy": ("pcsc_spy_text", "PcscSpyTextParser"),
    "hex-apdu": ("hex_apdu", "HexApduParser"),
    "p11-kit": ("p11kit", "P11KitParser"),
    "pkcs11-logger": ("pkcs11_logger", "Pkcs11LoggerParser"),
}


def _module(name: str):
    return importlib.import_module(f"{__name__}.{name}")


class _Parsers(Mapping):
    """Format name -> parser class, the class imported on first use."""

    def __getitem__(self, fmt: str) -> type:
        module, cls = _PARSER_PLACES[fmt]
        return getattr(_module(module), cls)

    def __contains__(self, fmt: object) -> bool:  # a known name, without importing it
        return fmt in _PARSER_PLACES

    def __iter__(self) -> Iterator[str]:
        return iter(_PARSER_PLACES)

    def __len__(self) -> int:
        return len(_PARSER_PLACES)


PARSERS: Mapping[str, type] = _Parsers()


class _ModuleSign:
    """A sign kept in its parser's module, imported when detection first tries it."""

    def __init__(self, module: str) -> None:
        self.module = module

    @cached_property
    def _pattern(self) -> re.Pattern[str]:
        return _module(self.module).SIGN

    def match(self, text: str) -> re.Match[str] | None:
        return self._pattern.match(text)


# Decisive first-lines tests, in the order of formats.md §5.
_SIGNS = [
    ("pcsc-spy-raw", re.compile(r"^[0-9A-F]+@[<>]\|\d+\|\d+\|SCard\w+")),
    ("pkcs11-spy", re.compile(r"^\*{5,} OpenSC PKCS#11 spy \*{5,}")),
    ("pkcs11-spy", re.compile(r"^\d+: (C_\w+|SetOperationState)\s*$")),
    ("opensc-debug", re.compile(
        r"^(?:P:\d+; T:(?:0x)?\d+ |0x[0-9a-fA-F]+ )(?:\d{4}-\d\d-\d\d )?"
        r"\d\d:\d\d:\d\d\.\d{3} \[[^\]]*\] ")),
    # <=0.17 on Windows: a date and time, then [app] file:line:func:
    ("opensc-debug", re.compile(
        r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} \[[^\]]*\] \S+:\d+:\w+: ")),
    # pkcs11-logger: [pid : ][tid : ] then its banner, a separator or a timestamped step
    ("pkcs11-logger", _ModuleSign("pkcs11_logger")),
    # p11-kit log-calls: a call's first input or output line (its name alone says little)
    ("p11-kit", re.compile(r"^(?:(?:  IN| OUT): \w+ = \S|C_\w+ = CKR_\w+\s*$)")),
    # the delta in microseconds, the thread id with -T, then file:line:function()
    ("pcscd", re.compile(
        r"^-?\d{8} (?:\[(?:\d+|0x[0-9a-fA-F]+)\] )?[^\s:]+:\d+:\w+\(\) ")),
    ("pcsc-spy", re.compile(r"^ *(?:\(t\d+\) )?(?:SCard\w+|SCarControl)\s*$")),
    # hex APDUs last: a prefixed line here, bare hex lines in detect()
    ("hex-apdu", _ModuleSign("hex_apdu")),
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
        kind = _module("hex_apdu").plain_kind(text)
        hex_lines += kind == "hex"
        not_hex = not_hex or kind is None
        seen += 1
        if seen >= DETECT_LINES:
            break
    # bare hex APDUs, only when nothing else is in the head
    return "hex-apdu" if hex_lines >= 2 and not not_hex else None


def parse(lines: Iterable[tuple[str, int]], fmt: str, first_line: int = 1) -> Iterator[Event]:
    """Events from (text, offset) lines, numbering lines from ``first_line``."""
    parser = PARSERS[fmt]()
    for lineno, (text, offset) in enumerate(lines, first_line):
        yield from parser.feed(text, lineno, offset)
    yield from parser.close()


def names() -> list[str]:
    return sorted(PARSERS)
