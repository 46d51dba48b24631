"""Traces merged by time (pkspy/merge.py), and `pkspy tail A B` / `pkspy export A B`.

The pairs in fixtures/merge are pkcs11-spy's log and OpenSC's debug log written at
once by the same pkcs11-tool runs; OpenSC's Unix clock has no date, the spy's has.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import sys
from itertools import pairwise
from pathlib import Path

import pytest
from conftest import ROOT, fixture_secret_forms, pkspy
from test_follow import Tail

from pkspy.merge import open_merged
from pkspy.model import Pkcs11Call
from pkspy.pipeline import open_events

MERGE = ROOT / "fixtures" / "merge"
PAIRS = ["tool", "midnight"]


def _pair(name: str) -> tuple[list[str], dict]:
    truth = json.loads((MERGE / f"{name}.expected.json").read_text())
    return [str(MERGE / truth["files"]["spy"]), str(MERGE / truth["files"]["opensc_debug"])], truth


def _when(event, day: dt.date) -> dt.datetime:
    """An event's time on the given day, or with its own date when it has one."""
    text = event.time
    if len(text) > 12:
        return dt.datetime.strptime(text, "%Y-%m-%d %H:%M:%S.%f")
    return dt.datetime.combine(day, dt.datetime.strptime(text, "%H:%M:%S.%f").time())


def _absolute_times(path: str, truth: dict) -> list[dt.datetime | None]:
    """Each event's date and time, from the script's knowledge of the run: the debug log
    starts on first_day and, when the run crossed midnight, moves to the next day once
    its clock goes back by hours. An event stamped earlier than the one before it in its
    file (an APDU exchange is emitted at its response, stamped at its command) counts
    at that one's time: a file's clock does not run back in a merge."""
    day = dt.date.fromisoformat(truth["first_day"])
    out: list[dt.datetime | None] = []
    last = None
    for event in open_events(path)[1]:
        if event.time is None:
            out.append(None)
            continue
        when = _when(event, day)
        if len(event.time) <= 12 and last is not None and when < last - dt.timedelta(hours=1):
            assert truth["crosses_midnight"]
            day += dt.timedelta(days=1)
            when += dt.timedelta(days=1)
        last = max(when, last or when)
        out.append(last)
    return out


@pytest.mark.parametrize("name", PAIRS)
def test_each_file_keeps_its_records_whole_and_in_order(name):
    paths, _truth = _pair(name)
    _fmts, merged = open_merged(paths)
    seen: dict[int, list] = {0: [], 1: []}
    for index, event in merged:
        assert event.source == paths[index]
        seen[index].append(event)
    for index, path in enumerate(paths):
        alone = list(open_events(path)[1])
        assert [(e.kind, e.line, e.end_line) for e in seen[index]] == \
            [(e.kind, e.line, e.end_line) for e in alone]
        lines = Path(path).read_text().splitlines()
        for e in seen[index]:  # every record, each of its lines, as the file has them
            assert e.raw == [lines[n - 1] for n in e.source_lines()]
        covered = sorted(n for e in seen[index] for n in e.source_lines())
        assert len(covered) == len(set(covered))  # no line twice
        assert set(covered) >= {n for n, x in enumerate(lines, 1) if x.strip()}  # none lost


@pytest.mark.parametrize("name", PAIRS)
def test_merged_events_follow_the_clock_of_both_files(name):
    paths, truth = _pair(name)
    times = [_absolute_times(p, truth) for p in paths]
    _fmts, merged = open_merged(paths)
    order, at = [], [0, 0]
    for index, _event in merged:
        when = times[index][at[index]]
        at[index] += 1
        if when is not None:
            order.append((when, index))
    assert [w for w, _ in order] == sorted(w for w, _ in order)
    # both files really interleave (one after the other would switch once): most calls
    # sit between debug lines of OpenSC's own
    switches = sum(1 for a, b in pairwise(order) if a[1] != b[1])
    calls = sum(1 for e in open_events(paths[0])[1] if isinstance(e, Pkcs11Call))
    assert switches >= calls
    if truth["crosses_midnight"]:
        assert order[0][0].date() < order[-1][0].date()


