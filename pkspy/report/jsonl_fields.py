"""Fields the JSON lines add to each event for log viewers (lnav: contrib/lnav/):
``timestamp`` (ISO 8601, local time, always dated), ``level`` ("error" for a
failure, as tail marks them, else "info") and ``text`` (the decoded line tail
prints).

Dating follows pkspy.merge: a dated time is kept; OpenSC's dateless times (Unix)
get the day nearest the latest dated event of the other files, else the day of
their file's modification time, and the next day past midnight. An event with no
time (a spy banner) takes the time of its file's previous event, or of its next
one when it comes first.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import datetime

from pkspy.merge import DAY, ROLLOVER, mtime_day, parse_clock
from pkspy.model import Event
from pkspy.report.lines import format_event, is_failure

PENDING_MAX = 10000  # events held while waiting for a file's first time


class _Clock:
    """One file's running clock, in seconds since day 1 (date.toordinal())."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.day: int | None = None
        self.last_secs: float | None = None
        self.now: float | None = None

    def read(self, text: str | None, ref: float | None) -> float | None:
        clock = parse_clock(text)
        if clock is not None:
            day, secs = clock
            if day is None:
                if self.day is None:
                    base = int(ref // DAY) if ref is not None else None
                    self.day = mtime_day(self.path, secs) if base is None else min(
                        (base - 1, base, base + 1), key=lambda d: abs(d * DAY + secs - ref))
                elif self.last_secs is not None and secs < self.last_secs - ROLLOVER:
                    self.day += 1  # past midnight
                self.last_secs = secs
                day = self.day
            self.now = day * DAY + secs
        return self.now


def _iso(seconds: float) -> str:
    day, secs = divmod(seconds, DAY)
    ms = round(secs * 1000)
    d = datetime.fromordinal(int(day))
    return (f"{d:%Y-%m-%d}T{ms // 3_600_000:02d}:{ms // 60_000 % 60:02d}:"
            f"{ms // 1000 % 60:02d}.{ms % 1000:03d}")


def with_fields(paths: list[str], events: Iterable[tuple[int, Event]]
                ) -> Iterator[tuple[int, Event, dict[str, object]]]:
    """The merged events, each with its viewer fields."""
    clocks = [_Clock(p) for p in paths]
    dated: float | None = None  # the latest dated time of any file
    pending: list[tuple[int, Event, dict[str, object]]] = []
    for index, event in events:
        fields: dict[str, object] = {"level": "error" if is_failure(event) else "info",
                                     "text": format_event(event)}
        clock = clocks[index]
        now = clock.read(event.time, dated)
        parsed = parse_clock(event.time)
        if parsed is not None and parsed[0] is not None and now is not None:
            dated = now if dated is None else max(dated, now)
        if now is None and len(pending) < PENDING_MAX:
            pending.append((index, event, fields))
            continue
        stamp = _iso(now) if now is not None else None
        for held in pending:  # what came before any time takes the first one
            if stamp is not None:
                held[2]["timestamp"] = stamp
            yield held
        pending = []
        if stamp is not None:
            fields["timestamp"] = stamp
        yield index, event, fields
    for held in pending:  # no time anywhere: no timestamp
        yield held
