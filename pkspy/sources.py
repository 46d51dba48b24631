"""Where lines come from: a file, stdin, or a file followed as it grows.

Traces are read as bytes and decoded per line as UTF-8 with backslash escapes
for anything else, so a label cut inside a UTF-8 sequence or a non-UTF-8
reader name shows up as ``\\xNN`` instead of stopping the read. Each line is
yielded with its byte offset; the newline and one ``\\r`` (Windows text mode)
are stripped. A line longer than MAX_LINE is cut there and marked: the rest is
skipped unread into memory, so a file with no newline cannot eat it.
"""

from __future__ import annotations

import itertools
import operator
import os
import stat
import time
from collections.abc import Callable, Iterator
from typing import BinaryIO

from pkspy import errors

Line = tuple[str, int]  # (text, byte offset of the line's start)

CHUNK = 1 << 20
# No tracer writes a line near this: the longest real ones are pcsc-spy's hex of an
# extended APDU (3 x 65544 bytes); OpenSC's log lines stop at 4 KiB before 0.22.
MAX_LINE = 1 << 20
CUT_MARK = "… [pkspy: line longer than 1 MiB, the rest skipped]"


class SourceError(Exception):
    """A trace that cannot be read: the message is meant for the user, on one line."""

    exit_code = errors.USAGE


class NotATrace(SourceError):
    """A file that reads but holds no trace pkspy knows."""

    exit_code = errors.NOT_A_TRACE


def decode(raw: bytes) -> str:
    if raw.endswith(b"\n"):
        raw = raw[:-1]
    if raw.endswith(b"\r"):
        raw = raw[:-1]
    return raw.decode("utf-8", "backslashreplace")


def _text(raw: bytes) -> str:
    """A line as text, cut and marked when it is longer than any trace line."""
    if raw.endswith(b"\n"):
        raw = raw[:-1]
    if len(raw) > MAX_LINE:
        return raw[:MAX_LINE].decode("utf-8", "backslashreplace") + CUT_MARK
    return decode(raw)


