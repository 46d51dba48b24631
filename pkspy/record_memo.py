"""A pkcs11-spy log read with each distinct record text parsed once.

Long traces repeat themselves: a service polls C_GetSlotList and
C_GetTokenInfo for hours, a client reads the same attributes of the same
objects in every run, and pkcs11-spy prints them with the same pointers.
Records differ in their number and time stamp and are often equal after them.
So the file is read a block at a time and cut at blank lines (the spy ends
each record with one), and a record whose text after its first two lines was
read before gets a copy of that record's redacted event, with its own number,
time, line numbers and offset. Everything else goes through the full parser
line by line. ``pipeline.open_events`` reads spy log files this way, and
``fastscan`` each chunk of a summary.

Why a copy is the event the parser would make. The parser's output for a
record depends only on its lines and on the parser's state when it begins;
a copy is made only when that state is the one it had when the original was
read, and only of an original whose reading showed that it was a single
clean call:

* the parser was between records (no record open, no torn call waiting for
  its result, no line cut by another thread, the run's banner flushed) before
  and after it, and it made exactly one call: not torn, not cut short, no
  problem noted, its time taken from its second line (so that line was the
  stamp, and a stamp in the copy's second line is read the same way);
* the class the parser knew for the record's object handle (which decides
  whether a CKA_VALUE is a secret) is the same; what the record taught the
  parser about object classes is applied again;
* the redactor knew the same secrets and learned none from it, so its masks
  and its sweep for copies of secrets come out the same.

How the file is cut changes only how often a copy is made, never what it is.
A copy's raw lines are its own first two (swept for known secrets, as the
redactor sweeps every line) and the original's redacted others, which are the
same text. No copy is made for a redactor that reports each line it masks
(``pkspy redact`` writes them out): it would not hear of the copies' lines.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from pkspy.formats.spy import SpyParser, _learn_classes
from pkspy.model import Event, Pkcs11Call
from pkspy.redact import Redactor
from pkspy.sources import _text, decode, read_lines

# A call's header and stamp lines (spy.HEADER and spy.STAMP, ASCII only): a line
# this matches, the parser's patterns match with the same groups.
HEAD = re.compile(rb"(\d+)(: (?:C_\w+|SetOperationState))[ \t\r\f\v]*\n"
                  rb"(?:P:(\d+); T:(?:0x)?(\d+) )?"
                  rb"(\d{1,4}-\d{1,2}-\d{1,2} \d{2}:\d{2}:\d{2}\.\d{3})[ \t\r\f\v]*\n")
# pkcs11-spy ends every record with a blank line: where the file is cut in pieces
# (CRLF where the first line ends so: the spy on Windows).
GAP = b"\n\n"
CRLF_GAP = b"\r\n\r\n"
READ = 1 << 20  # bytes read at a time
TO_END = 1 << 62  # an end offset that reads to the end of the file, as it is then
HELD = 4 * READ  # no blank line in this many bytes: the rest is read line by line
MEMO_ENTRIES = 8192  # distinct records kept
MEMO_BYTES = 4 << 20  # of their text: with their events, tens of MB whatever the trace's size
VARIANTS = 4  # of one text, read with different object classes known
MEMO_RECORD = 16 << 10  # longer records (certificates, big dumps) are parsed each time


@dataclass(slots=True)
class _Seen:
    call: Pkcs11Call  # the redacted event of the first record with this text
    lines: int  # its last line, counted from its first
    newlines: int  # in its piece and the blank line after it
    secrets: int  # how many secrets the redactor knew
    handle: int | None  # its hObject
    known_class: int | None  # the class the parser knew for that handle before it
    classes: tuple[tuple[int, int], ...]  # what it taught the parser
    raw: list[str]  # its redacted lines after the stamp


class MemoReader:
    """Reads a byte range of a spy log into redacted events: ``events`` yields them,
    then ``next_line`` is the number of the line after the range. ``raw``: whether
    copies carry raw lines (the summary does not show them)."""

    def __init__(self, parser: SpyParser, redact: Redactor, raw: bool = True) -> None:
        self.parser = parser
        self.redact = redact
        self.raw = raw
        self.copying = redact.on_change is None
        self.memo: dict[bytes, list[_Seen]] = {}
        self.held = 0  # bytes of record text in the memo
        self.copies = 0
        self.next_line = 0
        self.gap = GAP
        self._out: list[Event] = []

    def events(self, f, start: int, end: int, first_line: int) -> Iterator[Event]:
        """The events of bytes start..end (start at a line start) of ``f``."""
        lineno = first_line
        out = self._out
        f.seek(start)
        first = f.readline(READ)
        gap = self.gap = CRLF_GAP if first.endswith(b"\r\n") else GAP
        for base, block in _blocks(f, start, end, gap):
            if block is None:  # no blank line for megabytes: a huge line, not a spy log
                yield from self._feed_lines(f, base, end, lineno)
                return
            pieces = block.split(gap)  # each piece, then the blank line after it
            last = pieces.pop()  # what follows the last blank line: no blank line after it
            at = base
            for piece in pieces:
                n = self._copy(piece, at, lineno)
                if n is None:
                    n = self._feed(piece + gap, at, lineno)
                lineno += n
                at += len(piece) + len(gap)
                if out:
                    yield from out
                    out.clear()
            if last:
                lineno += self._feed(last, at, lineno)
                yield from out
                out.clear()
        self.next_line = lineno

    # -- one piece -----------------------------------------------------

    def _copy(self, piece: bytes, offset: int, lineno: int) -> int | None:
        """The record in ``piece``, copied or read and kept: the newlines it and the gap
        after it hold; None if it is neither (it is then fed to the parser)."""
        p = self.parser
        if p._rec is not None or p._unresolved or p._cut is not None or p.process < 0 \
                or len(piece) > MEMO_RECORD or not self.copying:
            return None
        head = HEAD.match(piece)
        if head is None:
            return None
        if p._start is not None:  # what the header line does first: the run's banner goes
            starts: list[Event] = []
            p._flush_start(starts)
            self._out += map(self.redact, starts)
        # the function's name, and all after the stamp line
        key = head.group(2) + piece[head.end() - 1:]
        secrets = self.redact.known
        for seen in self.memo.get(key, ()):
            if seen.secrets == secrets and (seen.handle is None
                                            or p._classes.get(seen.handle) == seen.known_class):
                break
        else:
            return self._read_and_keep(piece, offset, lineno, key)
        seq, _, pid, tid, time = head.groups()
        old = seen.call
        call = Pkcs11Call(line=lineno, end_line=lineno + seen.lines, offset=offset,
                          process=p.process, time=time.decode(), function=old.function,
                          seq=int(seq), args=old.args, rv=old.rv, rv_text=old.rv_text)
        if pid:
            call.pid = int(pid)
            call.tid = tid.decode()
        if seen.classes:
            p._classes.update(seen.classes)
        if self.raw:
            nl = piece.find(b"\n")
            lines = [decode(piece[:nl]), decode(piece[nl + 1:head.end() - 1])]
            if self.redact.known:  # as Redactor._sweep_event sweeps every line
                lines = [self.redact.sweep_text(line) for line in lines]
            call.raw = lines + seen.raw
        self.copies += 1
        self._out.append(call)
        return seen.newlines

    def _read_and_keep(self, piece: bytes, offset: int, lineno: int, key: bytes) -> int:
        """Reads the record with the full parser; keeps it if it can be copied."""
        p = self.parser
        secrets = self.redact.known
        lines = _split(piece + self.gap)
        events = self._parse(lines, offset, lineno)
        call = events[0] if len(events) == 1 else None
        handle = known = None
        # one clean call, its header on the first line and its stamp on the second
        clean = (isinstance(call, Pkcs11Call) and call.line == lineno and call.time is not None
                 and not call.torn and not call.incomplete and not call.problems
                 and call.rv is not None and p._rec is None and not p._unresolved
                 and p._cut is None)
        learned: dict[int, int] = {}
        if clean:
            _learn_classes(call, learned)
            h = call.arg("hObject")
            if h is not None and isinstance(h.value, int) and h.value not in learned:
                # its secrets were judged by what the parser knew of the handle before
                handle, known = h.value, p._classes.get(h.value)
        self._out += map(self.redact, events)
        if clean and self.redact.known == secrets:
            # the variants of this text still valid, and this one
            variants = [v for v in self.memo.get(key, ()) if v.secrets == secrets]
            if variants or (len(self.memo) < MEMO_ENTRIES and self.held < MEMO_BYTES):
                self.held += 0 if variants else len(key)
                self.memo[key] = [*variants[:VARIANTS - 1], _Seen(
                    call, call.end_line - call.line, len(lines), secrets, handle, known,
                    tuple(learned.items()), call.raw[2:])]
        return len(lines)

    def _parse(self, lines: list[bytes], offset: int, lineno: int) -> list[Event]:
        """The parser's (unredacted) events of these lines, the first at ``offset``."""
        events: list[Event] = []
        for n, raw in enumerate(lines):
            events += self.parser.feed(_text(raw), lineno + n, offset)
            offset += len(raw) + 1
        return events

    def _feed(self, data: bytes, offset: int, lineno: int) -> int:
        """Lines to the parser as they are; returns how many."""
        lines = _split(data)
        self._out += map(self.redact, self._parse(lines, offset, lineno))
        return len(lines)

    def _feed_lines(self, f, start: int, end: int, lineno: int) -> Iterator[Event]:
        """The rest, line by line as ``sources.read_lines`` cuts them."""
        f.seek(start)
        for text, offset in read_lines(f, start):
            if offset >= end:
                break
            yield from map(self.redact, self.parser.feed(text, lineno, offset))
            lineno += 1
        self.next_line = lineno


def _split(data: bytes) -> list[bytes]:
    """The lines of ``data``, without their newlines (the last may have none)."""
    lines = data.split(b"\n")
    if lines[-1] == b"":
        lines.pop()
    return lines


def _blocks(f, start: int, end: int, gap: bytes) -> Iterator[tuple[int, bytes | None]]:
    """(offset, bytes) from start to end, about READ bytes at a time, each ending with a
    blank line but the last; (offset, None) where HELD bytes go by with no blank line
    (the caller reads on from there line by line)."""
    f.seek(start)
    base, buf = start, b""
    while base + len(buf) < end:
        more = f.read(min(READ, end - base - len(buf)))
        if not more:
            break
        buf += more
        if base + len(buf) >= end:
            break
        cut = buf.rfind(gap) + len(gap)
        if cut >= len(gap):
            yield base, buf[:cut]
            base, buf = base + cut, buf[cut:]
        elif len(buf) >= HELD:
            yield base, None
            return
    if buf:
        yield base, buf
