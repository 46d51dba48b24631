"""pkspy view: the Textual app driven by Pilot against the real fixtures.

pytest-asyncio is not a test dependency: each test runs its coroutine with
asyncio.run.
"""

from __future__ import annotations

import asyncio
import html
import os
import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from conftest import ROOT, expected, fixture_secret_forms, pkspy, summary
from textual.widgets import Static

from pkspy.link import link_paths
from pkspy.merge import open_merged
from pkspy.model import ApduExchange
from pkspy.pipeline import open_events
from pkspy.report.lines import format_apdu, format_event, is_shown
from pkspy.tui import detail
from pkspy.tui.app import ViewerApp
from pkspy.tui.index import Indexer, Rows, open_traces
from pkspy.tui.widgets.panes import Pane
from pkspy.tui.widgets.timeline import Timeline, compact

SPY = ROOT / "fixtures" / "pkcs11-spy"
LOGIN_TRACE = SPY / "pkcs11-spy-0.27.1-softhsm2.log"
TRACES = [*sorted(SPY.glob("*.log")),
          ROOT / "fixtures" / "opensc-debug" / "pkcs11-tool-L-d9.log",
          ROOT / "fixtures" / "opensc-debug" / "opensc-tool-d9.log",
          *sorted((ROOT / "fixtures" / "pcsc-spy").glob("*.raw")),
          ROOT / "fixtures" / "pcsc-spy" / "pyscard.txt",
          ROOT / "fixtures" / "pcscd" / "pcscd-apdu.log"]


def run(coro):
    return asyncio.run(coro)


async def until(pilot, condition, timeout: float = 30.0) -> None:
    end = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < end, "timed out"
        await pilot.pause(0.02)


async def indexed(pilot) -> None:
    await until(pilot, lambda: pilot.app.indexed)
    await pilot.pause()


def screen_text(app) -> str:
    """The text on the screen, line by line, from Textual's SVG screenshot."""
    lines: dict[str, list[str]] = {}
    for line, text in re.findall(r'<text [^>]*clip-path="url\(#[\w-]*-line-(\d+)\)">([^<]*)</text>',
                                 app.export_screenshot()):
        lines.setdefault(line, []).append(html.unescape(text).replace("\xa0", " "))
    ordered = sorted(lines.items(), key=lambda kv: int(kv[0]))
    return "\n".join("".join(parts) for _, parts in ordered)


def app_for(*paths: Path, follow: bool = False, reveal: bool = False) -> ViewerApp:
    return ViewerApp(open_traces([str(p) for p in paths], follow=follow, reveal=reveal),
                     follow=follow, reveal=reveal)


def shown_rows(trace: Path) -> list[str]:
    return [format_event(e) for e in open_events(str(trace))[1] if is_shown(e)]


FIRST = [LOGIN_TRACE, ROOT / "fixtures" / "opensc-debug" / "pkcs11-tool-L-d9.log",
         ROOT / "fixtures" / "pcsc-spy" / "pyscard.raw"]


@pytest.mark.parametrize("trace", FIRST, ids=lambda p: p.name)
def test_first_screen_shows_the_first_decoded_rows(trace):
    first = shown_rows(trace)[:5]

    async def go():
        app = app_for(trace)
        async with app.run_test(size=(160, 40)) as pilot:
            await until(pilot, lambda: app.rows.n >= 5)
            await pilot.pause()
            screen = screen_text(app)
            for row in first:
                assert row[:100] in screen
    run(go())


def test_first_screen_comes_before_the_whole_file_is_read(tmp_path):
    big = tmp_path / "big.log"
    one = (SPY / "softhsm2-pkcs11-tool.log").read_bytes()
    big.write_bytes(one * 40)  # ~10 MB: seconds to index, the first screen at once

    async def go():
        app = app_for(big)
        async with app.run_test(size=(120, 30)) as pilot:
            await until(pilot, lambda: app.timeline.row is not None)
            assert not app.indexed and app.indexer.fraction() < 1
            assert "C_GetInterface" in screen_text(app) or "C_Initialize" in screen_text(app)
            app.indexer.stop()
    run(go())


