"""The timeline's index: one row per shown event, built lazily in the background.

No Textual here. ``Rows`` keeps, per row, a few numbers in arrays (file, line,
flags, process, session, function) and the one-line text; the texts are
zlib-compressed by blocks of ``BLOCK`` rows, and the (already redacted) events
are pickled and compressed by the same blocks into an unlinked temporary file,
so memory stays small on a 1 GB trace and the detail pane can still show every
argument and raw line of any row. ``Indexer`` drives ``open_events`` for each
file: it fills ``Rows`` and one ``Analysis`` per file.
"""

from __future__ import annotations

import bisect
import io
import os
import pickle
import tempfile
import threading
import time
import zlib
from array import array
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, fields, is_dataclass
from operator import attrgetter

from pkspy import model
from pkspy.analysis import Analysis
from pkspy.formats.opensc_debug import OpenscDebugParser
from pkspy.formats.spy import SpyParser
from pkspy.link import link_paths
from pkspy.merge import labels, open_merged
from pkspy.model import ApduExchange, Event, PcscCall, Pkcs11Call, ProcessStart, Unparsed
from pkspy.pipeline import CAUGHT_UP, open_events
from pkspy.report.lines import format_event, is_failure, is_shown

BLOCK = 256
CACHED_BLOCKS = 16
# Linking reads a spy log and a debug log again, all in memory: not past this.
LINK_MAX_BYTES = 200_000_000

# flags
FAILED = 1  # a call, exchange or PC/SC call that returned an error: red
WARNING = 2  # torn, cut short, not parsed: yellow
PROCESS = 4  # a process start: dim
FAILURE = FAILED | WARNING

NONE = (1 << 64) - 1  # no session, no object (handles are CK_ULONG: any 64-bit value)
# Arguments whose value is an object handle, as the tracers name them.
OBJECT_ARGS = frozenset({
    "hObject", "hKey", "hBaseKey", "hWrappingKey", "hUnwrappingKey", "hPublicKey",
    "hPrivateKey", "*phObject", "*phNewObject", "*phKey", "hNewKey",
})
KINDS = {k: i for i, k in enumerate(("event", "call", "apdu", "pcsc", "debug", "process",
                                     "unparsed"))}


def row_flags(event: Event) -> int:
    if isinstance(event, ProcessStart):
        return PROCESS | (WARNING if event.errors else 0)
    if not is_failure(event):
        return 0
    if isinstance(event, Pkcs11Call) and event.rv not in (None, 0):
        return FAILED
    if isinstance(event, (ApduExchange, PcscCall)) and not getattr(event, "incomplete", False):
        return FAILED
    if isinstance(event, Unparsed) or getattr(event, "incomplete", False):
        return WARNING
    return FAILED if getattr(event, "error", None) is not None else WARNING


def _handle(value: object) -> int | None:
    return value if isinstance(value, int) and 0 <= value < NONE else None


def handles_of(event: Event) -> tuple[int, tuple[int, ...]]:
    """The session a call names (its first hSession, else its first *phSession; NONE)
    and the object handles it names, in order: one pass over the arguments."""
    if not isinstance(event, Pkcs11Call):
        return NONE, ()
    session = returned = None  # the first hSession and *phSession arguments
    found: list[int] = []
    for arg in event.args:
        name, value = arg.name, arg.value
        if name == "hSession" and session is None:
            session = arg
        elif name == "*phSession" and returned is None:
            returned = arg
        if name in OBJECT_ARGS and _handle(value) is not None:
            found.append(value)
        elif arg.kind == "objects" and isinstance(value, list):
            found.extend(v for v in value if _handle(v) is not None)
    for arg in (session, returned):
        h = _handle(arg.value) if arg is not None else None
        if h is not None:
            return h, tuple(found)
    return NONE, tuple(found)


