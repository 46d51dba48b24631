"""Which APDUs and OpenSC failures each PKCS#11 call caused: a pkcs11-spy log and
an OPENSC_DEBUG log of the same run, joined.

API::

    link(calls, debug_events, keep=is_linked) -> dict[int, list[Event]]
        calls:        the Pkcs11Call events of one spy log, in file order
        debug_events: the events of one OpenSC debug log, in file order
        returns:      {call.line: [events of the debug log that happened during
                      that call]}, for the calls that got any; ``keep`` picks the
                      events (default: APDU exchanges, and DebugLines where an
                      OpenSC failure began); ``keep=lambda e: True`` gives all.
    link_paths(spy_path, debug_path) -> (calls, links)   both files read, redacted

The key is the line of the call's header in the spy log (``Pkcs11Call.line``),
unique in one file.

How a debug event finds its call, per process (paired by pid when the spy printed
one, 0.24+, else by time) and per thread (when both logs name threads):

1. Anchors. Every sc_log inside opensc-pkcs11's ``C_Xxx`` carries ``C_Xxx`` as its
   function (pkcs11-global.c, pkcs11-session.c, pkcs11-object.c log with
   ``__FUNCTION__``): "C_GetSlotList(token=0, plug-n-play)", "C_Initialize() =
   CKR_OK". An anchor goes to the next spy call of that function whose time window
   holds the anchor's time. A line that looks like the function's entry
   ("C_GetSlotList(token=0, refresh)") after another entry starts the next call of
   the same function, so back-to-back calls of one function are told apart.
2. Time. The spy stamps each call when it begins, before calling the module, and
   a call of one thread returns before that thread's next call begins. So an event
   at time t belongs to the last call (between the calls of the anchors around it)
   that began at or before t. Both logs come from one process with one clock and
   print milliseconds, so within one millisecond the later call is chosen.

Times: the spy prints dates; OpenSC on Unix prints only the time of day. The debug
clock is dated from the spy's first call (the day that puts it nearest) and moved
to the next day when it goes back by more than half a day (midnight).
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from pkspy.merge import DAY, ROLLOVER, parse_clock
from pkspy.model import ApduExchange, DebugLine, Event, Pkcs11Call
from pkspy.pipeline import open_events


def is_linked(event: Event) -> bool:
    """What a call shows by default: the card's exchanges, and failures where they began."""
    return isinstance(event, ApduExchange) or (
        isinstance(event, DebugLine) and event.error is not None and event.origin)


def _tid(tid: str | None) -> str | None:
    return tid.removeprefix("0x") if tid else None


def _abs(clock: tuple[int | None, float] | None) -> float | None:
    if clock is None or clock[0] is None:
        return None
    return clock[0] * DAY + clock[1]