@pytest.mark.parametrize("trace", TRACES, ids=lambda p: p.name)
def test_index_has_one_row_per_line_of_tail_and_no_secret(trace):
    tail = pkspy("tail", "--no-follow", str(trace))
    assert tail.returncode == 0, tail.stderr
    count = len(tail.stdout.decode().splitlines())
    forms = fixture_secret_forms(trace)

    async def go():
        app = app_for(trace)
        async with app.run_test(size=(200, 50)) as pilot:
            await indexed(pilot)
            assert app.rows.n == count
            screen = screen_text(app)
            assert f"{count:,} rows" in screen
            assert not [f for f in forms if f in screen]
            for r in range(app.rows.n):  # every detail the pane can show
                text = detail.render(app.rows.event(r), trace.name).plain
                assert not [f for f in forms if f in text], (r, text)
            for _ in range(3):  # the first failures, with their detail
                await pilot.press("e")
                await pilot.pause()
                assert not [f for f in forms if f in screen_text(app)]
    run(go())


def _login_row(app) -> int:
    rows = app.rows
    for r in range(rows.n):
        event = rows.event(r)
        if getattr(event, "function", None) == "C_Login" and event.process == 1:
            return r
    raise AssertionError("no C_Login in process 1")


def test_failed_login_shows_its_result_and_masked_raw_lines():
    async def go():
        app = app_for(LOGIN_TRACE)
        async with app.run_test(size=(120, 70)) as pilot:  # room for the whole detail
            await indexed(pilot)
            row = _login_row(app)
            assert app.rows.event(row).seq == 7
            app.jump(row)
            await pilot.pause()
            screen = screen_text(app)
            assert "C_Login" in screen and "CKR_PIN_INCORRECT" in screen
            assert "211 [in] pPin" not in screen  # the raw lines are numbered:
            assert re.search(r"^ *211 7: C_Login", screen, re.M), screen
            assert re.search(r"^ *216 +00000000  (\*\* ){10}", screen, re.M), screen
            assert "‹PIN redacted, 10 bytes›" in screen
            assert "hint:" in screen
            assert not [f for f in fixture_secret_forms(LOGIN_TRACE) if f in screen]
    run(go())


def test_logins_pane_lists_the_failed_login_and_selecting_it_filters_to_its_session():
    async def go():
        app = app_for(LOGIN_TRACE)
        async with app.run_test(size=(120, 40)) as pilot:
            await indexed(pilot)
            await pilot.press("3")
            await pilot.pause()
            table = app.query_one("#logins-table", Pane)
            assert table.row_count == 4 + 2  # and two tokens saying the PIN count is low
            assert "CKR_PIN_INCORRECT" in screen_text(app)
            await pilot.press("enter")  # the first login: p1 #7, the failed one
            await pilot.pause()
            timeline = app.timeline
            assert app.query_one("#tabs").active == "timeline"
            assert timeline.row == _login_row(app)
            view = timeline.view
            assert 0 < len(view) < app.rows.n
            assert {(app.rows.process[view.row(i)], app.rows.session[view.row(i)])
                    for i in range(len(view))} == {(1, 1)}
            assert "filter: p1 session 0x1" in screen_text(app)
            await pilot.press("escape")
            await pilot.pause()
            assert len(timeline.view) == app.rows.n and timeline.row == _login_row(app)
    run(go())


@pytest.mark.parametrize("trace", [ROOT / "fixtures" / "pcsc-spy" / "pyscard.raw",
                                   ROOT / "fixtures" / "opensc-debug" / "opensc-tool-d9.log"],
                         ids=lambda p: p.name)
def test_logins_pane_shows_the_tries_a_card_has_left(trace):
    commands = summary(trace)["pin_commands"]
    assert any(p["tries_left"] is not None for p in commands)
    forms = fixture_secret_forms(trace)

    async def go():
        app = app_for(trace)
        async with app.run_test(size=(160, 40)) as pilot:
            await indexed(pilot)
            await pilot.press("3")
            await pilot.pause()
            screen = screen_text(app)
            for p in commands:  # each PIN command the card answered, with its status
                left = f"{p['tries_left']} tries left" if p["tries_left"] is not None else ""
                assert re.search(rf"^ *p{p['process']} +{p['command']} +ref {p['reference']} +"
                                 rf"{p['sw']}.*{left}.* {p['line']} *$", screen, re.M), p
            assert not [f for f in forms if f in screen]
    run(go())


def test_session_filter_narrows_the_timeline():
    async def go():
        app = app_for(LOGIN_TRACE)
        async with app.run_test(size=(120, 40)) as pilot:
            await indexed(pilot)
            await pilot.press("2")
            await pilot.pause()
            table = app.query_one("#sessions-table", Pane)
            assert table.row_count == 4
            await pilot.press("down", "enter")  # p2's session
            await pilot.pause()
            view = app.timeline.view
            assert 0 < len(view) < app.rows.n
            rows = [view.row(i) for i in range(len(view))]
            assert {(app.rows.process[r], app.rows.session[r]) for r in rows} == {(2, 1)}
            assert "C_OpenSession" in app.rows.text(rows[0])
    run(go())


