"""ATRs: structure (with pyscard's smartcard.ATR) and the card's name from pcsc-tools.

Exports: Atr, parse, parse_hex, describe, cards, card_names, LIST_PATHS.

Structure: ISO/IEC 7816-3 §8 through pyscard's ATR parser, plus the checks it
leaves out (a truncated ATR, a missing or wrong TCK, bytes after the end).
Names: pcsc-tools' smartcard_list.txt (GPL-2.0-or-later, Ludovic Rousseau),
read at run time from the places pcsc-tools' ATR_analysis looks, in its order;
never shipped with pkspy. No file means no name, not an error.
"""

from __future__ import annotations

import functools
import os
import re
from dataclasses import dataclass
from pathlib import Path

from smartcard.ATR import ATR as _PyscardATR


def _list_paths() -> list[Path]:
    """ATR_analysis' search order: user cache, ~/.smartcard_list.txt, then system copies."""
    home = Path(os.environ.get("HOME", "~")).expanduser()
    cache = Path(os.environ.get("XDG_CACHE_HOME") or home / ".cache")
    return [cache / "smartcard_list.txt", home / ".smartcard_list.txt",
            Path("/usr/local/pcsc/smartcard_list.txt"),
            Path("/usr/share/pcsc/smartcard_list.txt"),
            Path("/usr/local/share/pcsc/smartcard_list.txt")]


LIST_PATHS = _list_paths


@dataclass(frozen=True)
class Atr:
    raw: bytes
    convention: str | None  # "direct" (TS 3B), "inverse" (3F), None if TS is neither
    protocols: tuple[str, ...]  # ("T=0", "T=1")
    interface: tuple[str, ...]  # ("TA1=96", "TD1=81", ...)
    historical: bytes
    tck: int | None
    tck_ok: bool | None
    fi: int | str | None  # clock rate conversion factor (TA1), pyscard's reading
    di: int | str | None  # bit rate adjustment factor (TA1)
    problems: tuple[str, ...]

    @property
    def hex(self) -> str:
        return self.raw.hex(" ").upper()


_SEPARATORS = re.compile(r"[\s:.,-]+")


def parse_hex(text: str) -> bytes | None:
    """'3B 8F 80 01', '3B8F8001', '3b:8f:80:01' -> bytes; None if it is not hex bytes."""
    compact = _SEPARATORS.sub("", text.strip())
    if compact.lower().startswith("0x"):
        compact = compact[2:]
    if not compact or len(compact) % 2 or not re.fullmatch(r"[0-9A-Fa-f]+", compact):
        return None
    return bytes.fromhex(compact)


def _walk(raw: bytes) -> tuple[list[str], list[int], int | None, bool]:
    """ISO 7816-3 §8.2 interface bytes: (names, protocols, end offset or None, needs TCK)."""
    names: list[str] = []
    protocols: list[int] = []
    offset, td, i = 1, raw[1], 1
    while True:
        for bit, letter in ((0x10, "A"), (0x20, "B"), (0x40, "C"), (0x80, "D")):
            if td & bit:
                offset += 1
                if offset >= len(raw):
                    return names, protocols, None, any(p != 0 for p in protocols)
                names.append(f"T{letter}{i}={raw[offset]:02X}")
        if not td & 0x80:
            break
        td = raw[offset]
        protocols.append(td & 0x0F)
        i += 1
    # TCK is present unless T=0 is the only protocol indicated (§8.2.5)
    return names, protocols, offset + 1, any(p != 0 for p in protocols)


