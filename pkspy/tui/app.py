"""``pkspy view``: a Textual app over one or more traces.

The first rows show as soon as the indexer (a thread) has them; the rest are
indexed behind the screen with progress in the status bar. Events come only
from ``pipeline.open_events``, redacted.
"""

from __future__ import annotations

import gc
import os
import sys
import threading
import time
from dataclasses import replace
from typing import TYPE_CHECKING, ClassVar

from rich.text import Text
from textual import on
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.message import Message
from textual.widget import Widget
from textual.widgets import Footer, Input, Static, TabbedContent, TabPane

from pkspy.sources import SourceError
from pkspy.tui import detail
from pkspy.tui.commands import TAB_NAMES, ViewCommands
from pkspy.tui.index import (
    NONE,
    Filter,
    Indexer,
    Links,
    Rows,
    Trace,
    View,
    linked,
    open_traces,
)
from pkspy.tui.widgets.timeline import Timeline

if TYPE_CHECKING:  # the tables (and Textual's DataTable) load after the first screen
    from textual.widgets import DataTable

PROGRESS_WIDTH = 12
SNAPSHOT_EVERY = 1.0  # seconds between refreshes of the tables while indexing
TABS = tuple(TAB_NAMES)  # in the order of their keys, 1 to 7
# What an empty tab says once everything is read (a filter may empty the timeline).
EMPTY = {"timeline": "no rows: the filter hides them all (Esc clears it)",
         "apdus": "no APDU exchanges in these traces",
         "errors": "no failures, torn records or unparsed lines"}
# The same words as tail's stderr warning; on screen for as long as the app runs.
REVEAL_WARNING = "--reveal-secrets: PINs and keys are shown in clear"
REVEAL_BANNER = f"!! WARNING {REVEAL_WARNING} !!"


class Indexed(Message):
    """The indexer has added rows; done when it has read everything (or stopped)."""

    def __init__(self, done: bool, snapshot: list[dict] | None) -> None:
        super().__init__()
        self.done = done
        self.snapshot = snapshot

    def can_replace(self, message: Message) -> bool:
        return (isinstance(message, Indexed) and not message.done
                and (self.snapshot is not None or message.snapshot is None))


class Linked(Message):
    """A spy log's calls are linked to the APDUs of the debug log opened with it."""

    def __init__(self, links: Links) -> None:
        super().__init__()
        self.links = links


class IndexFailed(Message):
    """The indexer stopped on an error: shown, not hidden."""

    def __init__(self, error: str) -> None:
        super().__init__()
        self.error = error