def test_errors_pane_enter_jumps_to_the_call_in_the_timeline():
    async def go():
        app = app_for(LOGIN_TRACE)
        async with app.run_test(size=(120, 40)) as pilot:
            await indexed(pilot)
            await pilot.press("6")
            await pilot.pause()
            errors = app.query_one("#errors-view", Timeline)
            assert len(errors.view) == sum(1 for r in range(app.rows.n)
                                           if app.rows.flags[r] & 3)
            pos = errors.view.find("C_Login", 0)
            assert pos is not None
            errors.cursor = pos
            await pilot.press("enter")
            await pilot.pause()
            assert app.query_one("#tabs").active == "timeline"
            assert app.timeline.row == _login_row(app)
            assert app.timeline.has_focus
            assert "CKR_PIN_INCORRECT" in screen_text(app)
    run(go())


@pytest.mark.parametrize("reveal", [False, True], ids=["redacted", "revealed"])
def test_reveal_secrets_shows_the_pin_under_a_banner_that_stays(reveal):
    wrong_pin = expected(LOGIN_TRACE)["secrets"]["wrong_pin"]

    async def go():
        app = app_for(LOGIN_TRACE, reveal=reveal)
        async with app.run_test(size=(80, 24)) as pilot:
            await indexed(pilot)
            await pilot.press("e")  # the failed C_Login: its PIN in the detail pane
            await pilot.pause()
            screen = screen_text(app)
            assert "C_Login" in screen
            assert (wrong_pin in screen) == reveal
            assert ("‹PIN redacted, 10 bytes›" in screen) != reveal
            assert ("!! WARNING --reveal-secrets" in screen.splitlines()[0]) == reveal
            # no key, tab or filter takes the banner away
            for keys in (["d"], ["escape"], ["3"], ["6"], ["x"], ["d", "1"]):
                await pilot.press(*keys)
                await pilot.pause()
                assert ("--reveal-secrets: PINs and keys are shown in clear"
                        in screen_text(app)) == reveal, keys
    run(go())


def test_reveal_secrets_warns_on_stderr_too(tmp_path):
    r = pkspy("view", "--reveal-secrets", str(tmp_path / "missing.log"))
    assert r.returncode == 2
    assert b"warning: --reveal-secrets: PINs and keys are shown in clear" in r.stderr
    r = pkspy("view", str(tmp_path / "missing.log"))
    assert b"warning" not in r.stderr


def test_mouse_opens_a_tab_picks_a_row_and_double_click_jumps_to_it():
    async def go():
        app = app_for(LOGIN_TRACE)
        async with app.run_test(size=(120, 40)) as pilot:
            await indexed(pilot)
            await pilot.click("Tab#--content-tab-errors")
            await pilot.pause()
            assert app.query_one("#tabs").active == "errors"
            errors = app.query_one("#errors-view", Timeline)
            await pilot.click(errors, offset=(5, 1))  # the second failure
            await pilot.pause()
            assert errors.cursor == 1
            second = errors.view.row(1)
            assert "C_GetAttributeValue" in app.rows.text(second)
            await pilot.double_click(errors, offset=(5, 1))
            await pilot.pause()
            assert app.query_one("#tabs").active == "timeline"
            assert app.timeline.row == second
    run(go())


def test_search_and_error_keys():
    async def go():
        app = app_for(LOGIN_TRACE)
        async with app.run_test(size=(120, 40)) as pilot:
            await indexed(pilot)
            await pilot.press("e")
            await pilot.pause()
            assert app.timeline.row == _login_row(app)  # the first failure of the trace
            await pilot.press("slash", *"[/x] no such", "enter")  # not markup: not found
            await pilot.pause()
            assert "/[/x] no such" in screen_text(app)
            await pilot.press("home", "slash", "ctrl+u", *"ec-0.27", "enter")
            await pilot.pause()
            found = app.rows.text(app.timeline.row)
            assert "ec-0.27" in found and "C_GenerateKeyPair" in found
            await pilot.press("n")
            await pilot.pause()
            assert "ec-0.27" in app.rows.text(app.timeline.row)
            await pilot.press("g", *"216", "enter")  # a line inside the C_Login record
            await pilot.pause()
            assert app.timeline.row == _login_row(app)
            await pilot.press("x")
            await pilot.pause()
            view = app.timeline.view
            assert len(view) == sum(1 for r in range(app.rows.n) if app.rows.flags[r] & 3)
    run(go())


