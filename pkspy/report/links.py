"""What export shows of pkspy.link: for a pkcs11-spy log given with an OpenSC debug
log of the same run, the APDUs and OpenSC failures behind each call."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from decoders import iso7816, pkcs11
from pkspy.link import link_paths
from pkspy.model import ApduExchange, DebugLine, Event, Pkcs11Call
from pkspy.report.lines import format_event

CALLS_MAX = 200  # calls listed in a report; the rest are counted


@dataclass
class Links:
    spy: str
    debug: str
    calls: list[Pkcs11Call] = field(default_factory=list)
    by_call: dict[int, list[Event]] = field(default_factory=dict)  # spy line -> debug events
    call_of: dict[int, Pkcs11Call] = field(default_factory=dict)  # debug line -> its call


def pair(paths: list[str], formats: list[str]) -> tuple[str, str] | None:
    """The spy log and the OpenSC debug log among the files, when there is one of each."""
    spy = [p for p, f in zip(paths, formats, strict=True) if f == "pkcs11-spy"]
    debug = [p for p, f in zip(paths, formats, strict=True) if f == "opensc-debug"]
    return (spy[0], debug[0]) if len(spy) == 1 and len(debug) == 1 else None


def read_links(spy: str, debug: str) -> Links:
    calls, by_call = link_paths(spy, debug)
    out = Links(spy, debug, calls, by_call)
    lines = {c.line: c for c in calls}
    for line, events in by_call.items():
        for e in events:
            out.call_of[e.line] = lines[line]
    return out


def _failed(event: Event) -> bool:
    if isinstance(event, ApduExchange):
        return event.sw is not None and not iso7816.status_word(event.sw).ok
    return isinstance(event, DebugLine)  # only failures where they began are linked


def table(links: Links) -> tuple[list[str], list[list[str]], int]:
    """Rows for each call that failed or whose APDUs or OpenSC functions failed: the
    call, then under it what it sent (debug log line, decoded event). Also how many
    such calls were left out."""
    header = ["call", f"line in {Path(links.debug).name}", "what happened during it"]
    rows: list[list[str]] = []
    shown = left = 0
    for call in links.calls:
        events = links.by_call.get(call.line, [])
        if not (call.rv or any(_failed(e) for e in events)):
            continue
        if shown == CALLS_MAX:
            left += 1
            continue
        shown += 1
        result = pkcs11.ckr_name(call.rv) if call.rv is not None else "no result"
        rows.append([f"p{call.process} #{call.seq} {call.function} → {result} "
                     f"(line {call.line})", "", "" if events else
                     "nothing in the debug log: no APDU, no OpenSC failure"])
        rows += [["", str(e.line), format_event(e)] for e in events]
    return header, rows, left


def json_fields(links: Links, path: str, event: Event) -> dict[str, object]:
    """The link fields of one event of the JSON lines: a call's ``links`` (the debug
    log's lines), a debug event's ``call`` (the spy log's line)."""
    if path == links.spy and isinstance(event, Pkcs11Call):
        linked = links.by_call.get(event.line)
        if linked:
            return {"links": [{"source": links.debug, "line": e.line, "kind": e.kind}
                              for e in linked]}
    elif path == links.debug and event.line in links.call_of:
        call = links.call_of[event.line]
        return {"call": {"source": links.spy, "line": call.line, "function": call.function}}
    return {}
