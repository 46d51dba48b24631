"""What ``pkspy view`` does before its first screen: only what that screen needs.

Start-up is mostly imports, so the modules only some rows or some keys need
(the explain tables, other formats' parsers, the summary's scanner) load when
they are first used; each import check runs in a fresh interpreter, where
sys.modules says what was really imported. The hidden tabs are built, and
garbage collection resumes, once the first screen is drawn.
"""

from __future__ import annotations

import asyncio
import gc
import json
import subprocess
import sys
import time

import pytest
from conftest import ROOT, summary

from pkspy import formats
from pkspy.tui.app import ViewerApp
from pkspy.tui.index import open_traces
from pkspy.tui.widgets.panes import Pane

SPY_LOG = "fixtures/pkcs11-spy/softhsm2-pkcs11-tool.log"
LOGIN_TRACE = ROOT / "fixtures" / "pkcs11-spy" / "pkcs11-spy-0.27.1-softhsm2.log"
DEBUG_LOG = "fixtures/opensc-debug/opensc-tool-d3.log"
# Never needed to show a trace's first rows.
LATER = ("decoders.explain", "pkspy.report.summary", "pkspy.fastscan",
         "pkspy.tui.widgets.panes", "textual.widgets._data_table", "asn1crypto",
         "pkspy.formats.pkcs11_logger", "pkspy.formats.p11kit", "pkspy.formats.pcscd",
         "pkspy.formats.pcsc_spy", "pkspy.formats.pcsc_spy_text", "pkspy.formats.hex_apdu")


def _imported_after(code: str) -> set[str]:
    """The modules a fresh interpreter holds after running ``code``."""
    out = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport json, sys; print(json.dumps(sorted(sys.modules)))"],
        cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return set(json.loads(out.splitlines()[-1]))


@pytest.mark.parametrize("fmt", formats.names())
def test_each_format_loads_the_parser_that_names_it(fmt):
    assert formats.PARSERS[fmt].format == fmt


def test_the_command_line_loads_only_the_command_it_runs():
    """`pkspy view` goes through pkspy.cli: it holds none of the other front ends."""
    loaded = _imported_after("import pkspy.cli")
    others = {"pkspy.report.export", "pkspy.report.explain", "pkspy.report.tail",
              "pkspy.record_memo", "pkspy.formats.spy", *LATER}
    assert not loaded & others, sorted(loaded & others)


@pytest.mark.parametrize(("trace", "parser"), [(SPY_LOG, "pkspy.formats.spy"),
                                               (DEBUG_LOG, "pkspy.formats.opensc_debug")])
def test_opening_a_trace_for_view_leaves_the_rest_unimported(trace, parser):
    loaded = _imported_after(
        "from pkspy.tui.app import ViewerApp\n"
        "from pkspy.tui.index import open_traces\n"
        f"traces = open_traces([{trace!r}])\n"
        "next(iter(traces[0].stream))\n"  # format detected, the first event parsed
        "assert ViewerApp(traces).traces\n")
    assert parser in loaded
    assert not loaded & set(LATER), sorted(loaded & set(LATER))


def test_a_tab_opened_at_start_shows_its_table_once_built():
    """The hidden tabs' tables are built after the first screen: a key pressed at once
    still opens a filled, focused table."""
    sessions = len(summary(LOGIN_TRACE)["sessions"])

    async def go():
        app = ViewerApp(open_traces([str(LOGIN_TRACE)]))
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.press("2")
            end = time.monotonic() + 30
            while not app.indexed:
                assert time.monotonic() < end, "timed out indexing"
                await pilot.pause(0.02)
            await pilot.pause()
            table = app.query_one("#sessions-table", Pane)
            assert app.query_one("#tabs").active == "sessions"
            assert app.focused is table
            assert table.row_count == sessions
    asyncio.run(go())


def test_garbage_collection_resumes_after_the_first_screen():
    """Paused while the first screen is built, never left off: not while the app runs,
    not after it ends, even when it is closed as soon as it has started."""
    assert gc.isenabled()

    async def go(stop_at_once: bool):
        app = ViewerApp(open_traces([str(LOGIN_TRACE)]))
        async with app.run_test(size=(120, 40)) as pilot:
            if stop_at_once:
                return
            end = time.monotonic() + 30
            while not app.indexed:
                assert time.monotonic() < end, "timed out indexing"
                await pilot.pause(0.02)
            assert gc.isenabled()
    for stop_at_once in (False, True):
        asyncio.run(go(stop_at_once))
        assert gc.isenabled()
