"""Several traces as one timeline: events interleaved by time of day.

Each file goes through ``pipeline.open_events`` on its own (its own parser,
its own redaction), so a merged event is always a whole record. The streams
are merged with a heap on (time, calls first, file index, position), holding
one event per file (and, at the start, up to LOOKAHEAD events while looking for
a file's first time): memory stays bounded however large the files are, and
each file's events keep their own order (a merge only ever compares the heads).

Times are read into seconds on one local wall clock:

* ``YYYY-MM-DD HH:MM:SS.mmm`` (pkcs11-spy, OpenSC on Windows) as it is;
* the same with ``Z`` (pcsc-spy, which stamps in UTC) turned into local time;
* ``HH:MM:SS.mmm`` (OpenSC on Unix prints no date) dated from the other
  traces' first dated event, else from the file's modification time, and
  carried past midnight when the clock goes back by more than half a day;
* anything else (pcscd's ``+12.3s`` offsets, no time at all) is no clock.

At the same millisecond a call (stamped when it began) goes before the
other files' lines, which happened inside it.

A file's clock never runs backwards in the merge: an event without a time,
or one earlier than its predecessor (threads finishing out of order), takes
the key of the event before it, so it stays beside its neighbours.

In follow mode a file that has caught up is not waited for: what the others
have is interleaved as it arrives, and ``CAUGHT_UP`` is yielded once every
file has caught up.
"""

from __future__ import annotations

import heapq
import os
import re
import stat
import time as _time
from collections import deque
from collections.abc import Callable, Iterator
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

from pkspy.model import Event, PcscCall, Pkcs11Call
from pkspy.pipeline import CAUGHT_UP, open_events

CLOCK = re.compile(r"^(?:(\d{1,4})-(\d{1,2})-(\d{1,2})[ T])?(\d{1,2}):(\d\d):(\d\d(?:\.\d+)?)(Z)?$")
DAY = 86400.0
# A dateless clock that goes back by more than this has passed midnight; less is
# threads printing out of order.
ROLLOVER = DAY / 2
# Events read ahead in a file to find its first time (the spy's banner has none).
LOOKAHEAD = 2000
NO_CLOCK = float("-inf")
POLL = 0.05  # seconds between looks at a followed file not written yet


def parse_clock(text: str | None) -> tuple[int | None, float] | None:
    """(day ordinal or None when undated, seconds since that day's midnight), local time."""
    if not text:
        return None
    m = CLOCK.match(text.strip())
    if m is None:
        return None
    secs = int(m[4]) * 3600 + int(m[5]) * 60 + float(m[6])
    if m[1] is None:
        return None, secs
    try:
        day = date(int(m[1]), int(m[2]), int(m[3]))
    except ValueError:
        return None
    if m[7]:  # UTC (pcsc-spy): to the local wall clock the other traces print
        utc = datetime(day.year, day.month, day.day, tzinfo=timezone.utc) + timedelta(seconds=secs)
        local = utc.astimezone().replace(tzinfo=None)
        midnight = datetime(local.year, local.month, local.day)
        return local.toordinal(), (local - midnight).total_seconds()
    return day.toordinal(), secs


def mtime_day(path: str, secs: float) -> int:
    """The day (ordinal) of a dateless time ``secs`` into its day, from the file: the day
    the file was last written, or the day before when that time is later than the
    write (the trace began before midnight). Standard input: today."""
    try:
        stamp = os.stat(path).st_mtime if path != "-" else _time.time()
    except OSError:
        stamp = _time.time()
    when = datetime.fromtimestamp(stamp)
    day = when.toordinal()
    return day - 1 if secs > when.hour * 3600 + when.minute * 60 + when.second + 1 else day


def labels(paths: list[str]) -> list[str]:
    """Short names to mark each event's file: base names, unless two are alike."""
    names = [Path(p).name or p for p in paths]
    return names if len(set(names)) == len(names) else list(paths)


class _Source:
    """One file's stream, its look-ahead buffer, and its clock."""

    def __init__(self, index: int, path: str, events: Iterator[Event | None] | None,
                 opener: Callable[[], Iterator[Event | None]] | None = None,
                 stop: Callable[[], bool] | None = None) -> None:
        self.index = index
        self.path = path
        self.events = events
        self.opener = opener  # for a followed file with nothing in it yet
        self.stop = stop
        self.ahead: deque[Event | None] = deque()
        self.ended = False
        self.caught_up = False
        self.seq = 0
        self.key = NO_CLOCK
        self.day: int | None = None  # the day ordinal of an undated clock, once inferred
        self.last_secs: float | None = None
        self.first: tuple[int | None, float] | None = None  # first clock read ahead

    def pull(self) -> Event | bool | None:
        """The next item (an event or CAUGHT_UP), or False at the end."""
        if self.ahead:
            return self.ahead.popleft()
        if self.events is None:
            if self.opener is None or (self.stop is not None and self.stop()):
                return False
            if _nothing_yet(self.path):
                _time.sleep(POLL)  # as sources.follow_lines waits for a file
                return CAUGHT_UP
            self.events = self.opener()
        try:
            return next(self.events)
        except StopIteration:
            return False

    def read_ahead(self) -> None:
        """Read until the first event with a clock, so undated traces can be dated."""
        for _ in range(LOOKAHEAD if self.events is not None else 0):
            try:
                item = next(self.events)
            except StopIteration:
                return
            self.ahead.append(item)
            if item is CAUGHT_UP:
                return
            clock = parse_clock(item.time)
            if clock is not None:
                self.first = clock
                return