def test_objects_pane_names_the_keys_and_filters_to_their_calls():
    async def go():
        app = app_for(LOGIN_TRACE)
        async with app.run_test(size=(160, 40)) as pilot:
            await indexed(pilot)
            await pilot.press("4")
            await pilot.pause()
            screen = screen_text(app)
            assert "CKO_PRIVATE_KEY" in screen and "CKK_EC" in screen
            await pilot.press("enter")
            await pilot.pause()
            flt = app.timeline.view.filter
            assert flt.object is not None and len(app.timeline.view) > 0
            # an object a lookup found: its row shows that lookup's template in the
            # detail pane, and Enter starts the object's calls at the lookup
            found = next(o for o in summary(LOGIN_TRACE)["objects"] if o["found_by"])
            await pilot.press("4")
            await pilot.pause()
            table = app.query_one("#objects-table", Pane)
            want = (f"p{found['process']}", found["handle"])
            pos = next(i for i in range(table.row_count)
                       if tuple(str(c) for c in table.get_row_at(i)[:2]) == want)
            table.move_cursor(row=pos)
            await pilot.pause()
            assert "C_FindObjectsInit" in screen_text(app)
            await pilot.press("enter")
            await pilot.pause()
            first = app.rows.text(app.timeline.row)
            assert "C_FindObjects " in first and found["handle"] in first, first
            assert app.timeline.view.filter.object == int(found["handle"], 16)
    run(go())


@pytest.mark.parametrize("trace", FIRST, ids=lambda p: p.name)
def test_no_secret_on_any_tab(trace):
    forms = fixture_secret_forms(trace)

    async def go():
        app = app_for(trace)
        async with app.run_test(size=(200, 50)) as pilot:
            await indexed(pilot)
            for key in "234567":
                await pilot.press(key)
                await pilot.pause()
                screen = screen_text(app)
                assert not [f for f in forms if f in screen], key
    run(go())


OTHER_TRACERS = [*sorted((ROOT / "fixtures" / "p11-kit").glob("*.log")),
                 *sorted((ROOT / "fixtures" / "pkcs11-logger").glob("*.log"))]


@pytest.mark.parametrize("trace", OTHER_TRACERS, ids=lambda p: p.name)
def test_p11kit_and_pkcs11_logger_traces_show_their_calls_and_no_secret(trace):
    forms = fixture_secret_forms(trace)
    first = [e.function for e in open_events(str(trace))[1]
             if getattr(e, "function", None)][:2]

    async def go():
        app = app_for(trace)
        async with app.run_test(size=(160, 40)) as pilot:
            await indexed(pilot)
            screen = screen_text(app)
            assert len(first) == 2 and all(f in screen for f in first), (first, screen)
            assert not [f for f in forms if f in screen]
            await pilot.press("e")  # the first failure, and its detail
            await pilot.pause()
            assert not [f for f in forms if f in screen_text(app)]
    run(go())


def test_several_files_in_one_timeline():
    second = ROOT / "fixtures" / "opensc-debug" / "pkcs11-tool-L-d9.log"

    async def go():
        app = app_for(LOGIN_TRACE, second)
        async with app.run_test(size=(120, 30)) as pilot:
            await indexed(pilot)
            assert app.rows.n == len(shown_rows(LOGIN_TRACE)) + len(shown_rows(second))
            assert set(app.rows.file) == {0, 1}
            assert " 1 " in screen_text(app)
    run(go())


LINK = ROOT / "fixtures" / "link"  # a spy log and a debug log of the same runs


def test_two_traces_of_one_run_are_interleaved_by_time():
    spy, debug = LINK / "spy.log", LINK / "debug.log"
    _formats, merged = open_merged([str(spy), str(debug)])
    order = [(i, e.line) for i, e in merged if is_shown(e)]

    async def go():
        app = app_for(spy, debug)
        async with app.run_test(size=(120, 30)) as pilot:
            await indexed(pilot)
            rows = app.rows
            assert [(rows.file[r], rows.line[r]) for r in range(rows.n)] == order
            # interleaved, not one file after the other, each file in its own order
            switches = sum(rows.file[r] != rows.file[r - 1] for r in range(1, rows.n))
            assert switches > 10
            for f in (0, 1):
                lines = [rows.line[r] for r in range(rows.n) if rows.file[r] == f]
                assert lines == sorted(lines)
            assert "1:spy.log  2:debug.log" in screen_text(app)
    run(go())