def test_a_call_comes_before_the_debug_lines_of_its_millisecond():
    paths, _truth = _pair("tool")
    _fmts, merged = open_merged(paths[::-1])  # the debug log first: ties still go to the call
    events = [e for _i, e in merged]
    for n, e in enumerate(events):
        if isinstance(e, Pkcs11Call) and e.time:
            before = [x for x in events[:n] if x.time and not isinstance(x, Pkcs11Call)]
            assert all(x.time[-12:] < e.time[-12:] for x in before[-3:])


def test_the_date_of_the_debug_log_comes_from_the_spy_once():
    paths, truth = _pair("midnight")
    notices: list[str] = []
    _fmts, merged = open_merged(paths, notices=notices)
    list(merged)
    assert notices == [f"midnight.opensc-debug.log: its times have no date; dated "
                       f"{truth['first_day']} from midnight.spy.log"]


def test_alone_the_debug_log_is_dated_by_its_modification_time(tmp_path):
    paths, _truth = _pair("midnight")
    debug = tmp_path / "debug.log"
    shutil.copyfile(paths[1], debug)
    # written (its last line) a few seconds after midnight: it began the day before
    written = dt.datetime(2031, 5, 4, 0, 0, 20)
    os.utime(debug, (written.timestamp(), written.timestamp()))
    pcscd = ROOT / "fixtures" / "pcscd" / "pcscd-apdu.log"  # no clock at all
    notices: list[str] = []
    fmts, merged = open_merged([str(debug), str(pcscd)], notices=notices)
    assert fmts == ["opensc-debug", "pcscd"]
    list(merged)
    assert "debug.log: its times have no date; dated 2031-05-03 from its modification time" \
        in notices
    assert "pcscd-apdu.log: no time of day in this trace; its events are not placed by time" \
        in notices


def test_tail_of_two_files_marks_each_line_with_its_file():
    paths, truth = _pair("midnight")
    r = pkspy("tail", "--no-follow", *paths)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.decode().splitlines()
    assert lines[0] == (f"-- midnight.opensc-debug.log: its times have no date; dated "
                        f"{truth['first_day']} from midnight.spy.log")
    body = lines[1:]
    assert all(x.startswith(("midnight.spy.log ", "midnight.opensc-debug.log ")) for x in body)
    calls = [n for n, x in enumerate(body) if " C_" in x and x.startswith("midnight.spy.log")]
    # OpenSC looks for cards in C_Initialize and in each C_GetSlotList: its APDUs come
    # after the call that caused them, before the next call
    assert "#1 C_Initialize" in body[calls[1]] and "#2 C_GetSlotList" in body[calls[2]]
    assert any("APDU SELECT" in x for x in body[calls[1]:calls[2]])
    assert any("APDU SELECT" in x for x in body[calls[2]:calls[3]])


def test_tail_follows_two_files_and_interleaves_what_arrives(tmp_path):
    paths, _truth = _pair("tool")
    spy_text, debug_text = (Path(p).read_bytes() for p in paths)
    spy, debug = tmp_path / "spy.log", tmp_path / "debug.log"
    cut = spy_text.index(b"\n2: C_GetSlotList")
    spy.write_bytes(spy_text[:cut])
    debug.write_bytes(b"")
    tail = Tail("-n", "100", str(spy), str(debug))
    try:
        tail.wait_for("#1 C_Initialize")
        with debug.open("ab") as f:
            f.write(debug_text)
        seen = tail.wait_for("debug.log ")
        assert seen[-1].startswith("debug.log ") and "APDU" in "".join(seen + tail.wait_for("APDU"))
        with spy.open("ab") as f:
            f.write(spy_text[cut:])
        seen = tail.wait_for("#7 C_Finalize")
        assert seen[-1].startswith("spy.log ")
    finally:
        tail.close()


