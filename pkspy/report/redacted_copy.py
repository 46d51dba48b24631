"""``pkspy redact``: the trace in its own format, every secret overwritten in place.

Two passes over the file. The first parses and redacts it, noting each raw
line the redactor masked (same number of characters, so layouts and the
column of every value hold) and every secret it learned. The second copies
the file line by line: masked lines as masked, the rest with any copy of a
secret seen anywhere in the file swept out — also copies that came before
the secret was first seen. Lines untouched are written byte for byte.
"""

from __future__ import annotations

import os
from typing import BinaryIO

from pkspy.model import Event
from pkspy.pipeline import open_events
from pkspy.redact import Redactor
from pkspy.sources import SourceError, decode, raw_lines


def write_redacted(path: str, out: BinaryIO, fmt: str | None = None) -> dict:
    """Write a redacted copy of ``path`` to ``out``; what was done, for the user."""
    if path == "-":
        raise SourceError("redact reads its input twice: give a file, not stdin")
    masked: dict[int, str] = {}

    def note(event: Event, index: int, text: str) -> None:
        masked[event.source_lines()[index]] = text

    redactor = Redactor(on_change=note)
    fmt, events = open_events(path, fmt=fmt, redactor=redactor)
    for _ in events:
        pass
    changed = 0
    with open(path, "rb") as source:
        for n, (raw, _size) in enumerate(raw_lines(source), 1):  # long lines cut
            ending = raw[len(raw.rstrip(b"\r\n")):]
            text = masked.get(n)
            if text is None:
                original = decode(raw)
                swept = redactor.sweep_text(original)
                if swept == original:
                    out.write(raw)
                    continue
                text = swept
            out.write(text.encode("utf-8", "surrogateescape") + ending)
            changed += 1
    return {"format": fmt, "lines_changed": changed, "secrets": len(redactor.secrets)}


def same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False