def test_merged_traces_keep_every_secret_redacted():
    card = ROOT / "fixtures" / "opensc-debug" / "opensc-tool-d9.log"  # VERIFY with PINs
    forms = fixture_secret_forms(LOGIN_TRACE) + fixture_secret_forms(card)

    async def go():
        app = app_for(LOGIN_TRACE, card)
        async with app.run_test(size=(160, 50)) as pilot:
            await indexed(pilot)
            await until(pilot, lambda: app.links is not None)  # a spy and a debug log
            assert set(app.rows.file) == {0, 1}
            for r in range(app.rows.n):
                text = app._event_detail(r).plain  # with any linked APDUs
                assert not [f for f in forms if f in text], (r, text)
            for key in "1234567":
                await pilot.press(key)
                await pilot.pause()
                assert not [f for f in forms if f in screen_text(app)], key
    run(go())


def test_go_to_line_finds_the_row_of_each_merged_file():
    traces = open_traces([str(LINK / "spy.log"), str(LINK / "debug.log")])
    rows = Rows()
    Indexer(traces, rows).run()
    for f, trace in enumerate(traces):
        mine = [(rows.line[r], r) for r in range(rows.n) if rows.file[r] == f]
        last = len(Path(trace.path).read_text().splitlines())
        for line in range(1, last + 2):
            before = [at for at, _r in mine if at <= line]
            got = rows.at_line(f, line)
            if not before:
                assert got is None
            else:
                assert rows.file[got] == f and rows.line[got] == max(before), (f, line)


def test_a_spy_call_shows_the_apdus_of_the_debug_log_it_caused():
    spy, debug = LINK / "spy.log", LINK / "debug.log"
    calls, links = link_paths(str(spy), str(debug))
    call = next(c for c in calls if c.function == "C_GetSlotInfo" and c.line in links)
    apdus = [e for e in links[call.line] if isinstance(e, ApduExchange)]
    assert apdus

    async def go():
        app = app_for(spy, debug)
        async with app.run_test(size=(120, 50)) as pilot:
            await indexed(pilot)
            await until(pilot, lambda: app.links is not None)
            app.jump(app.row_at_line(0, call.line))
            await pilot.pause()
            screen = screen_text(app)
            assert f"{len(links[call.line])} linked from debug.log" in screen, screen
            shown = app.query_one("#detail-text", Static).content.plain  # all, scrolled
            for e in apdus:  # each with its line in the debug log, the first on screen
                line = rf"^ *{e.line} APDU {re.escape(format_apdu(e)[:40])}"
                assert re.search(line, shown, re.M), (e.line, shown)
            assert re.search(rf"^ *{apdus[0].line} APDU ", screen, re.M), screen
            # and the other way: an APDU names the call it happened in
            app.jump(app.row_at_line(1, apdus[0].line))
            await pilot.pause()
            assert (f"during spy.log line {call.line}: #{call.seq} C_GetSlotInfo"
                    in screen_text(app))
    run(go())


def test_follow_picks_up_appended_records(tmp_path):
    grown = tmp_path / "grown.log"
    lines = LOGIN_TRACE.read_bytes().splitlines(keepends=True)
    grown.write_bytes(b"".join(lines[:300]))
    total = len(shown_rows(LOGIN_TRACE))

    async def go():
        app = app_for(grown, follow=True)
        async with app.run_test(size=(120, 30)) as pilot:
            await until(pilot, lambda: app.indexer.caught_up)
            await pilot.pause(0.1)
            before = app.rows.n
            assert 0 < before < total and "FOLLOWING" in screen_text(app)
            await pilot.press("end")
            with grown.open("ab") as f:
                f.write(b"".join(lines[300:]))
            await until(pilot, lambda: app.rows.n >= total - 1)
            await pilot.pause(0.3)
            assert app.timeline.row is not None and app.timeline.row >= total - 2
            app.indexer.stop()
    run(go())


def test_view_refuses_missing_files_and_stdin(tmp_path):
    r = pkspy("view", str(tmp_path / "missing.log"))
    assert r.returncode == 2 and b"no such file" in r.stderr
    r = pkspy("view", "-")
    assert r.returncode == 2 and b"stdin" in r.stderr
    # with several files, the one that cannot be read is named, in one line
    r = pkspy("view", str(LOGIN_TRACE), str(tmp_path / "missing.log"))
    assert r.returncode == 2 and r.stderr.count(b"\n") == 1 and b"missing.log: no such" in r.stderr
    notes = tmp_path / "notes.txt"
    notes.write_text("shopping list\n")
    r = pkspy("view", str(LOGIN_TRACE), str(notes))
    assert r.returncode == 3 and b"notes.txt: not a trace format" in r.stderr
    assert b"Traceback" not in r.stderr