class ViewerApp(App):
    CSS_PATH = "app.tcss"
    TITLE = "pkspy view"
    COMMANDS = App.COMMANDS | {ViewCommands}
    # Short words: the footer shows every key below at 80 columns; ? lists them all.
    BINDINGS: ClassVar[list[Binding]] = [
        Binding("slash", "search", "search"),
        Binding("n", "find(1)", "next match", show=False),
        Binding("N", "find(-1)", "previous match", show=False),
        Binding("e", "error(1)", "error"),
        Binding("E", "error(-1)", "previous error", show=False),
        Binding("x", "errors_only", "failures"),
        Binding("s", "narrow('session')", "session"),
        Binding("p", "narrow('process')", "process", show=False),
        Binding("F", "narrow('function')", "function", show=False),
        Binding("g", "goto", "line"),
        Binding("d", "toggle_detail", "detail", show=False),
        Binding("f", "follow", "follow"),
        Binding("escape", "clear", "clear filter", show=False),
        Binding("question_mark", "keys", "keys"),
        Binding("q", "quit", "quit"),
        *(Binding(str(i), f"tab('{tab}')", tab, show=False) for i, tab in enumerate(TABS, 1)),
    ]

    def __init__(self, traces: list[Trace], *, follow: bool = False,
                 stop: threading.Event | None = None, reveal: bool = False,
                 notices: list[str] | None = None) -> None:
        super().__init__()
        self.traces = traces
        self.notices = notices if notices is not None else []  # filled while reading
        self.links: Links | None = None  # a spy log's calls and the debug log's APDUs
        self._notices_shown = 0
        self.follow = follow
        self.reveal = reveal  # the traces were opened unredacted: the banner says so
        self.rows = Rows()
        self.stop_event = stop or threading.Event()
        self.indexer = Indexer(traces, self.rows, follow=follow, progress=self._progress,
                               stop=self.stop_event)
        self.snapshot: list[dict] = []
        self.indexed = False
        self.started = time.monotonic()
        self.first_rows_at: float | None = None  # seconds after start: first rows shown
        self.indexed_at: float | None = None  # seconds after start: everything indexed
        self.needle = ""
        self._prompt_mode = ""
        self._last_snapshot = 0.0
        self._collect_later = False  # garbage collection is paused until the first screen

    # -- layout --------------------------------------------------------------

    def compose(self) -> ComposeResult:
        # No garbage collection before the first screen: a full one then, over all
        # that the imports made, took tens of milliseconds. It resumes right after.
        self._collect_later = gc.isenabled()
        gc.disable()
        many = len(self.traces)
        if self.reveal:  # docked, no key or click hides it
            yield Static(REVEAL_BANNER, id="reveal-banner", markup=False)
        with TabbedContent(initial="timeline", id="tabs"):
            with TabPane("1 Timeline", id="timeline"):
                yield Timeline(self.rows, View(self.rows), files=many, stick=self.follow,
                               id="timeline-view")
            # the other tabs get their contents once the first screen is drawn
            for key, tab in enumerate(TABS[1:], 2):
                yield TabPane(f"{key} {TAB_NAMES[tab]}", id=tab)
        with VerticalScroll(id="detail"):
            yield Static("", id="detail-text", markup=False)
        yield Static("", id="status", markup=False)
        yield Input(id="prompt")
        yield Footer(compact=True)

    def _tab_contents(self) -> dict[str, Widget]:
        from pkspy.tui.widgets import panes

        many = len(self.traces)
        return {
            "sessions": panes.Pane(panes.SESSION_COLUMNS, id="sessions-table"),
            "logins": panes.Pane(panes.LOGIN_COLUMNS, id="logins-table"),
            "objects": panes.Pane(panes.OBJECT_COLUMNS, id="objects-table"),
            "apdus": Timeline(self.rows, View(self.rows, Filter(kind="apdu")), files=many,
                              id="apdus-view"),
            "errors": Timeline(self.rows, View(self.rows, Filter(errors=True)), files=many,
                               id="errors-view"),
            "stats": panes.Pane(panes.STAT_COLUMNS, id="stats-table"),
        }

    def on_mount(self) -> None:
        self.sub_title = "  ".join(t.path for t in self.traces)
        self.query_one("#prompt", Input).display = False
        self.timeline.focus()
        # read in the UI thread before the first screen: no more rows than it has lines
        self.indexer.prime(self.size.height)
        self.timeline.update_rows()
        self._status()
        self._notices()
        self.call_after_refresh(self._after_first_screen)

    async def _after_first_screen(self) -> None:
        """The hidden tabs' tables and timelines (styling them was a sixth of the time
        to the first screen after the imports), then the indexer thread, whose messages
        find them mounted."""
        mounting = [self.query_one(f"#{tab}", TabPane).mount(widget)
                    for tab, widget in self._tab_contents().items()]
        for mounted in mounting:
            await mounted
        self._resume_collection()
        self.run_worker(self._index, thread=True, exclusive=True, name="index")
        tab = self.query_one("#tabs", TabbedContent).active
        if tab != "timeline":  # opened by a key while its contents were not there yet
            self._enter_tab(tab)

    def on_unmount(self) -> None:
        self.stop_event.set()
        self._resume_collection()  # closed before its first screen was drawn

    def _resume_collection(self) -> None:
        if self._collect_later:
            self._collect_later = False
            gc.enable()

    @property
    def timeline(self) -> Timeline:
        return self.query_one("#timeline-view", Timeline)

    def _active_timeline(self) -> Timeline | None:
        active = self.query_one("#tabs", TabbedContent).active
        found = self.query(f"#{active}-view")
        return found.first(Timeline) if found else None

    # -- indexing (the worker thread) -----------------------------------------

    def _index(self) -> None:
        try:
            self.indexer.run()
            # followed traces keep growing: linked only once read to their end
            links = None if self.follow or self.indexer.stopped else linked(self.traces)
        except (SourceError, OSError, ValueError, RuntimeError) as e:
            self.post_message(IndexFailed(f"{type(e).__name__}: {e}"))
            return
        if links is not None:
            self.post_message(Linked(links))

    def _progress(self, done: bool) -> None:
        """Called in the indexing thread; the snapshot is taken here, where it is consistent."""
        now = time.monotonic()
        snap = None
        if done or now - self._last_snapshot >= SNAPSHOT_EVERY or self.indexer.caught_up:
            snap = self.indexer.snapshot()
            self._last_snapshot = now
        self.post_message(Indexed(done, snap))

    def on_indexed(self, message: Indexed) -> None:
        active = self._active_timeline()  # the others catch up when their tab opens
        if active is not None:
            active.update_rows()
        if active is not self.timeline:
            self.timeline.update_rows()
        if self.first_rows_at is None and self.rows.n:
            self.first_rows_at = time.monotonic() - self.started
        if message.snapshot is not None:
            self.snapshot = message.snapshot
            self._fill_panes()
        self._notices()
        if message.done and not self.indexed:
            self.indexed = True
            self.indexed_at = time.monotonic() - self.started
            for tab, empty in EMPTY.items():
                self.query_one(f"#{tab}-view", Timeline).say_when_empty(empty)
        self._status()

    def on_linked(self, message: Linked) -> None:
        self.links = message.links
        active = self._active_timeline()
        if active is not None and active.row is not None:
            self._show_detail(active.row)

    def _notices(self) -> None:
        """What the reading noticed (a trace dated from another one, a file replaced)."""
        for text in self.notices[self._notices_shown:]:
            self.notify(text, title="note", timeout=10, markup=False)
        self._notices_shown = len(self.notices)

    def on_index_failed(self, message: IndexFailed) -> None:
        self.notify(f"indexing stopped: {message.error}", severity="error", timeout=30,
                    markup=False)
        self.indexed = True
        self._status()

    def _fill_panes(self) -> None:
        """Fill the visible table from the latest snapshot; the others when they open."""
        active = self.query_one("#tabs", TabbedContent).active
        found = self.query(f"#{active}-table")  # none before the hidden tabs are built
        if not found:
            return
        from pkspy.tui.widgets import panes

        builders = {"sessions": panes.sessions, "logins": panes.logins,
                    "objects": panes.objects, "stats": panes.statistics}
        pane = found.first(panes.Pane)
        if pane.filled_from is not self.snapshot:
            pane.fill(builders[active](self.snapshot))
            pane.filled_from = self.snapshot

    def _status(self) -> None:
        view = self.timeline.view
        parts = [f"{len(view):,}/{self.rows.n:,} rows" if view.filter.active()
                 else f"{self.rows.n:,} rows"]
        if view.filter.active():
            parts.append(f"filter: {view.filter.describe(len(self.traces))} (esc clears)")
        if not self.indexer.caught_up:
            parts.append("indexing…")
        elif self.follow and not self.indexed:
            parts.append("FOLLOWING" if self.timeline.stick else "follow paused (f resumes)")
        elif self.indexed_at is not None:
            parts.append(f"indexed in {self.indexed_at:.1f} s")
        if self.needle:
            parts.append(f"/{self.needle}")
        if len(self.traces) > 1:
            parts.append("  ".join(f"{i}:{t.label}" for i, t in enumerate(self.traces, 1)))
        else:
            parts.append(f"{self.traces[0].path} ({self.traces[0].format})")
        if not self.indexer.caught_up:
            done = self.indexer.fraction()
            filled = round(done * PROGRESS_WIDTH)
            parts.insert(0, f"{'█' * filled}{'░' * (PROGRESS_WIDTH - filled)} {done:4.0%}")
        self.query_one("#status", Static).update("  ".join(parts), layout=False)

    # -- selection -----------------------------------------------------------

    def on_timeline_moved(self, message: Timeline.Moved) -> None:
        if message.timeline is self._active_timeline() and message.row is not None:
            self._show_detail(message.row)

    def _show_detail(self, row: int | None, about: str = "") -> None:
        """The detail of a row of the timeline, under ``about`` (a table's row in full)."""
        if not self.query("#detail-text"):  # the app is closing
            return
        text = Text()
        if about:
            text.append(about + "\n", style="bold")
        if row is not None:
            text.append_text(self._event_detail(row))
        text.rstrip()
        self.query_one("#detail-text", Static).update(detail.monochrome(text) if self.no_color
                                                      else text)
        self.query_one("#detail", VerticalScroll).scroll_home(animate=False)

    def _event_detail(self, row: int) -> Text:
        event = self.rows.event(row)
        file = self.rows.file[row]
        name = self.traces[file].label if len(self.traces) > 1 else None
        links, extra = self.links, {}
        if links is not None and file == links.spy:
            extra = {"linked": links.of_call.get(event.line),
                     "linked_from": self.traces[links.debug].label}
        elif links is not None and file == links.debug:
            extra = {"during": links.call_of.get(event.line),
                     "linked_from": self.traces[links.spy].label}
        return detail.render(event, name, **extra)

    def on_timeline_chosen(self, message: Timeline.Chosen) -> None:
        if message.timeline is not self.timeline:
            self.jump(message.row)

    def jump(self, row: int) -> None:
        """Show a row in the timeline, clearing the filter when it hides the row."""
        timeline = self.timeline
        if not timeline.go_to_row(row):
            timeline.set_view(View(self.rows), row)
        self.query_one("#tabs", TabbedContent).active = "timeline"
        timeline.focus()
        self._show_detail(row)
        self._status()

    def on_data_table_row_selected(self, message: DataTable.RowSelected) -> None:
        from pkspy.tui.widgets import panes

        table = message.data_table
        if not isinstance(table, panes.Pane) or message.cursor_row >= len(table.targets):
            return
        target = table.targets[message.cursor_row]
        if target is None:
            return
        row = self.row_at_line(target.file, target.line) if target.line else None
        self.apply(target.filter, row if row is not None else 0)

    def on_data_table_row_highlighted(self, message: DataTable.RowHighlighted) -> None:
        """The detail pane follows the table: the call a login, session or lookup names."""
        from pkspy.tui.widgets import panes

        table = message.data_table
        if not isinstance(table, panes.Pane) or message.cursor_row >= len(table.targets):
            return
        target = table.targets[message.cursor_row]
        row = None
        if target is not None and target.line:
            row = self.row_at_line(target.file, target.line)
        # the whole row first: at 80 columns the table's last columns are cut
        self._show_detail(row, table.describe(message.cursor_row))

    def apply(self, filter: Filter, row: int | None = None) -> None:
        timeline = self.timeline
        timeline.set_view(View(self.rows, filter), row if row is not None else timeline.row)
        self.query_one("#tabs", TabbedContent).active = "timeline"
        timeline.focus()
        if timeline.row is not None:
            self._show_detail(timeline.row)
        self._status()

    def row_at_line(self, file: int, line: int) -> int | None:
        return self.rows.at_line(file, line)

    @on(TabbedContent.TabActivated)
    def _tab_activated(self, message: TabbedContent.TabActivated) -> None:
        self._enter_tab(message.pane.id or "")

    def _enter_tab(self, tab: str) -> None:
        self._fill_panes()
        found = self.query(f"#{tab}-view") or self.query(f"#{tab}-table")
        if found:
            widget = found.first()
            widget.focus()
            if isinstance(widget, Timeline):
                widget.update_rows()
                if widget.row is not None:
                    self._show_detail(widget.row)

    # -- keys ----------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "follow":
            return self.follow
        return True

    def action_tab(self, tab: str) -> None:
        self.query_one("#tabs", TabbedContent).active = tab

    def _prompt(self, mode: str, placeholder: str) -> None:
        prompt = self.query_one("#prompt", Input)
        self._prompt_mode = mode
        prompt.placeholder = placeholder
        prompt.value = self.needle if mode == "search" else ""
        prompt.display = True
        prompt.focus()

    def action_search(self) -> None:
        self._prompt("search", "search the rows (Enter: find, then n / N: next / previous)")

    def action_goto(self) -> None:
        self._prompt("goto", "go to trace line number")

    @on(Input.Submitted, "#prompt")
    def _prompt_done(self, message: Input.Submitted) -> None:
        prompt = self.query_one("#prompt", Input)
        prompt.display = False
        mode, self._prompt_mode = self._prompt_mode, ""
        value = message.value.strip()
        (self._active_timeline() or self.timeline).focus()
        if mode == "search" and value:
            self.needle = value
            self.action_find(1)
        elif mode == "goto" and value:
            self._goto(value)
        self._status()

    def _goto(self, value: str) -> None:
        try:
            line = int(value)
        except ValueError:
            self.notify(f"not a line number: {value}", severity="warning", markup=False)
            return
        file = self.rows.file[self.timeline.row] if self.timeline.row is not None else 0
        row = self.row_at_line(file, line)
        if row is None:
            self.notify(f"no event at or before line {line}", severity="warning", markup=False)
        else:
            self.jump(row)

    def action_find(self, step: int) -> None:
        timeline = self._active_timeline()
        if timeline is None or not self.needle:
            return
        view = timeline.view
        pos = view.find(self.needle, timeline.cursor + step, step)
        if pos is None:  # wrap around
            pos = view.find(self.needle, 0 if step > 0 else len(view) - 1, step)
        if pos is None:
            self.notify(f"not found: {self.needle}", severity="warning", markup=False)
        else:
            timeline.cursor = pos

    def action_error(self, step: int) -> None:
        timeline = self._active_timeline()
        if timeline is None:
            return
        pos = timeline.view.next_flagged(timeline.cursor + step, step)
        if pos is None:
            self.notify("no more errors " + ("below" if step > 0 else "above"), markup=False)
        else:
            timeline.cursor = pos

    def action_errors_only(self) -> None:
        current = self.timeline.view.filter
        self.apply(replace(current, errors=not current.errors))

    def action_narrow(self, what: str) -> None:
        timeline = self.timeline
        row = timeline.row
        if row is None:
            return
        rows, current = self.rows, timeline.view.filter
        file, proc = rows.file[row], rows.process[row]
        if what == "session":
            if rows.session[row] == NONE:
                self.notify("this row belongs to no session", severity="warning", markup=False)
                return
            self.apply(replace(current, file=file, process=proc, session=rows.session[row]), row)
        elif what == "process":
            self.apply(replace(current, file=file, process=proc), row)
        elif what == "function":
            name = rows.functions[rows.function[row]]
            if name:
                self.apply(replace(current, file=file, function=name), row)

    def action_keys(self) -> None:
        """Every key, with what it does, beside the screen (? again hides it)."""
        if self.screen.query("HelpPanel"):
            self.action_hide_help_panel()
        else:
            self.action_show_help_panel()

    def action_toggle_detail(self) -> None:
        box = self.query_one("#detail", VerticalScroll)
        box.display = not box.display

    def action_follow(self) -> None:
        timeline = self.timeline
        timeline.stick = not timeline.stick
        if timeline.stick:
            timeline.action_edge(1)
        self._status()

    def action_clear(self) -> None:
        prompt = self.query_one("#prompt", Input)
        if prompt.display:
            prompt.display = False
            self._prompt_mode = ""
            (self._active_timeline() or self.timeline).focus()
            return
        if self.timeline.view.filter.active():
            self.apply(Filter())


def run(paths: list[str], fmt: str | None = None, follow: bool = False,
        reveal: bool = False) -> None:
    """Open the traces (SourceError for one that cannot be read) and run the app."""
    if "-" in paths:
        raise SourceError("view reads files, not stdin: save it to a file first")
    stop = threading.Event()
    for path in paths if follow else ():
        if not os.path.exists(path) or os.path.getsize(path) == 0:
            print(f"pkspy: waiting for {path} to get a trace (Ctrl+C stops)", file=sys.stderr)
    notices: list[str] = []
    traces = open_traces(paths, fmt=fmt, follow=follow, stop=stop.is_set, reveal=reveal,
                         notices=notices)
    ViewerApp(traces, follow=follow, stop=stop, reveal=reveal, notices=notices).run()