# The spill pickles the model's slotted dataclasses as (class, field values): about
# twice as fast as pickle's default for slots, which builds a dict per object.
def _rebuilt(cls: type, values: tuple) -> object:
    obj = object.__new__(cls)
    for name, value in zip(_FIELDS[cls], values, strict=True):
        object.__setattr__(obj, name, value)  # frozen ones (Redacted) too
    return obj


_FIELDS = {cls: tuple(f.name for f in fields(cls)) for cls in vars(model).values()
           if isinstance(cls, type) and is_dataclass(cls) and cls.__module__ == model.__name__
           and "__slots__" in vars(cls)}


def _reducer(cls: type) -> Callable[[object], tuple]:
    values = attrgetter(*_FIELDS[cls])
    if len(_FIELDS[cls]) == 1:
        return lambda obj: (_rebuilt, (cls, (values(obj),)))
    return lambda obj: (_rebuilt, (cls, values(obj)))


_REDUCERS = {cls: _reducer(cls) for cls in _FIELDS}


class _Spill:
    """Compressed blocks of pickled events in an unlinked temporary file."""

    def __init__(self) -> None:
        self._file = tempfile.TemporaryFile(prefix="pkspy-view-")  # noqa: SIM115
        self._where: list[tuple[int, int]] = []
        self._end = 0

    def append(self, events: list[Event]) -> None:
        buffer = io.BytesIO()
        pickler = pickle.Pickler(buffer, pickle.HIGHEST_PROTOCOL)
        pickler.dispatch_table = _REDUCERS
        pickler.dump(events)
        data = zlib.compress(buffer.getbuffer(), 1)
        os.pwrite(self._file.fileno(), data, self._end)
        self._where.append((self._end, len(data)))
        self._end += len(data)

    def get(self, block: int) -> list[Event]:
        at, length = self._where[block]
        return pickle.loads(zlib.decompress(os.pread(self._file.fileno(), length, at)))

    def close(self) -> None:
        self._file.close()


