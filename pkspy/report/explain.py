"""``pkspy explain``: decoders.explain's answers as text or JSON."""

from __future__ import annotations

import dataclasses
import json
import re
import textwrap
from typing import TextIO

from decoders.explain import NAMESPACES, Match, explain, suggest

_WIDTH = 88
_NAMES = {"pkcs11": "PKCS#11", "opensc": "OpenSC", "sw": "ISO 7816 status word",
          "pcsc": "PC/SC", "gskit": "GSKit", "atr": "ATR", "apdu": "command APDU",
          "ins": "instruction"}


def _inputs(codes: tuple[str, ...]) -> list[str]:
    """`pkspy explain 3B 8F 80 01` arrives as four arguments: two-hex-digit words are
    one byte string when they read as one, else each is explained alone."""
    if len(codes) > 1 and all(re.fullmatch(r"[0-9A-Fa-f]{2}", c) for c in codes):
        joined = " ".join(codes)
        if explain(joined):
            return [joined]
    return list(codes)


def _block(m: Match) -> list[str]:
    head = f"  {m.kind}: {m.name} ({m.code})" if m.name else f"  {m.kind}: {m.code}"
    out = [head]
    wrap = textwrap.TextWrapper(width=_WIDTH, initial_indent="    ",
                                subsequent_indent="      ")
    if m.meaning:
        out += wrap.wrap(m.meaning)
    for note in m.notes:
        out += wrap.wrap(f"note: {note}")
    if m.hint:
        out += wrap.wrap(f"hint: {m.hint}")
    return out


def render(text: str, matches: list[Match]) -> str:
    lines = [text if len(matches) < 2 else f"{text}  ({len(matches)} readings, most likely first)"]
    for m in matches:
        lines += _block(m)
    return "\n".join(lines)


def _unknown(text: str, namespace: str | None) -> str:
    where = _NAMES.get(namespace, namespace) if namespace else "any namespace"
    message = f"pkspy: {text!r} is not a code pkspy knows in {where}"
    close = suggest(text)
    if close:
        message += f"; did you mean {' or '.join(close)}?"
    return message


def run(codes: tuple[str, ...], namespace: str | None, as_json: bool, out: TextIO,
        err: TextIO) -> int:
    """Explain each code; 0 when all are known, 1 when any is not (said on ``err``)."""
    results = []
    status = 0
    for text in _inputs(codes):
        matches = explain(text, namespace)
        if not matches:
            err.write(_unknown(text, namespace) + "\n")
            status = 1
        results.append((text, matches))
    if as_json:
        out.write(json.dumps([{"input": t, "matches": [dataclasses.asdict(m) for m in ms]}
                              for t, ms in results], indent=2, ensure_ascii=False) + "\n")
    else:
        out.write("\n\n".join(render(t, ms) for t, ms in results if ms) + "\n"
                  if any(ms for _t, ms in results) else "")
    return status


__all__ = ["NAMESPACES", "render", "run"]