def test_export_of_two_files_has_one_merged_timeline():
    paths, _truth = _pair("tool")
    r = pkspy("export", "-f", "md", *paths)
    assert r.returncode == 0, r.stderr
    text = r.stdout.decode()
    assert text.count("# pkspy report: tool.spy.log") == 1
    assert text.count("# pkspy report: tool.opensc-debug.log") == 1
    assert "Decoded timeline" not in text  # no timeline per file...
    assert text.count("Timeline of tool.spy.log, tool.opensc-debug.log merged by time") == 1
    timeline = text.split("merged by time")[1]
    assert "tool.spy.log          " in timeline and "tool.opensc-debug.log " in timeline


def test_jsonl_export_of_two_files_is_merged_and_names_each_source():
    paths, truth = _pair("tool")
    r = pkspy("export", "-f", "jsonl", *paths)
    assert r.returncode == 0, r.stderr
    events = [json.loads(x) for x in r.stdout.decode().splitlines()]
    for path in paths:
        mine = [(e["kind"], e["line"]) for e in events if e["source"] == path]
        assert mine == [(e.kind, e.line) for e in open_events(path)[1]]
    sources = [e["source"] for e in events]
    runs = sum(1 for a, b in pairwise(sources) if a != b)
    assert runs > 2 * truth["processes"]  # interleaved, not one file after the other


def test_merged_output_holds_no_secret():
    spy = ROOT / "fixtures" / "pkcs11-spy" / "softhsm2-pykcs11.log"
    card = ROOT / "fixtures" / "opensc-debug" / "opensc-tool-d9.log"
    forms = fixture_secret_forms(spy) + fixture_secret_forms(card)
    for args in (["tail", "--no-follow"], ["tail", "--no-follow", "--json"],
                 ["export", "-f", "md"], ["export", "-f", "jsonl"]):
        r = pkspy(*args, str(spy), str(card))
        assert r.returncode == 0, r.stderr
        out = r.stdout.decode()
        assert "softhsm2-pykcs11.log" in out and "opensc-tool-d9.log" in out
        for form in forms:
            assert form not in out, (args, form)


@pytest.mark.parametrize(("tz", "pcsc_first"), [("UTC", False), ("America/New_York", True)])
def test_pcsc_spy_utc_stamps_are_read_in_local_time(tz, pcsc_first):
    """pcsc-spy stamps in UTC (…Z), pkcs11-spy in local time: a pcsc-spy run at 15:10Z
    comes after a spy run at 14:46 local in UTC, before it in New York (10:10 local)."""
    spy = ROOT / "fixtures" / "pkcs11-spy" / "softhsm2-pykcs11.log"
    pcsc = ROOT / "fixtures" / "pcsc-spy" / "pyscard.raw"
    r = subprocess.run([sys.executable, "-m", "pkspy", "tail", "--no-follow", str(spy), str(pcsc)],
                       capture_output=True, cwd=ROOT, env={**os.environ, "TZ": tz}, timeout=60)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.decode().splitlines()
    assert lines[0].startswith("-- pyscard.raw: its times are UTC; placed in this machine's "
                               "time zone")
    timed = [x.split()[0] for x in lines[1:] if x.split()[1] != "-"]  # the banner has no time
    assert (timed[0] == "pyscard.raw") is pcsc_first
    assert sum(1 for a, b in pairwise(timed) if a != b) == 1  # two separate runs


def test_following_files_not_written_yet_waits_for_them_and_stops(tmp_path):
    import threading

    paths, _truth = _pair("tool")
    spy, debug = tmp_path / "spy.log", tmp_path / "debug.log"  # neither exists yet
    stopped = threading.Event()
    fmts, merged = open_merged([str(spy), str(debug)], follow=True, stop=stopped.is_set)
    assert fmts == [None, None]
    seen = []
    for index, event in merged:
        if event is None:
            assert index == -1
            if not spy.exists():
                spy.write_bytes(Path(paths[0]).read_bytes())
            continue
        seen.append((index, event.kind))
        if event.kind == "call" and event.function == "C_Finalize":
            stopped.set()  # the debug log never comes: the merge still ends
    assert fmts == ["pkcs11-spy", None]  # known once the file had lines
    calls = [e for e in open_events(paths[0])[1] if isinstance(e, Pkcs11Call)]
    assert sum(1 for i, k in seen if k == "call" and i == 0) == len(calls)