def test_small_terminal_and_no_color(monkeypatch):
    monkeypatch.setenv("NO_COLOR", "1")

    async def go():
        app = app_for(LOGIN_TRACE)
        async with app.run_test(size=(80, 24)) as pilot:
            await indexed(pilot)
            app.jump(_login_row(app))
            await pilot.pause()
            screen = screen_text(app)
            # the row came into view, failures are marked without colour, and the
            # narrow row puts the result before the arguments: it is not cut off
            assert re.search(r"^! 14:16:11.878 p1 +#7 C_Login -> CKR_PIN_INCORRECT", screen,
                             re.M), screen
            footer = screen.splitlines()[-1]  # the key help, every shown key
            for key in ("/ search", "e error", "x failures", "s session", "g line",
                        "? keys", "q quit"):
                assert key in footer, footer
    run(go())


@pytest.mark.parametrize("no_color", [False, True], ids=["colour", "NO_COLOR"])
def test_every_pane_is_usable_at_80x24(monkeypatch, no_color):
    """What each pane is for fits in 80 columns, the key help stays, and failures
    are marked by a character, not only by colour."""
    if no_color:
        monkeypatch.setenv("NO_COLOR", "1")
    else:
        monkeypatch.delenv("NO_COLOR", raising=False)
    truth = summary(LOGIN_TRACE)
    functions = truth["statistics"]["functions"]
    sessions = {(s["process"], s["opened_seq"]): s for s in truth["sessions"]}

    async def go():
        app = app_for(LOGIN_TRACE)
        async with app.run_test(size=(80, 24)) as pilot:
            await indexed(pilot)
            assert app.no_color == no_color
            seen = {}
            for key in "1234567":
                await pilot.press(key)
                await pilot.pause()
                seen[key] = screen = screen_text(app)
                assert "? keys" in screen.splitlines()[-1] and "q quit" in screen, key
            # sessions: each session's mode, login state, and how many calls it had
            for (proc, opened), sess in sessions.items():
                user = sess["user"] or "-"
                assert re.search(rf"^ *p{proc} +0x1 +0x2d76028c +R[OW] +{user} +#{opened} ",
                                 seen["2"], re.M), seen["2"]
            # logins: the result and what it means, tokens' PIN flags
            assert re.search(r"^ *p1 +#7 +0x1 +CKR_PIN_INCORRECT +wrong PIN", seen["3"], re.M)
            assert "CKF_SO_PIN_LOCKED" in seen["3"] and "CKF_USER_PIN_COUNT_LOW" in seen["3"]
            assert "CKO_PRIVATE_KEY" in seen["4"] and "ec-0.27.1" in seen["4"]
            assert "no APDU exchanges in these traces" in seen["5"]  # a spy log has none
            # errors: every row marked, its result in view
            rows = [ln for ln in seen["6"].splitlines() if re.match(r"^. \d\d:", ln)]
            assert rows and all(ln.startswith("! ") and " -> CKR_" in ln for ln in rows), rows
            # what the 80 columns cut off, the detail pane shows: a session's operations
            await pilot.press("2", "down")
            await pilot.pause()
            sess = truth["sessions"][1]
            shown = " ".join(screen_text(app).split())
            assert sess["operations"] and f"session: {sess['handle']}" in shown
            for kind, op in sess["operations"].items():
                failed = f" ({op['failed']} failed)" if op["failed"] else ""
                assert re.search(rf"operations: .*{kind} {op['count']}{re.escape(failed)}",
                                 shown), (kind, shown)
            # statistics: count and failures in all and per function (the most called
            # in view; the rest a scroll away)
            failed = sum(f["failed"] for f in functions.values())
            assert re.search(rf"^ *calls +{truth['calls']} +{failed}", seen["7"], re.M)
            for name in ("C_GetAttributeValue", "C_GetMechanismInfo"):
                f = functions[name]
                assert re.search(rf"^ *{name} +{f['count']} +{f['failed']} ", seen["7"],
                                 re.M), seen["7"]
    run(go())


