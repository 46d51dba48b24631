"""pkspy view: snapshots of the main screens (pytest-textual-snapshot).

The SVGs live in tests/__snapshots__/test_tui_snapshots/. After a deliberate
change to the screens, look at the new ones and rewrite them with
``python3 -m pytest tests/test_tui_snapshots.py --snapshot-update``.

What would change from run to run is pinned: the trace is named by a path
relative to the repository (the status bar shows it), the time indexing took
is set to a fixed value, colours are on (NO_COLOR unset) but for the one
NO_COLOR screen. The undated debug log is dated from the spy log beside it,
not from its file's time.
"""

from __future__ import annotations

import time

import pytest
from conftest import ROOT

from pkspy.tui.app import ViewerApp
from pkspy.tui.index import open_traces

LOGIN_TRACE = "fixtures/pkcs11-spy/pkcs11-spy-0.27.1-softhsm2.log"
SMALL, LARGE = (80, 24), (140, 45)


@pytest.fixture
def viewer(monkeypatch):
    """An app over a trace named relative to the repository, colours on."""
    monkeypatch.chdir(ROOT)
    monkeypatch.delenv("NO_COLOR", raising=False)

    def make(*paths: str, reveal: bool = False) -> ViewerApp:
        return ViewerApp(open_traces(list(paths or [LOGIN_TRACE]), reveal=reveal),
                         reveal=reveal)
    return make


async def _indexed(pilot) -> None:
    """Wait for the whole trace, then pin the one number that varies: the time it took."""
    app = pilot.app
    end = time.monotonic() + 30
    while not app.indexed or (len(app.traces) > 1 and app.links is None):
        assert time.monotonic() < end, "timed out indexing"
        await pilot.pause(0.02)
    app.indexed_at = 1.0
    app._status()
    await pilot.pause()


def _keys_then_indexed(*keys: str):
    async def before(pilot) -> None:
        await _indexed(pilot)
        await pilot.press(*keys)
        await pilot.pause()
    return before


SCREENS = {
    # the first screen: the trace from its top, the first event in the detail pane
    "timeline": (),
    # the failed C_Login: its row marked, its detail (result, hint, masked raw lines)
    "detail_failed_login": ("e",),
    # a generated key pair: templates with decoded attributes (DER EC parameters)
    "detail_key_pair": ("slash", *"C_GenerateKeyPair", "enter"),
    "logins": ("3",),
    "errors": ("6",),
    "sessions": ("2",),
    "statistics": ("7",),
}


@pytest.mark.parametrize("size", [SMALL, LARGE], ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("screen", list(SCREENS))
def test_screen(snap_compare, viewer, screen, size):
    assert snap_compare(viewer(), run_before=_keys_then_indexed(*SCREENS[screen]),
                        terminal_size=size)


def test_no_color_small(snap_compare, viewer, monkeypatch):
    """NO_COLOR at 80x24: the failed login still stands out (its '!' mark, bold)."""
    monkeypatch.setenv("NO_COLOR", "1")
    assert snap_compare(viewer(), run_before=_keys_then_indexed("e"), terminal_size=SMALL)


def test_reveal_banner_small(snap_compare, viewer):
    assert snap_compare(viewer(reveal=True), run_before=_keys_then_indexed("e"),
                        terminal_size=SMALL)


def test_merged_and_linked(snap_compare, viewer):
    """A spy log and a debug log of the same run: one timeline by time, each row
    marked by its file; below, the APDUs and failures of the debug log a call caused."""
    assert snap_compare(viewer("fixtures/link/spy.log", "fixtures/link/debug.log"),
                        run_before=_keys_then_indexed("slash", *"C_GetSlotInfo", "enter"),
                        terminal_size=LARGE)