class Rows:
    """Append-only rows of the timeline; one writer thread, readers in the UI."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.file = array("B")
        self.line = array("I")
        self.flags = array("B")
        self.kind = array("B")
        self.process = array("i")
        self.session = array("Q")
        self.function = array("H")
        self.functions: list[str] = [""]
        self._function_ids: dict[str, int] = {"": 0}
        self.object = array("Q")  # the first object handle a row names, or NONE
        self.more_objects: dict[int, tuple[int, ...]] = {}  # rows that name several
        self.per_session: Counter[tuple[int, int, int]] = Counter()  # (file, process, session)
        self._texts: list[bytes] = []  # compressed, "\n"-joined, one per full block
        self._open_texts: list[str] = []
        self._open_events: list[Event] = []
        self._spill = _Spill()
        self._text_cache: OrderedDict[int, list[str]] = OrderedDict()
        self._event_cache: OrderedDict[int, list[Event]] = OrderedDict()
        self.width = 0  # the longest text seen, for horizontal scrolling
        # per file: (lines, rows) of its rows, split from the others when first asked
        self._split: dict[int, tuple[array, array]] = {}
        self._split_upto = 0
        self._single_upto = 0  # rows known to be all of file 0
        self.n = 0  # rows complete; readers look no further

    def __len__(self) -> int:
        return self.n

    def add(self, file: int, event: Event) -> int:
        text = format_event(event).replace("\n", " ")
        func = getattr(event, "function", None) or ""
        fid = self._function_ids.get(func)
        if fid is None:
            fid = self._function_ids[func] = len(self.functions)
            self.functions.append(func)
        process = event.process if event.process is not None else -1
        session, handles = handles_of(event)
        flags, kind = row_flags(event), KINDS.get(event.kind, 0)
        with self._lock:
            row = self.n
            self.file.append(file)
            self.line.append(event.line)
            self.flags.append(flags)
            self.kind.append(kind)
            self.process.append(process)
            self.session.append(session)
            self.function.append(fid)
            self.object.append(handles[0] if handles else NONE)
            if len(handles) > 1:
                self.more_objects[row] = handles
            if session != NONE:
                self.per_session[(file, process, session)] += 1
            self._open_texts.append(text)
            self._open_events.append(event)
            if len(text) > self.width:
                self.width = len(text)
            self.n = row + 1
        if len(self._open_texts) == BLOCK:  # compressed outside the lock: readers go on
            texts, events = self._open_texts, self._open_events
            packed = zlib.compress("\n".join(texts).encode(), 1)
            self._spill.append(events)  # before the block counts as full
            with self._lock:
                self._texts.append(packed)
                self._open_texts, self._open_events = [], []
        return row

    def _block_texts(self, block: int) -> list[str]:
        with self._lock:
            if block >= len(self._texts):
                return self._open_texts
            cached = self._text_cache.get(block)
            if cached is None:
                cached = zlib.decompress(self._texts[block]).decode().split("\n")
                self._text_cache[block] = cached
                if len(self._text_cache) > CACHED_BLOCKS:
                    self._text_cache.popitem(last=False)
            else:
                self._text_cache.move_to_end(block)
            return cached

    def text(self, row: int) -> str:
        return self._block_texts(row // BLOCK)[row % BLOCK]

    def event(self, row: int) -> Event:
        block = row // BLOCK
        with self._lock:
            if block >= len(self._texts):
                return self._open_events[row % BLOCK]
            events = self._event_cache.get(block)
            if events is None:
                events = self._event_cache[block] = self._spill.get(block)
                if len(self._event_cache) > 4:
                    self._event_cache.popitem(last=False)
            return events[row % BLOCK]

    def _of_file(self, file: int) -> tuple[array, array | None]:
        """The lines of one file's rows and their row numbers (None: the rows are all
        of that file). Split from the others when first asked, for merged files."""
        n = self.n
        if not self._split and not any(self.file[self._single_upto:n]):  # still one file
            self._single_upto = n
            return (self.line, None) if file == 0 else (array("I"), array("l"))
        for r in range(self._split_upto, n):
            lines, rows = self._split.setdefault(self.file[r], (array("I"), array("l")))
            lines.append(self.line[r])
            rows.append(r)
        self._split_upto = n
        return self._split.get(file, (array("I"), array("l")))

    def at_line(self, file: int, line: int) -> int | None:
        """The row whose event starts at a line of a file, or the last one before it."""
        lines, rows = self._of_file(file)
        n = len(lines) if rows is not None else self.n

        def row(i: int) -> int:
            return rows[i] if rows is not None else i

        # A file's rows come in line order but for records torn by threads: look
        # around where the line would be first, then everywhere.
        i = bisect.bisect_right(lines, line, 0, n) - 1
        best, best_line = None, -1
        for j in range(max(i - 64, 0), min(i + 64, n)):
            if best_line < lines[j] <= line:
                best, best_line = j, lines[j]
        if best is not None and (best_line == line or i + 64 >= n or lines[i + 64] > line):
            return row(best)
        for j in range(n):
            if best_line < lines[j] <= line:
                best, best_line = j, lines[j]
        return row(best) if best is not None else None

    def block_contains(self, block: int, needle: str) -> bool:
        """Whether any text of a block holds needle (lower case): a quick skip for search."""
        return needle in "\n".join(self._block_texts(block)).lower()

    def close(self) -> None:
        self._spill.close()


# -- views: the rows a filter lets through ------------------------------------

Predicate = Callable[[int], bool]


@dataclass
class Filter:
    """What the timeline shows; every field set narrows it."""

    errors: bool = False
    file: int | None = None
    process: int | None = None
    session: int | None = None
    object: int | None = None
    function: str | None = None
    kind: str | None = None  # an event kind: "apdu", "call", "pcsc", "debug"...

    def active(self) -> bool:
        return any((self.errors, self.file is not None, self.process is not None,
                    self.session is not None, self.object is not None, self.function,
                    self.kind))

    def describe(self, files: int = 1) -> str:
        """What the filter lets through, in a few words: 'errors, p1 session 0x1'."""
        parts = ["errors"] if self.errors else []
        if self.file is not None and files > 1:
            parts.append(f"file {self.file + 1}")
        if self.process is not None:
            parts.append(f"p{self.process}")
        if self.session is not None:
            parts.append(f"session 0x{self.session:x}")
        if self.object is not None:
            parts.append(f"object 0x{self.object:x}")
        if self.function:
            parts.append(self.function)
        if self.kind:
            parts.append(f"{self.kind}s")
        return " ".join(parts)

    def predicate(self, rows: Rows) -> Predicate | None:
        tests: list[Predicate] = []
        if self.errors:
            tests.append(lambda r: rows.flags[r] & FAILURE)
        if self.file is not None:
            tests.append(lambda r: rows.file[r] == self.file)
        if self.process is not None:
            tests.append(lambda r: rows.process[r] == self.process)
        if self.session is not None:
            tests.append(lambda r: rows.session[r] == self.session)
        if self.object is not None:
            tests.append(lambda r: rows.object[r] == self.object
                         or self.object in rows.more_objects.get(r, ()))
        if self.function:
            fid = rows.functions.index(self.function) if self.function in rows.functions else -1
            tests.append(lambda r: rows.function[r] == fid)
        if self.kind:
            kind = KINDS.get(self.kind, -1)
            tests.append(lambda r: rows.kind[r] == kind)
        if not tests:
            return None
        return lambda r: all(t(r) for t in tests)


class View:
    """The rows of one filter, in order; caught up with the index on demand."""

    def __init__(self, rows: Rows, filter: Filter | None = None,
                 predicate: Predicate | None = None) -> None:
        self.rows = rows
        self.filter = filter or Filter()
        self._test = predicate if predicate is not None else self.filter.predicate(rows)
        self._picked = array("l")
        self._seen = 0

    def update(self) -> int:
        """Take in the rows indexed since the last call; the number of rows now."""
        n = self.rows.n
        if self._test is None:
            self._seen = n
            return n
        test, picked = self._test, self._picked
        for r in range(self._seen, n):
            if test(r):
                picked.append(r)
        self._seen = n
        return len(picked)

    def __len__(self) -> int:
        return self._seen if self._test is None else len(self._picked)

    def row(self, pos: int) -> int:
        return pos if self._test is None else self._picked[pos]

    def position(self, row: int) -> int | None:
        """Where a row stands in this view, or None when the filter hides it."""
        if self._test is None:
            return row if row < self._seen else None
        i = bisect.bisect_left(self._picked, row)
        return i if i < len(self._picked) and self._picked[i] == row else None

    def nearest(self, row: int) -> int:
        """The position of the row, or of the first shown row after it."""
        if self._test is None:
            return min(row, max(self._seen - 1, 0))
        return min(bisect.bisect_left(self._picked, row), max(len(self._picked) - 1, 0))

    def find(self, needle: str, start: int, step: int = 1) -> int | None:
        """The next position from start (included) whose text holds needle, any case."""
        needle = needle.lower()
        count = len(self)
        pos = start
        skipped: dict[int, bool] = {}
        while 0 <= pos < count:
            row = self.row(pos)
            block = row // BLOCK
            hit = skipped.get(block)
            if hit is None:
                hit = skipped[block] = self.rows.block_contains(block, needle)
            if hit and needle in self.rows.text(row).lower():
                return pos
            pos += step
        return None

    def next_flagged(self, start: int, step: int = 1, flags: int = FAILURE) -> int | None:
        pos = start
        while 0 <= pos < len(self):
            if self.rows.flags[self.row(pos)] & flags:
                return pos
            pos += step
        return None


# -- the indexer ---------------------------------------------------------------

Stream = Iterator[tuple[int, Event | None]]  # (file index, event); (-1, CAUGHT_UP)


@dataclass
class Trace:
    """One file being read. ``stream`` is the events of every trace opened with it,
    each with its file's index: several files are merged by time (``merge``)."""

    path: str
    format: str
    stream: Stream
    label: str = ""  # the short name that marks the file's rows
    analysis: Analysis = field(default_factory=Analysis)
    size: int = 0
    read: int = 0  # byte offset reached
    done: bool = False
    events_seen: int = 0