def _nothing_yet(path: str) -> bool:
    """A followed file not written yet: its format cannot be told."""
    try:
        st = os.stat(path)
    except OSError:
        return True
    return stat.S_ISREG(st.st_mode) and st.st_size == 0


class _Merger:
    def __init__(self, sources: list[_Source], notices: list[str] | None) -> None:
        self.sources = sources
        self.notices = notices
        paths = [s.path for s in sources]
        self.names = labels(paths)
        self.noted_no_clock: set[int] = set()

    def note(self, text: str) -> None:
        if self.notices is not None:
            self.notices.append(text)

    def _date_undated(self, src: _Source, secs: float) -> int:
        """The day of an undated trace's first clock: the one that puts it nearest to
        the first dated event of the other traces, else just before its file's mtime."""
        refs = [(s.first[0] * DAY + s.first[1], s) for s in self.sources
                if s is not src and s.first is not None and s.first[0] is not None]
        if refs:
            ref, other = min(refs, key=lambda r: r[0])
            base = int(ref // DAY)
            day = min((base - 1, base, base + 1), key=lambda d: abs(d * DAY + secs - ref))
            why = f"from {self.names[other.index]}"
        else:
            day = mtime_day(src.path, secs)
            why = "from its modification time"
        self.note(f"{self.names[src.index]}: its times have no date; dated "
                  f"{date.fromordinal(day).isoformat()} {why}")
        return day

    def key(self, src: _Source, event: Event) -> float:
        clock = parse_clock(event.time)
        if clock is not None:
            if src.first is None:  # a file opened late (follow) dates the others too
                src.first = clock
            day, secs = clock
            if day is None:
                if src.day is None:
                    src.day = self._date_undated(src, secs)
                elif src.last_secs is not None and secs < src.last_secs - ROLLOVER:
                    src.day += 1  # past midnight
                src.last_secs = secs
                day = src.day
            elif src.key == NO_CLOCK and event.time.endswith("Z") and len(self.sources) > 1:
                self.note(f"{self.names[src.index]}: its times are UTC; placed in this "
                          f"machine's time zone ({_time.strftime('%Z')})")
            src.key = max(src.key, day * DAY + secs)
        src.seq += 1
        return src.key

    def events(self) -> Iterator[tuple[int, Event | None]]:
        for src in self.sources:
            src.read_ahead()
            if src.first is None and src.ahead and src.ahead[-1] is not CAUGHT_UP:
                self._no_clock(src)
        heap: list[tuple[float, int, int, int, Event]] = []
        waiting = list(self.sources)  # sources whose next event is not in the heap
        while True:
            still: list[_Source] = []
            for src in waiting:
                if src.caught_up:  # asked again only once every file has caught up
                    still.append(src)
                    continue
                item = src.pull()
                if item is False:
                    src.ended = True
                    if src.key == NO_CLOCK and src.seq:
                        self._no_clock(src)
                elif item is CAUGHT_UP:
                    src.caught_up = True
                    still.append(src)
                else:
                    item.source = src.path
                    first = 0 if isinstance(item, (Pkcs11Call, PcscCall)) else 1
                    heapq.heappush(heap, (self.key(src, item), first, src.index, src.seq, item))
            waiting = still
            if heap:
                _key, _first, index, _seq, event = heapq.heappop(heap)
                src = self.sources[index]
                waiting.append(src)
                yield index, event
                continue
            if all(s.ended for s in self.sources):
                return
            # every file has caught up: say so, then ask them all again
            yield -1, CAUGHT_UP
            for src in waiting:
                src.caught_up = False

    def _no_clock(self, src: _Source) -> None:
        if len(self.sources) > 1 and src.index not in self.noted_no_clock:
            self.noted_no_clock.add(src.index)
            self.note(f"{self.names[src.index]}: no time of day in this trace; "
                      "its events are not placed by time")


def open_merged(paths: list[str], fmt: str | None = None, follow: bool = False,
                reveal: bool = False, notices: list[str] | None = None,
                stop: Callable[[], bool] | None = None
                ) -> tuple[list[str | None], Iterator[tuple[int, Event | None]]]:
    """The format of each path, and the events of all of them interleaved by time,
    each with the index of its path (``CAUGHT_UP`` items, in follow mode, come
    with index -1). Each event's ``source`` is set to its path.

    In follow mode a file that is missing or empty is not waited for: its format
    is None in the list until its first lines come, then set in place.
    Raises SourceError (one line) as ``open_events`` does, for the first path that
    cannot be read.
    """
    formats: list[str | None] = []
    sources: list[_Source] = []
    for index, path in enumerate(paths):
        def opener(index=index, path=path) -> Iterator[Event | None]:
            formats[index], events = open_events(path, fmt=fmt, follow=follow, reveal=reveal,
                                                 notices=notices, stop=stop)
            return events

        formats.append(None)
        if follow and path != "-" and _nothing_yet(path):
            sources.append(_Source(index, path, None, opener, stop))
        else:
            sources.append(_Source(index, path, opener()))
    return formats, _Merger(sources, notices).events()