def parse(raw: bytes) -> Atr:
    """Decode an ATR; never raises. What is wrong with it is listed in ``problems``."""
    raw = bytes(raw)
    problems: list[str] = []
    if len(raw) < 2:
        return Atr(raw, None, (), (), b"", None, None, None, None,
                   (f"an ATR has at least 2 bytes (TS and T0), got {len(raw)}",))
    convention = {0x3B: "direct", 0x3F: "inverse"}.get(raw[0])
    if convention is None:
        problems.append(f"TS is {raw[0]:02X}; it must be 3B (direct) or 3F (inverse convention)")
    names, protocols, end, needs_tck = _walk(raw)
    k = raw[1] & 0x0F
    if end is None:
        problems.append(f"truncated: the interface bytes run past the {len(raw)} bytes given")
        return Atr(raw, convention, (), tuple(names), b"", None, None, None, None,
                   tuple(problems))
    expected = end + k + (1 if needs_tck else 0)
    if needs_tck and len(raw) == expected - 1:
        problems.append("TCK missing: a protocol other than T=0 is indicated")
    elif len(raw) < expected:
        problems.append(f"truncated: {len(raw)} bytes, the structure needs {expected} "
                        f"({k} historical bytes{', TCK' if needs_tck else ''})")
    elif len(raw) > expected:
        extra = len(raw) - expected
        problems.append(f"{extra} byte{'s' if extra > 1 else ''} after the end of the ATR"
                        + ("" if needs_tck else " (T=0 only: there is no TCK)"))
    fi = di = None
    historical = raw[end:end + k]
    tck = tck_ok = None
    if convention:
        parsed = _PyscardATR(list(raw))
        fi, di = parsed.getClockRateConversion(), parsed.getBitRateFactor()
    if needs_tck and len(raw) >= expected:
        tck = raw[expected - 1]
        tck_ok = functools.reduce(lambda a, b: a ^ b, raw[1:expected]) == 0
        if not tck_ok:
            problems.append(f"TCK {tck:02X} is wrong: T0 to TCK do not XOR to 00")
    proto = tuple(f"T={p}" for p in dict.fromkeys(protocols)) or ("T=0",)
    return Atr(raw, convention, proto, tuple(names), historical, tck, tck_ok, fi, di,
               tuple(problems))


def describe(raw: bytes) -> str:
    """One line: protocols, historical bytes, TCK and what is wrong."""
    a = parse(raw)
    parts = [", ".join(a.protocols) or "no protocol"]
    if a.convention:
        parts.append(f"{a.convention} convention")
    if a.fi is not None:
        parts.append(f"Fi={a.fi} Di={a.di}")
    if a.historical:
        text = a.historical.decode("ascii", "replace")
        shown = f' "{text}"' if text.isprintable() and len(a.historical) > 3 else ""
        parts.append(f"historical bytes {a.historical.hex(' ').upper()}{shown}")
    if a.tck_ok:
        parts.append(f"TCK {a.tck:02X} ok")
    return "; ".join(parts + list(a.problems))


# --- smartcard_list.txt ------------------------------------------------------------------

@functools.lru_cache(maxsize=4)
def _database(path: str, mtime: float, size: int) -> tuple[tuple[re.Pattern, tuple[str, ...]], ...]:
    """Entries of one smartcard_list.txt: an ATR regex in column 0, then TAB-indented
    description lines (name first), ended by a blank line."""
    entries: list[tuple[re.Pattern, tuple[str, ...]]] = []
    patterns: list[str] = []
    lines: list[str] = []

    def close() -> None:
        for p in patterns:
            try:
                entries.append((re.compile(p, re.IGNORECASE), tuple(lines)))
            except re.error:
                continue  # a pattern Python cannot read names no card for us
        patterns.clear()
        lines.clear()

    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            line = line.rstrip("\r\n")
            if line.startswith("#"):
                continue
            if not line.strip():
                close()
            elif line[0] in " \t":
                lines.append(line.strip())
            else:
                if lines:  # a new pattern right after a description block
                    close()
                patterns.append(line.strip())
        close()
    return tuple(entries)


def _list_file(paths: list[Path] | None) -> Path | None:
    for p in paths if paths is not None else LIST_PATHS():
        try:
            if p.is_file():
                return p
        except OSError:
            continue
    return None


def cards(raw: bytes, paths: list[Path] | None = None) -> list[tuple[str, ...]]:
    """Every entry of smartcard_list.txt whose pattern matches; each is its description
    lines (name first, then URLs and notes). [] when no list is installed."""
    path = _list_file(paths)
    if path is None or len(raw) == 0:
        return []
    try:
        st = path.stat()
        entries = _database(str(path), st.st_mtime, st.st_size)
    except OSError:
        return []
    text = bytes(raw).hex(" ").upper()
    return [lines for pattern, lines in entries if pattern.fullmatch(text)]


def card_names(raw: bytes, paths: list[Path] | None = None) -> list[str]:
    """The names (first description line) of every matching card, in list order."""
    return [lines[0] for lines in cards(raw, paths) if lines]