def _numbered(events: Iterator[Event | None]) -> Stream:
    for event in events:
        yield (-1, event) if event is CAUGHT_UP else (0, event)


def open_traces(paths: list[str], fmt: str | None = None, follow: bool = False,
                stop: Callable[[], bool] | None = None, reveal: bool = False,
                notices: list[str] | None = None) -> list[Trace]:
    """Open every file (SourceError for the first that cannot be read); ``reveal``
    turns redaction off (--reveal-secrets). ``notices`` collects what the reading
    has to say (a trace dated from another, a file replaced while followed)."""
    if len(paths) == 1:
        found, events = open_events(paths[0], fmt=fmt, follow=follow, stop=stop,
                                    reveal=reveal, notices=notices)
        formats, stream = [found], _numbered(events)
    else:
        formats, stream = open_merged(paths, fmt=fmt, follow=follow, reveal=reveal,
                                      notices=notices, stop=stop)
    traces = []
    for path, found, label in zip(paths, formats, labels(paths), strict=True):
        trace = Trace(path, found, stream, label)
        trace.analysis.format = found
        try:
            trace.size = os.path.getsize(path)
        except OSError:
            trace.size = 0
        traces.append(trace)
    return traces


class Indexer:
    """Reads the traces' one stream into the rows, calling ``progress`` every
    ``interval`` s; several files come interleaved by time. With follow, the
    stream is read until every file has caught up, then again until ``stop``.
    """

    def __init__(self, traces: list[Trace], rows: Rows, follow: bool = False,
                 progress: Callable[[bool], None] | None = None,
                 interval: float = 0.5, first: int = 200,
                 stop: threading.Event | None = None) -> None:
        self.traces = traces
        self.rows = rows
        self.follow = follow
        self.progress = progress or (lambda done: None)
        self.interval = interval
        self.first = first  # rows enough for a first screen: report as soon as they are in
        self._stop = stop or threading.Event()
        self.caught_up = False
        self.ended = False

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def stop(self) -> None:
        self._stop.set()

    def _take(self, until: Callable[[], bool] | None = None) -> bool | None:
        """Read the stream until it ends or every file catches up; False when stopped,
        None when ``until`` said enough."""
        if self.ended:
            return True
        clock, stopped = time.monotonic, self._stop.is_set  # bound once: called per event
        last = clock()
        interval, first = self.interval, self.first
        reported_first = self.rows.n >= first
        traces, rows, add = self.traces, self.rows, self.rows.add
        for i, event in traces[0].stream if traces else ():
            if stopped():
                return False
            if event is CAUGHT_UP:
                return True
            trace = traces[i]
            trace.events_seen += 1
            trace.read = event.offset
            trace.analysis.add(event)
            if is_shown(event):
                add(i, event)
            now = clock()
            if now - last >= interval or (not reported_first and rows.n >= first):
                reported_first = rows.n >= first
                last = now
                self.progress(False)
            if until is not None and until():
                return None
        self.ended = True
        for trace in traces:
            trace.done = True
            trace.read = trace.size
        return True

    def prime(self, rows: int, seconds: float = 0.2) -> None:
        """Read, in the caller's thread, until a screenful of rows is in (or the time
        is up): the first screen is drawn without an indexer thread to share with."""
        deadline = time.monotonic() + seconds
        self._take(lambda: self.rows.n >= rows or time.monotonic() >= deadline)

    def run(self) -> None:
        if not self._take():
            return
        self.caught_up = True
        self.progress(not self.follow)
        while self.follow and not self.stopped:
            before = self.rows.n
            if not self._take():
                return
            if self.rows.n != before:
                self.progress(False)
            if self.ended:  # stdin or a FIFO that ended
                self.progress(True)
                return

    def snapshot(self) -> list[dict]:
        """Copies of what the panes show, taken in the indexing thread (consistent)."""
        out = []
        for i, t in enumerate(self.traces):
            a = t.analysis
            out.append({
                "file": i, "path": t.path, "format": t.format,
                "sessions": [dict(s, operations={k: dict(v) for k, v in
                                                 s.get("operations", {}).items()})
                             for s in a.sessions],
                "logins": [dict(x) for x in a.logins],
                "finds": [dict(f, handles=list(f["handles"])) for f in a.finds],
                "objects": [dict(o, found_by=list(o["found_by"]),
                                 attributes_read=list(o["attributes_read"]))
                            for o in a.objects.values()],
                "pin_commands": [dict(p) for p in a.pin_commands],
                "pin_flags": [dict(p) for p in a.pin_flags],
                "calls_by_function": dict(a.calls_by_function),
                "failed_by_function": dict(a.failed_by_function),
                "apdu_stats": {k: dict(v) for k, v in a.apdu_stats.items()},
                # durations per function (measured, or the spy's upper bounds)
                "call_times": {k: dict(v) for k, v in a.call_times.items()},
                "pcsc_stats": {k: dict(v) for k, v in a.pcsc_stats.items()},
                "debug_stats": {k: dict(v) for k, v in a.debug_stats.items()},
                "failed_calls": list(a.failed_calls),
                "pcsc_calls": dict(a.pcsc_calls),
                "failed_pcsc_calls": list(a.failed_pcsc_calls),
                "status_words": dict(a.status_words),
                "sc_errors": dict(a.sc_errors),
                "apdus": a.apdus, "apdus_unanswered": a.apdus_unanswered,
                "calls": a.calls, "processes": len(a.processes),
                "first_time": a.first_time, "last_time": a.last_time,
                "incomplete_records": a.incomplete_records, "torn_records": a.torn_records,
                "unparsed_lines": a.unparsed_lines,
                "damage": [dict(d) for d in a.damage],
                "per_session": {k[1:]: v for k, v in self.rows.per_session.items() if k[0] == i},
            })
        return out

    def fraction(self) -> float:
        total = sum(t.size for t in self.traces) or 1
        return min(1.0, sum(t.size if t.done else t.read for t in self.traces) / total)