_NOT_FILES = ((stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
              (stat.S_ISSOCK, "a socket"))


def open_trace(path: str) -> BinaryIO:
    """Open a trace file for reading, with one-line errors for the usual mistakes."""
    if path == "-":
        import sys

        return sys.stdin.buffer
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise SourceError(f"{path}: no such file") from None
    except OSError as e:
        raise SourceError(f"{path}: {e.strerror}") from None
    if stat.S_ISDIR(st.st_mode):
        raise SourceError(f"{path}: is a directory, not a trace file")
    if not (stat.S_ISREG(st.st_mode) or stat.S_ISFIFO(st.st_mode)):
        # /dev/zero and the like never end: refused before a byte is read
        kind = next((k for test, k in _NOT_FILES if test(st.st_mode)), "not a file")
        link = f" (a link to {os.path.realpath(path)})" if os.path.islink(path) else ""
        raise SourceError(f"{path}{link}: {kind}, not a regular file or FIFO")
    try:
        return open(path, "rb")
    except OSError as e:
        raise SourceError(f"{path}: {e.strerror}") from None


def raw_lines(stream: BinaryIO) -> Iterator[tuple[bytes, int]]:
    """Each line's bytes and its size in the stream. A line longer than MAX_LINE
    comes cut there and marked; the rest of it is skipped, never held whole."""
    readline = stream.readline
    while raw := readline(MAX_LINE + 1):
        size = len(raw)
        if size > MAX_LINE and not raw.endswith(b"\n"):
            while (more := readline(CHUNK)) and not more.endswith(b"\n"):
                size += len(more)
            size += len(more)
            raw = raw[:MAX_LINE] + CUT_MARK.encode() + (b"\n" if more else b"")
        yield raw, size


def read_lines(stream: BinaryIO, offset: int = 0) -> Iterator[Line]:
    """Every line of a stream to its end; a last line without newline included.

    The lines ``raw_lines`` gives, decoded, read a block at a time: a block of
    ASCII (most traces) is decoded and split at once. ``read1`` returns what a
    pipe holds, so a line from a live writer comes as soon as its newline does.
    """
    read = getattr(stream, "read1", None) or stream.read
    pending = b""  # the start of a line whose newline has not come yet
    skipping = False  # in the rest of a line cut at MAX_LINE, up to its newline
    while chunk := read(CHUNK):  # CHUNK <= MAX_LINE: a line within a chunk is never cut
        if skipping:
            nl = chunk.find(b"\n")
            if nl < 0:
                offset += len(chunk)
                continue
            offset += nl + 1
            chunk = chunk[nl + 1:]
            skipping = False
        last = chunk.rfind(b"\n")
        if last < 0:
            pending += chunk
        else:
            start = 0
            if pending:  # the line that began in an earlier chunk
                first = chunk.find(b"\n")
                line = pending + chunk[:first]
                yield (_cut(line) if len(line) > MAX_LINE else decode(line)), offset
                offset += len(line) + 1
                start = first + 1
            if start <= last:
                block = chunk[start:last]
                yield from _block_lines(block, offset)
                offset += len(block) + 1
            pending = chunk[last + 1:]
        if len(pending) > MAX_LINE:  # no newline yet: cut here, the rest skipped unread
            yield _cut(pending), offset
            offset += len(pending)
            pending, skipping = b"", True
    if pending:
        yield decode(pending), offset


def _cut(raw: bytes) -> str:
    """A line longer than MAX_LINE (without its newline), cut and marked as ``raw_lines`` does."""
    return (raw[:MAX_LINE] + CUT_MARK.encode()).decode("utf-8", "backslashreplace")


def _block_lines(block: bytes, offset: int) -> Iterator[Line]:
    """The lines of block (lines joined by newlines, the last one's left off) as
    ``decode`` gives them, each with its offset; the loop over lines runs in C."""
    if block.isascii():
        lines = block.decode("ascii").split("\n")
        texts = [t[:-1] if t[-1:] == "\r" else t for t in lines] if b"\r" in block else lines
    else:
        raws = block.split(b"\n")
        lines, texts = raws, [decode(raw) for raw in raws]
    # offset of line i: offset + the sizes of the lines before it + i newlines
    starts = map(operator.add, itertools.accumulate(map(len, lines), initial=offset),
                 itertools.count())
    return zip(texts, starts, strict=False)  # starts runs on past the last line


def follow_lines(path: str, start: int = 0, poll: float = 0.05,
                 notices: list[str] | None = None,
                 stop: Callable[[], bool] | None = None,
                 idle_marker: bool = False) -> Iterator[Line | None]:
    """Lines of a file as it grows, like ``tail -F``.

    Survives truncation (copytruncate: read again from the start) and
    replacement (logrotate's create: finish the old file, then read the new
    one from its start). A partial last line is held until its newline comes.
    ``notices`` collects what happened to the file, for the caller to show.
    ``stop`` is polled while waiting; when it returns true the generator ends.
    With ``idle_marker``, None is yielded each time everything written so far
    has been read.
    """
    def note(msg: str) -> None:
        if notices is not None:
            notices.append(msg)

    f: BinaryIO | None = None
    pos = 0
    pending = b""
    pending_at = 0
    skipping = False
    gone = False
    while True:
        if f is None:
            try:
                f = open(path, "rb")  # noqa: SIM115 - kept open across yields
                ino = os.fstat(f.fileno()).st_ino
                f.seek(start)
                pos = start
                start = 0
                pending = b""
                pending_at = pos
                skipping = False
            except FileNotFoundError:
                if idle_marker:
                    yield None
                if stop is not None and stop():
                    return
                time.sleep(poll)
                continue
        chunk = f.read(CHUNK)
        if chunk:
            pos += len(chunk)
            if skipping:  # the rest of a line cut at MAX_LINE, up to its newline
                nl = chunk.find(b"\n")
                pending_at += len(chunk) if nl < 0 else nl + 1
                if nl < 0:
                    continue
                chunk, skipping = chunk[nl + 1:], False
            data = pending + chunk
            base = pending_at
            lines = data.split(b"\n")
            pending = lines.pop()
            for raw in lines:
                yield _text(raw), base
                base += len(raw) + 1
            pending_at = base
            if len(pending) > MAX_LINE:  # a writer that never ends its line
                yield _text(pending), pending_at
                pending_at += len(pending)
                pending, skipping = b"", True
            continue
        # at the end: has the file been truncated, replaced or deleted?
        try:
            st = os.stat(path)
        except FileNotFoundError:
            st = None
        if (st is None) != gone:  # once each way: deleted, then back (as "replaced")
            gone = st is None
            if gone:
                note(f"{path}: deleted; waiting for it to be created again")
        if st is not None and st.st_ino != ino:
            note(f"{path}: replaced; reading the new file")
            if pending:
                yield decode(pending), pending_at
            f.close()
            f = None
            continue
        if st is not None and st.st_size < pos:
            note(f"{path}: truncated; reading from the start")
            f.seek(0)
            pos = 0
            pending = b""
            pending_at = 0
            skipping = False
            continue
        if idle_marker:
            yield None
        if stop is not None and stop():
            if pending:
                yield decode(pending), pending_at
            return
        time.sleep(poll)
