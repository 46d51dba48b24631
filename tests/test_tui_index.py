"""The timeline's index (pkspy.tui.index) on the real fixtures: a row gives back the
event and the line it was made from, once its block is compressed and spilled too."""

from __future__ import annotations

import copy
import dataclasses
import re

import pytest
from conftest import ROOT, fixture_secret_forms

from pkspy.model import Arg, Event, Pkcs11Call
from pkspy.pipeline import open_events
from pkspy.redact import Redactor
from pkspy.report.lines import format_event, is_shown
from pkspy.tui import index
from pkspy.tui.index import NONE, Filter, Rows, View

TRACES = sorted(p for d in ("pkcs11-spy", "opensc-debug", "pcsc-spy", "pcscd", "p11-kit",
                            "pkcs11-logger")
                for p in (ROOT / "fixtures" / d).glob("*")
                if p.suffix in (".log", ".raw", ".txt"))
SMALL_BLOCK = 7  # every fixture fills several blocks, and ends in an open one


def indexed(trace) -> tuple[Rows, list[Event]]:
    events = [e for e in open_events(str(trace))[1] if is_shown(e)]
    rows = Rows()
    for event in events:
        rows.add(0, event)
    return rows, events


@pytest.mark.parametrize("trace", TRACES, ids=lambda p: p.name)
def test_spilled_rows_give_back_their_event_and_line(trace, monkeypatch):
    monkeypatch.setattr(index, "BLOCK", SMALL_BLOCK)
    rows, events = indexed(trace)
    assert rows.n == len(events) > SMALL_BLOCK
    assert len(rows._texts) == len(events) // SMALL_BLOCK  # the full blocks: spilled
    for r in reversed(range(rows.n)):  # from the end: blocks read back out of order
        back = rows.event(r)
        assert type(back) is type(events[r]) and back == events[r], (trace.name, r)
        assert rows.text(r) == format_event(events[r]).replace("\n", " ")
        assert rows.line[r] == events[r].line


def test_rows_keep_the_session_and_objects_a_call_names(monkeypatch):
    monkeypatch.setattr(index, "BLOCK", SMALL_BLOCK)
    rows, _ = indexed(ROOT / "fixtures" / "pkcs11-spy" / "softhsm2-pykcs11.log")
    by_line = {rows.line[r]: r for r in range(rows.n)}
    opened = by_line[232]  # C_OpenSession: the session comes back in *phSession
    raw = "\n".join(rows.event(opened).raw)
    assert rows.session[opened] == int(re.search(r"\*phSession = 0x(\w+)", raw)[1], 16)
    assert rows.object[opened] == NONE
    found = by_line[614]  # C_FindObjects in that session: two objects match
    raw = "\n".join(rows.event(found).raw)
    handles = tuple(int(h, 16) for h in re.findall(r"Object 0x(\w+) matches", raw))
    assert len(handles) == 2
    assert rows.session[found] == int(re.search(r"hSession = 0x(\w+)", raw)[1], 16)
    assert (rows.object[found], rows.more_objects[found]) == (handles[0], handles)
    for handle in handles:
        view = View(rows, Filter(object=handle))
        view.update()
        assert found in {view.row(i) for i in range(len(view))}


def test_calls_that_share_their_arguments_read_as_if_made_apart():
    """Copied records (record_memo) share their original's list of arguments: a copy,
    or a list that grew, reads as a call made from scratch would."""
    trace = ROOT / "fixtures" / "pkcs11-spy" / "softhsm2-threads.log"
    calls = [e for e in open_events(str(trace))[1] if isinstance(e, Pkcs11Call)]
    assert len(calls) > 100
    for call in calls:
        format_event(call)
        twin = dataclasses.replace(call, seq=(call.seq or 0) + 1000, rv=(call.rv or 0) + 1)
        assert twin.args is call.args
        assert format_event(twin) == format_event(copy.deepcopy(twin))
        call.args.append(Arg(name="hObject", value=0x77, direction="out"))
        assert "object=0x77" in format_event(call)
        assert format_event(call) == format_event(copy.deepcopy(call))


def test_a_call_redacted_after_it_was_shown_shows_no_secret():
    """Shown revealed, then redacted in place: its one-line text holds no PIN."""
    trace = ROOT / "fixtures" / "pkcs11-spy" / "softhsm2-pykcs11.log"
    _, events = open_events(str(trace), reveal=True)
    logins = [e for e in events if isinstance(e, Pkcs11Call) and e.function == "C_Login"]
    redact = Redactor()
    for login in logins:
        shown = format_event(login)
        redact(login)
        assert format_event(login) != shown
    forms = fixture_secret_forms(trace)
    assert not [f for login in logins for f in forms if f in format_event(login)]