def test_sessions_show_their_operations_and_statistics_the_durations():
    spy, debug = LOGIN_TRACE, ROOT / "fixtures" / "opensc-debug" / "pkcs11-tool-L-d9.log"
    truth, truth_debug = summary(spy), summary(debug)

    async def go():
        app = app_for(spy, debug)
        async with app.run_test(size=(200, 90)) as pilot:
            await indexed(pilot)
            await pilot.press("2")
            await pilot.pause()
            lines = screen_text(app).splitlines()
            for sess in truth["sessions"]:
                row = next(ln for ln in lines if re.match(rf"^ *1:p{sess['process']} +0x1 ", ln))
                for kind, op in sess["operations"].items():
                    failed = f" ({op['failed']} failed)" if op["failed"] else ""
                    assert f"{kind} {op['count']}{failed}" in row, (kind, row)
            await pilot.press("7")
            await pilot.pause()
            screen = screen_text(app)
            # the spy stamps only when a call began: its durations are upper bounds
            stat = truth["statistics"]["functions"]["C_GetAttributeValue"]
            assert re.search(rf"^ *C_GetAttributeValue +{stat['count']} +{stat['failed']} +"
                             rf"max ≤{stat['bound_max_ms']:.0f} ms, total "
                             rf"≤{stat['bound_total_ms']:.0f} ", screen, re.M), screen
            # OpenSC's debug log times its own functions: measured
            stat = truth_debug["statistics"]["opensc_functions"]["sc_connect_card"]
            assert re.search(rf"^ *sc_connect_card +{stat['count']} +{stat['failed']} +"
                             rf"max {stat['max_ms']:.1f} ms, total {stat['total_ms']:.1f} ",
                             screen, re.M), screen
    run(go())


@pytest.mark.parametrize("trace", [LOGIN_TRACE, SPY / "softhsm2-threads.log",
                                   ROOT / "fixtures" / "opensc-debug" / "pkcs11-tool-L-d9.log"],
                         ids=lambda p: p.name)
def test_narrow_rows_move_words_but_lose_none(trace):
    """At 80 columns a call's result comes before its arguments and the pid and
    thread go (the detail pane has them); every other word stays."""
    for event in open_events(str(trace))[1]:
        if not is_shown(event):
            continue
        wide = format_event(event).replace("\n", " ")
        narrow = compact(wide, event.kind == "call")
        dropped = Counter(wide.split()) - Counter(narrow.split())
        added = Counter(narrow.split()) - Counter(wide.split())
        assert all(re.fullmatch(r"p\d+/\S+", w) for w in dropped), (wide, narrow)
        assert set(added) <= {"·"} | {w.split("/")[0] for w in dropped}, (wide, narrow)
        if event.kind == "call" and event.rv is not None:
            # the result right after the function
            name = event.function or "(result without call)"
            assert re.search(rf"#\S+ +{re.escape(name)} -> ", narrow), narrow


def test_no_color_detail_keeps_failures_distinct():
    """NO_COLOR: the detail's red (a failed result) becomes bold, other colours go."""
    app_trace = open_traces([str(LOGIN_TRACE)])[0]
    call = next(e for _, e in app_trace.stream
                if getattr(e, "function", None) == "C_Login" and e.rv)
    text = detail.monochrome(detail.render(call))
    styles = {text.plain[s.start:s.end]: s.style for s in text.spans}
    failed = next(v for k, v in styles.items() if "CKR_PIN_INCORRECT" in k)
    assert failed.bold and failed.color is None
    assert all(v.color is None for v in styles.values())


def test_question_mark_lists_every_key_and_hides_again():
    async def go():
        app = app_for(LOGIN_TRACE)
        async with app.run_test(size=(120, 60)) as pilot:
            await indexed(pilot)
            await pilot.press("question_mark")
            await pilot.pause()
            assert app.screen.query("HelpPanel")
            screen = screen_text(app)
            for words in ("previous error", "previous match", "detail", "function"):
                assert words in screen, words  # keys the footer leaves out
            await pilot.press("question_mark")
            await pilot.pause()
            assert not app.screen.query("HelpPanel")
    run(go())


def test_command_palette_narrows_to_a_function():
    async def go():
        app = app_for(LOGIN_TRACE)
        async with app.run_test(size=(120, 40)) as pilot:
            await indexed(pilot)
            await pilot.press("ctrl+p")
            await pilot.pause(0.3)
            await pilot.press(*"Only C_Login")
            await until(pilot, lambda: "Only C_Login" in screen_text(app))
            await pilot.pause(0.3)
            await pilot.press("enter")
            await until(pilot, lambda: app.timeline.view.filter.function == "C_Login")
            assert len(app.timeline.view) == 4
    run(go())


@pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux")
def test_view_in_a_real_terminal():
    """pkspy view in tmux at 80x24 without colour: the failed login is found, marked
    and explained, the Logins pane lists it and takes the timeline to its session."""
    session = f"pkspy-view-test-{os.getpid()}"
    command = f"env NO_COLOR=1 {sys.executable} -m pkspy view {LOGIN_TRACE}"
    subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", "80", "-y", "24",
                    "-c", str(ROOT), command], check=True)
    forms = fixture_secret_forms(LOGIN_TRACE)

    def screen() -> str:
        return subprocess.run(["tmux", "capture-pane", "-p", "-t", session],
                              capture_output=True, text=True).stdout

    def press(key: str) -> None:
        subprocess.run(["tmux", "send-keys", "-t", session, key], check=True)

    def wait_for(pattern: str) -> str:
        end = time.monotonic() + 30
        out = ""
        while time.monotonic() < end:
            out = screen()
            if re.search(pattern, out, re.M):
                assert not [f for f in forms if f in out], out
                return out
            time.sleep(0.1)
        raise AssertionError(f"{pattern!r} not on the screen:\n{out}")

    try:
        out = wait_for(r"^294 rows")
        assert "C_GetInterface -> CKR_OK" in out
        assert "? keys" in out.splitlines()[-1] and "q quit" in out.splitlines()[-1]
        press("e")  # the first failure: the login with the wrong PIN, marked without colour
        out = wait_for(r"^\s*hint:")
        assert re.search(r"^! 14:16:11.878 p1 +#7 C_Login -> CKR_PIN_INCORRECT", out, re.M), out
        assert "pPin = ‹PIN redacted, 10 bytes›" in out
        press("3")  # the Logins pane: that login first, with what its result means
        out = wait_for(r"^ *p1 +#7 +0x1 +CKR_PIN_INCORRECT +wrong PIN")
        press("Enter")  # its session, in the timeline
        out = wait_for(r"filter: p1 session 0x1")
        rows = [ln for ln in out.splitlines() if re.match(r"^[!~ ] \d\d:\d\d:", ln)]
        assert rows and all(" p1 " in ln for ln in rows), out
        assert any("C_OpenSession -> CKR_OK session=0x1" in ln for ln in rows), out
        press("q")
        end = time.monotonic() + 10
        while subprocess.run(["tmux", "has-session", "-t", session],
                             capture_output=True).returncode == 0:
            assert time.monotonic() < end, "q did not quit"
            time.sleep(0.1)
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)


def test_table_cells_are_text_not_markup():
    from textual.app import App

    class One(App):
        def compose(self):
            yield Pane(("label", "id"), id="t")

    async def go():
        app = One()
        async with app.run_test(size=(60, 10)) as pilot:
            app.query_one(Pane).fill([(("[/bold] odd [b]label", "01"), None)])
            await pilot.pause()
            assert "[/bold] odd [b]label" in screen_text(app)
    run(go())


def test_statistics_lists_where_the_trace_is_damaged_and_enter_goes_there(tmp_path):
    # a real trace with a pasted line of garbage and a record cut short at the end
    lines = LOGIN_TRACE.read_text().splitlines(keepends=True)
    header = re.compile(r"^\d+: C_")
    garbage_at = next(i for i in range(len(lines) // 2, len(lines)) if header.match(lines[i]))
    damaged = tmp_path / "damaged.log"
    damaged.write_text("".join([*lines[:garbage_at], "%%% pasted garbage %%%\n",
                                *lines[garbage_at:-3]]))
    truth = summary(damaged)["damage"]
    assert any(d["kind"] == "unparsed" for d in truth), truth

    async def go():
        app = app_for(damaged)
        async with app.run_test(size=(160, 60)) as pilot:
            await indexed(pilot)
            await pilot.press("7")
            await pilot.pause()
            table = app.query_one("#stats-table", Pane)
            cells = [[str(c) for c in table.get_row_at(i)] for i in range(table.row_count)]
            listed = [(i, c) for i, c in enumerate(cells) if c[0].strip().startswith("line ")]
            assert [c[0].split()[1].split("-")[0] for _, c in listed] == \
                [str(d["line"]) for d in truth]
            pos, _ = next((i, c) for i, c in listed if "unparsed" in c[4])
            table.move_cursor(row=pos)
            await pilot.press("enter")
            await pilot.pause()
            assert app.query_one("#tabs").active == "timeline"
            assert app.rows.line[app.timeline.row] == garbage_at + 1
            assert "pasted garbage" in app.rows.text(app.timeline.row)
    run(go())