class _DebugClock:
    """Seconds on the spy's clock for the debug log's times, dated or not."""

    def __init__(self, ref: float | None) -> None:
        self.ref = ref  # the spy's first call
        self.day: int | None = None
        self.last: float | None = None

    def __call__(self, time: str | None) -> float | None:
        clock = parse_clock(time)
        if clock is None:
            return None
        day, secs = clock
        if day is not None:
            return day * DAY + secs
        if self.ref is None:
            return None
        if self.day is None:
            base = int(self.ref // DAY)
            self.day = min((base - 1, base, base + 1),
                           key=lambda d: abs(d * DAY + secs - self.ref))
        elif self.last is not None and secs < self.last - ROLLOVER:
            self.day += 1  # past midnight
        self.last = secs
        return self.day * DAY + secs


@dataclass
class _Group:
    """The calls of one process (and thread) and the debug events of the same."""

    calls: list[Pkcs11Call] = field(default_factory=list)
    starts: list[float | None] = field(default_factory=list)
    events: list[tuple[Event, float | None]] = field(default_factory=list)


def _is_anchor(event: Event) -> bool:
    return isinstance(event, DebugLine) and bool(event.function) \
        and event.function.startswith("C_")


def _is_entry(line: DebugLine) -> bool:
    """"C_GetSlotList(token=0, refresh)", "C_Finalize()": a function's first line;
    not "C_GetSlotInfo() get slot rv ..." nor "C_Initialize() = CKR_OK"."""
    msg, name = line.message.strip(), f"{line.function}("
    return msg.startswith(name) and " = " not in msg and not msg.startswith(f"{name}) ")


def _in_window(g: _Group, j: int, t: float | None) -> bool:
    """Could call j still be running at time t (it began at or before t, and the
    next call began at or after it)?"""
    if t is None:
        return True
    start = g.starts[j]
    after = g.starts[j + 1] if j + 1 < len(g.starts) else None
    return (start is None or start <= t) and (after is None or t <= after)


def _anchors(g: _Group) -> list[int | None]:
    """For each debug event of the group, the index of the call its anchor names."""
    owner: list[int | None] = [None] * len(g.events)
    cursor, entered = 0, False  # entered: the cursor's call has shown its entry line
    for i, (event, t) in enumerate(g.events):
        if not _is_anchor(event):
            continue
        found: list[int] = []  # the first two calls that could hold this line
        for j in range(cursor, len(g.calls)):
            if t is not None and g.starts[j] is not None and g.starts[j] > t:
                break  # this call and later ones began after the line
            if g.calls[j].function == event.function and _in_window(g, j, t):
                found.append(j)
                if len(found) == 2:
                    break
        if not found:
            continue  # a call the spy did not see: the line is placed by time
        entry = _is_entry(event)
        j = found[0]
        if j == cursor and entry and entered and len(found) > 1:
            j = found[1]  # a second entry line: the next call of the same function
        if j != cursor:
            entered = False
        owner[i], cursor = j, j
        entered = entered or entry
    return owner


def _assign(g: _Group, owner: list[int | None]) -> list[int | None]:
    """Every event's call: its anchor's, else by time between the anchors around it."""
    out = list(owner)
    nxt: list[int | None] = [None] * len(owner)
    following = None
    for i in range(len(owner) - 1, -1, -1):
        nxt[i] = following
        if owner[i] is not None:
            following = owner[i]
    # The calls' starts as a running maximum (a call with no time takes the one before),
    # so that "the last call that began at or before t" is a bisection.
    keys: list[float] = []
    running = float("-inf")
    for start in g.starts:
        running = max(running, start) if start is not None else running
        keys.append(running)
    previous = None
    last = len(g.calls) - 1
    for i, (_event, t) in enumerate(g.events):
        if owner[i] is not None:
            previous = owner[i]
            continue
        low = previous if previous is not None else 0
        high = nxt[i] if nxt[i] is not None else last
        if t is None:
            out[i] = high
            continue
        j = bisect.bisect_right(keys, t, low, high + 1) - 1
        if j < low:
            if previous is None:
                continue  # before the first call: not the spy's
            j = low
        out[i] = j
    return out


def _groups(calls: list[Pkcs11Call], debug: list[Event]) -> list[_Group]:
    """Pairs each debug process (and thread) with the spy's calls of the same."""
    spy: dict[int | None, list[Pkcs11Call]] = {}
    for c in calls:
        spy.setdefault(c.process, []).append(c)
    pids = {cs[0].pid: p for p, cs in spy.items() if cs[0].pid is not None}
    firsts: list[tuple[float, int | None]] = []  # (first time, spy process), by time
    for p, cs in spy.items():
        first = next((t for c in cs if (t := _abs(parse_clock(c.time))) is not None), None)
        if first is not None:
            firsts.append((first, p))
    firsts.sort(key=lambda x: x[0])
    clock = _DebugClock(firsts[0][0] if firsts else None)
    by_thread = all(c.tid for c in calls)
    groups: dict[tuple, _Group] = {}
    process_of: dict[int | None, int | None] = {}  # debug process -> spy process
    for event in debug:
        t = clock(event.time)
        if event.process not in process_of:
            if event.pid is not None and event.pid in pids:
                process_of[event.process] = pids[event.pid]
            elif not pids and t is not None and firsts:
                # the spy run that began last, at or before this process's first line
                i = bisect.bisect_right([s for s, _ in firsts], t) - 1
                process_of[event.process] = firsts[max(i, 0)][1]
            elif not pids and len(spy) == 1:
                process_of[event.process] = next(iter(spy))
            else:
                process_of[event.process] = None
        proc = process_of[event.process]
        if proc is None:
            continue
        key = (proc, _tid(event.tid) if by_thread else None)
        group = groups.get(key)
        if group is None:
            group = groups[key] = _Group()
            group.calls = [c for c in spy[proc] if key[1] is None or _tid(c.tid) == key[1]]
            group.starts = [_abs(parse_clock(c.time)) for c in group.calls]
        group.events.append((event, t))
    return [g for g in groups.values() if g.calls]


def link(calls: Iterable[Pkcs11Call], debug_events: Iterable[Event],
         keep: Callable[[Event], bool] = is_linked) -> dict[int, list[Event]]:
    """{call.line: the debug events that happened during that call}; see the module
    docstring for how."""
    real = [c for c in calls if isinstance(c, Pkcs11Call) and c.function]
    # Only anchors decide where other lines go, so the rest of a large log (an
    # OPENSC_DEBUG=9 log runs to hundreds of MB) is never held.
    debug = [e for e in debug_events if isinstance(e, (DebugLine, ApduExchange))
             and (keep(e) or _is_anchor(e))]
    out: dict[int, list[Event]] = {}
    for g in _groups(real, debug):
        owners = _assign(g, _anchors(g))
        for (event, _t), j in zip(g.events, owners, strict=True):
            if j is not None and keep(event):
                out.setdefault(g.calls[j].line, []).append(event)
    return out


def link_paths(spy_path: str, debug_path: str, keep: Callable[[Event], bool] = is_linked
               ) -> tuple[list[Pkcs11Call], dict[int, list[Event]]]:
    """Both files read (redacted) and linked: the spy's calls, and their links."""
    _fmt, events = open_events(spy_path)
    calls = [e for e in events if isinstance(e, Pkcs11Call)]
    _fmt, debug = open_events(debug_path)
    return calls, link(calls, (e for e in debug if e is not None), keep)
