"""``pkspy tail``: decoded lines of a trace, following it as it grows.

Several traces are merged by time (``pkspy.merge``), each line marked with
the file it came from.
"""

from __future__ import annotations

import json
import os
from collections import deque
from typing import TextIO

from pkspy.merge import labels, open_merged
from pkspy.model import Event, Pkcs11Call, ProcessStart, to_json
from pkspy.pipeline import CAUGHT_UP, is_fifo, open_events
from pkspy.report.lines import format_event, is_failure, is_shown

FOLLOW_BACKLOG = 10


RED, YELLOW, DIM, RESET = "\x1b[31m", "\x1b[33m", "\x1b[2m", "\x1b[0m"


def _colour(event: Event, line: str) -> str:
    """Failures stand out: red for failed calls, yellow for torn or unparsed records."""
    if isinstance(event, Pkcs11Call) and event.rv not in (None, 0):
        return RED + line + RESET
    if is_failure(event):
        return YELLOW + line + RESET
    if isinstance(event, ProcessStart):
        return DIM + line + RESET
    return line


def run(paths: str | list[str], *, last: int | None, follow: bool, errors_only: bool,
        fmt: str | None, as_json: bool, out: TextIO, colour: bool = False, stop=None,
        reveal: bool = False) -> None:
    paths = [paths] if isinstance(paths, str) else paths
    notices: list[str] = []
    if follow and all(is_fifo(p) for p in paths):
        follow = False  # a FIFO streams to its writer's end: print everything as it comes
    marks: dict[str, str] = {}  # each file's mark at the start of its lines, when merged
    for p in paths if follow else ():
        if not os.path.exists(p):  # said now: opening waits for its first lines
            out.write(f"-- {p}: does not exist yet; waiting for it\n")
            out.flush()
    if len(paths) == 1:
        _fmt, events = open_events(paths[0], fmt=fmt, follow=follow, notices=notices,
                                   stop=stop, reveal=reveal)
    else:
        _fmts, merged = open_merged(paths, fmt=fmt, follow=follow, notices=notices, stop=stop,
                                    reveal=reveal)
        events = (event for _index, event in merged)
        width = max(len(n) for n in labels(paths))
        marks = {p: f"{n:<{width}} " for p, n in zip(paths, labels(paths), strict=True)}
    if last is None and follow:
        last = FOLLOW_BACKLOG

    def show(event: Event) -> None:
        if as_json:
            out.write(json.dumps(to_json(event), ensure_ascii=False) + "\n")
        else:
            line = format_event(event)
            if marks:
                line = marks[event.source or ""] + line
            out.write((_colour(event, line) if colour else line) + "\n")

    backlog: deque[Event] | None = deque(maxlen=last) if last is not None else None
    for event in events:
        for n in notices:  # what happened to the followed file, before what came after it
            out.write(f"-- {n}\n")
        notices.clear()
        if event is CAUGHT_UP:
            if backlog is not None:
                for e in backlog:
                    show(e)
                backlog = None
            out.flush()
            continue
        if (errors_only and not is_failure(event)) or (not as_json and not is_shown(event)):
            continue
        if backlog is not None:
            backlog.append(event)
        else:
            show(event)
    if backlog is not None:
        for e in backlog:
            show(e)
    out.flush()
