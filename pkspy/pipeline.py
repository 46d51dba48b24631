"""bytes -> lines -> parser -> redacted events: the one path every front end reads.

Front ends call ``open_events`` and never see a secret unless they asked for
``reveal``. In follow mode the stream yields ``CAUGHT_UP`` each time it has
read everything written so far, so a front end knows when the backlog ends.
"""

from __future__ import annotations

import itertools
import os
import stat
from collections.abc import Iterator
from typing import BinaryIO

from pkspy import formats
from pkspy.model import Event
from pkspy.redact import Redactor
from pkspy.sources import NotATrace, SourceError, follow_lines, open_trace, read_lines

CAUGHT_UP = None
HEAD_LINES = 200
SPY = "pkcs11-spy"  # read with record_memo (imported when one is read)


def _detect_or_fail(path: str, head: list[str], fmt: str | None) -> str:
    if fmt is not None:
        if fmt not in formats.PARSERS:
            raise SourceError(f"unknown format {fmt!r}; known: {', '.join(formats.names())}")
        return fmt
    found = formats.detect(head)
    if found is None:
        if not any(line.strip() for line in head):
            raise NotATrace(f"{path}: empty, no trace in it")
        raise NotATrace(f"{path}: not a trace format pkspy knows "
                        f"({', '.join(formats.names())}); --format forces one")
    return found


def open_events(path: str, fmt: str | None = None, follow: bool = False,
                reveal: bool = False, notices: list[str] | None = None,
                stop=None, redactor: Redactor | None = None, copies: bool = True
                ) -> tuple[str, Iterator[Event | None]]:
    """The format and the redacted events of one trace.

    ``redactor`` lets a caller keep the one that redacts (to learn what it
    masked); ``reveal`` asks for no redaction at all. ``copies``: a spy log file
    is read with ``record_memo`` (the same events, records read before copied);
    False feeds the parser every line (the reference the tests compare with).
    Raises SourceError (a one-line message) for a missing file, a directory,
    or a file that is not a trace.
    """
    redact = redactor if redactor is not None else Redactor(reveal=reveal)
    if follow and is_fifo(path):
        follow = False  # a FIFO is read as it comes, to its writer's end: nothing to follow
    if follow and path != "-":
        if os.path.exists(path):
            open_trace(path).close()  # refuse directories and devices at once
        lines = follow_lines(path, notices=notices, stop=stop, idle_marker=True)
        head: list[str] = []
        buffered: list[tuple[str, int] | None] = []
        for item in lines if fmt is None else ():
            if item is CAUGHT_UP:
                if any(t.strip() for t in head):  # detect from what there is so far
                    buffered.append(item)
                    break
                continue  # nothing written yet: wait
            buffered.append(item)
            head.append(item[0])
            if len(head) >= HEAD_LINES:
                break
        fmt = _detect_or_fail(path, head, fmt)
        source = itertools.chain(buffered, lines)
        return fmt, _events(source, fmt, redact)
    stream = open_trace(path)
    lines_iter = read_lines(stream)
    head_items = list(itertools.islice(lines_iter, HEAD_LINES))
    fmt = _detect_or_fail(path, [t for t, _ in head_items], fmt)
    if copies and fmt == SPY and path != "-" and stream.seekable():
        return fmt, _spy_events(stream, redact)
    return fmt, _events(itertools.chain(head_items, lines_iter), fmt, redact)


def is_fifo(path: str) -> bool:
    try:
        return stat.S_ISFIFO(os.stat(path).st_mode)
    except OSError:
        return False


def _spy_events(stream: BinaryIO, redact: Redactor) -> Iterator[Event]:
    """A spy log file, each record text parsed once (``record_memo``): the same events."""
    from pkspy.record_memo import TO_END, MemoReader

    parser = formats.PARSERS[SPY]()
    with stream:
        yield from MemoReader(parser, redact).events(stream, 0, TO_END, 1)
    yield from map(redact, parser.close())


def _events(lines, fmt: str, redact: Redactor) -> Iterator[Event | None]:
    parser = formats.PARSERS[fmt]()
    lineno = 0
    for item in lines:
        if item is CAUGHT_UP:
            yield CAUGHT_UP
            continue
        lineno += 1
        text, offset = item
        for event in parser.feed(text, lineno, offset):
            yield redact(event)
    for event in parser.close():
        yield redact(event)
