"""A tracer's output, read as it comes: bytes -> lines -> parser -> redacted events.

Nothing read from a tracer is written anywhere before the redactor has seen
it. The trace pkspy writes is the tracer's own text with every secret masked
in place (``*``, the same number of characters, as ``pkspy.redact`` does to
each event's raw lines), so ``pkspy tail`` and ``pkspy summary`` read it like
the original and line numbers still match. Lines are written in their
original order: an event whose lines are not contiguous (an OpenSC exchange
paired from two messages, a libpcscspy call that other threads interleaved)
says which source line each of its raw lines is, and lines wait for the ones
before them, and then for a few thousand more, so that a copy of a secret
printed before the record that names it is swept out too. Whitespace-only
lines, which no parser keeps, are written as they came; a non-blank line no
event returned is never written.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterable

from pkspy import formats
from pkspy.model import Event
from pkspy.redact import Redactor
from pkspy.sources import decode

# Lines held waiting for an earlier one; past this, the missing line is given up.
MAX_WAITING = 100_000
# Lines kept back once in order, to be swept again for secrets learned after them.
HOLD = 5_000


def open_private(path: str):
    """Open ``path`` for writing with mode 0600, whatever it had before."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    return os.fdopen(fd, "w", encoding="utf-8", errors="surrogateescape", newline="\n")


class TraceWriter:
    """Writes the redacted lines of events in source order.

    Lines wait for the lines before them, then for ``hold`` more lines: when
    written, a line is swept once more if the redactor learned a secret since
    it was redacted (a copy of a PIN printed before the call that names it, or
    in another stream before that stream's record of the call came).
    """

    def __init__(self, out, redactor: Redactor | None = None, hold: int = HOLD) -> None:
        self.out = out
        self.redactor = redactor
        self.hold = hold
        self.next = 1
        self.waiting: dict[int, tuple[str, int]] = {}
        self.ready: deque[tuple[str, int]] = deque()
        self.written = 0
        self.lost: list[int] = []  # source lines no event returned

    def _known(self) -> int:
        """How many secrets the redactor knows: they only ever grow."""
        return len(self.redactor.secrets) if self.redactor is not None else 0

    def blank(self, lineno: int, text: str) -> None:
        self.waiting.setdefault(lineno, (text, -1))
        self._flush()

    def event(self, event: Event) -> None:
        known = self._known()
        for lineno, text in zip(event.source_lines(), event.raw, strict=False):
            self.waiting[lineno] = (text, known)
        self._flush()

    def _flush(self) -> None:
        waiting = self.waiting
        while True:
            while self.next in waiting:
                self.ready.append(waiting.pop(self.next))
                self.next += 1
            if len(waiting) <= MAX_WAITING:
                break
            gap = min(waiting)  # a line that never came: go on without it
            self.lost += range(self.next, gap)
            self.next = gap
        if len(self.ready) > self.hold:
            known = self._known()
            while len(self.ready) > self.hold:
                self._write(*self.ready.popleft(), known)

    def _write(self, text: str, known_then: int, known_now: int) -> None:
        if 0 <= known_then < known_now:
            text = self.redactor.sweep_text(text)  # type: ignore[union-attr]
        self.out.write(text + "\n")
        self.written += 1

    def close(self) -> None:
        for lineno in sorted(self.waiting):
            if lineno > self.next:
                self.lost += range(self.next, lineno)
            self.ready.append(self.waiting[lineno])
            self.next = lineno + 1
        self.waiting.clear()
        known = self._known()
        while self.ready:
            self._write(*self.ready.popleft(), known)
        self.out.flush()


class Stream:
    """One tracer's output: fed bytes, hands out redacted events."""

    def __init__(self, fmt: str, redact: Redactor, writer: TraceWriter | None = None,
                 on_event: Callable[[Event], None] | None = None) -> None:
        self.format = fmt
        self.parser = formats.PARSERS[fmt]()
        self.redact = redact
        self.writer = writer
        self.on_event = on_event
        self.pending = b""
        self.lineno = 0
        self.offset = 0
        self.bytes = 0
        self.events = 0

    def feed(self, data: bytes) -> None:
        self.bytes += len(data)
        data = self.pending + data
        lines = data.split(b"\n")
        self.pending = lines.pop()
        for raw in lines:
            self._line(raw + b"\n")

    def close(self) -> None:
        if self.pending:
            self._line(self.pending)
            self.pending = b""
        self._emit(self.parser.close())
        if self.writer is not None:
            self.writer.close()

    def _line(self, raw: bytes) -> None:
        text = decode(raw)
        self.lineno += 1
        if self.writer is not None and not text.strip():
            self.writer.blank(self.lineno, text)
        self._emit(self.parser.feed(text, self.lineno, self.offset))
        self.offset += len(raw)

    def _emit(self, events: Iterable[Event]) -> None:
        for event in events:
            event = self.redact(event)
            self.events += 1
            if self.writer is not None:
                self.writer.event(event)
            if self.on_event is not None:
                self.on_event(event)


def redacted_copy(lines: Iterable[str], fmt: str, out, redact: Redactor | None = None) -> \
        TraceWriter:
    """Write the redacted copy of a trace given as lines (without newlines): what
    ``pkspy run`` writes for a live stream, for a trace already on disk."""
    redact = redact or Redactor()
    writer = TraceWriter(out, redact)
    stream = Stream(fmt, redact, writer)
    for text in lines:
        stream.feed(text.encode("utf-8", "surrogateescape") + b"\n")
    stream.close()
    return writer