# -- a spy log and an OpenSC debug log of the same run, linked ----------------

@dataclass
class Links:
    """Which debug events (APDUs, failures where they began) each spy call caused."""

    spy: int  # the index of the spy log among the traces
    debug: int  # and of the debug log
    of_call: dict[int, list[Event]]  # spy call line -> its debug events, in order
    call_of: dict[int, Pkcs11Call]  # debug event line -> the call it happened in


def link_pair(traces: list[Trace]) -> tuple[int, int] | None:
    """(spy, debug) when the traces are one pkcs11-spy log and one OpenSC debug log."""
    spies = [i for i, t in enumerate(traces) if t.format == SpyParser.format]
    debugs = [i for i, t in enumerate(traces) if t.format == OpenscDebugParser.format]
    return (spies[0], debugs[0]) if len(spies) == 1 and len(debugs) == 1 else None


def linked(traces: list[Trace]) -> Links | None:
    """The links of a spy log and a debug log opened together (``pkspy.link``); None
    for other traces or files too large to hold in memory."""
    pair = link_pair(traces)
    if pair is None or traces[pair[0]].size + traces[pair[1]].size > LINK_MAX_BYTES:
        return None
    spy, debug = pair
    calls, of_call = link_paths(traces[spy].path, traces[debug].path)
    by_line = {c.line: c for c in calls}
    call_of = {e.line: by_line[line] for line, events in of_call.items() for e in events}
    return Links(spy, debug, of_call, call_of)
