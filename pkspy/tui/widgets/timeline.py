"""The timeline: one row per event over the lazily built index (Textual's line API).

No widget per row: ``render_line`` asks the view which row stands at a screen
line and draws its text, so a million rows cost what a screenful costs.
"""

from __future__ import annotations

import re
import time
from typing import ClassVar

from rich.segment import Segment
from rich.style import Style
from textual.binding import Binding
from textual.events import Click
from textual.geometry import Region, Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip

from pkspy.tui.index import FAILED, KINDS, PROCESS, WARNING, Rows, View

NARROW = 100  # columns below which rows are drawn compact (an 80-column terminal)
CALL = KINDS["call"]
# tail's row: "<clock> p1/<pid>.<tid> #7 C_Login <in args> -> <result> <out args>"
_WHERE = re.compile(r"^(\s*\S+ )(p\d+)/\S+ ?")
_CALL = re.compile(r"^(?P<head>.*?#\S+ +(?:\(result without call\)|\S+))(?P<ins>.*?) -> "
                   r"(?P<rest>.*)$")


def compact(text: str, call: bool) -> str:
    """A row for a narrow screen: the process without its pid and thread, and a
    call's result before its input arguments, so that it is not cut off (the
    detail pane shows everything)."""
    text = _WHERE.sub(lambda m: f"{m[1]}{m[2]:<4}", text, count=1)
    m = _CALL.match(text) if call else None
    if m is None:
        return text
    ins = m["ins"].strip()
    return f"{m['head']} -> {m['rest']}" + (f"  · {ins}" if ins else "")


class Timeline(ScrollView, can_focus=True):
    """Rows of a View; the cursor row is the one the detail pane shows."""

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "timeline--cursor", "timeline--failed", "timeline--warning", "timeline--process"}
    BINDINGS: ClassVar[list[Binding]] = [
        Binding("up", "move(-1)", "up", show=False),
        Binding("down", "move(1)", "down", show=False),
        Binding("pageup", "page(-1)", "page up", show=False),
        Binding("pagedown", "page(1)", "page down", show=False),
        Binding("home", "edge(0)", "first", show=False),
        Binding("end", "edge(1)", "last", show=False),
        Binding("enter", "choose", "open", show=False),
    ]
    cursor: reactive[int] = reactive(0, always_update=True, init=False)

    class Moved(Message):
        """The cursor is on another row (row: index of the row in Rows, or None)."""

        def __init__(self, timeline: Timeline, row: int | None) -> None:
            super().__init__()
            self.timeline = timeline
            self.row = row

    class Chosen(Message):
        """Enter (or a click on the cursor row) on a row."""

        def __init__(self, timeline: Timeline, row: int) -> None:
            super().__init__()
            self.timeline = timeline
            self.row = row

    def __init__(self, rows: Rows, view: View, *, files: int = 1, stick: bool = False,
                 id: str | None = None) -> None:
        super().__init__(id=id)
        self.rows = rows
        self.view = view
        self.files = files
        self.stick = stick  # follow: stay on the last row while the cursor is there
        self._count = 0
        self.painted_at: float | None = None  # when a row was first drawn (monotonic)
        self.empty = ""  # said on the first line when the view has no rows (once indexed)

    # -- data ----------------------------------------------------------------

    def set_view(self, view: View, row: int | None = None) -> None:
        """Show another filter, keeping the cursor on row (or the nearest shown)."""
        self.view = view
        self._count = view.update()
        self._resize()
        pos = view.nearest(row) if row is not None else 0
        self.cursor = min(pos, max(self._count - 1, 0))
        self.refresh()

    def update_rows(self) -> None:
        """Take in rows the indexer added since the last call."""
        at_end = self._count == 0 or self.cursor >= self._count - 1
        before = self._count
        self._count = self.view.update()
        if self._count == before:
            return
        self._resize()
        if self.stick and at_end and before:
            self.cursor = self._count - 1
        elif before == 0:
            self.cursor = 0
        self.refresh()

    def _resize(self) -> None:
        height = self._count or (1 if self.empty else 0)
        self.virtual_size = Size(self.rows.width + self._gutter(), height)

    def say_when_empty(self, text: str) -> None:
        """What to draw on the first line while the view has no rows."""
        self.empty = text
        self._resize()
        self.refresh()

    def _gutter(self) -> int:
        return 2 + (3 if self.files > 1 else 0)

    @property
    def row(self) -> int | None:
        """The Rows index of the cursor row."""
        return self.view.row(self.cursor) if 0 <= self.cursor < self._count else None

    def go_to_row(self, row: int) -> bool:
        """Put the cursor on a row if this view shows it."""
        self._count = self.view.update()
        pos = self.view.position(row)
        if pos is None:
            return False
        self._resize()
        self.cursor = pos
        return True

    # -- cursor --------------------------------------------------------------

    def validate_cursor(self, value: int) -> int:
        return max(0, min(value, max(self._count - 1, 0)))

    def watch_cursor(self, old: int, new: int) -> None:
        self.refresh_line(old - int(self.scroll_y))
        self.refresh_line(new - int(self.scroll_y))
        self._scroll_to_cursor()
        self.call_after_refresh(self._scroll_to_cursor)  # once scrollbars are laid out
        self.post_message(self.Moved(self, self.row))

    def _scroll_to_cursor(self) -> None:
        # force: the scrollbars of rows just added may not be laid out yet
        self.scroll_to_region(Region(int(self.scroll_x), self.cursor, 1, 1), animate=False,
                              immediate=True, force=True)

    def action_move(self, step: int) -> None:
        self.cursor += step

    def action_page(self, step: int) -> None:
        self.cursor += step * max(self.scrollable_content_region.height - 1, 1)

    def action_edge(self, end: int) -> None:
        self.cursor = self._count - 1 if end else 0

    def action_choose(self) -> None:
        if self.row is not None:
            self.post_message(self.Chosen(self, self.row))

    def on_click(self, event: Click) -> None:
        pos = int(self.scroll_y) + event.y
        if pos < self._count:
            if pos == self.cursor and event.chain > 1:
                self.action_choose()
            self.cursor = pos

    # -- drawing -------------------------------------------------------------

    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y = self.scroll_offset
        pos = scroll_y + y
        width = self.scrollable_content_region.width
        base = self.rich_style
        if pos >= self._count:
            if pos == 0 and self.empty:
                return Strip([Segment(f"  {self.empty}", base + Style(italic=True))]
                             ).crop_extend(0, width, base)
            return Strip.blank(width, base)
        row = self.view.row(pos)
        if self.painted_at is None:
            self.painted_at = time.monotonic()
        flags = self.rows.flags[row]
        style = base
        mark = " "
        if flags & FAILED:
            style += self.get_component_rich_style("timeline--failed", partial=True)
            mark = "!"
        elif flags & WARNING:
            style += self.get_component_rich_style("timeline--warning", partial=True)
            mark = "~"
        elif flags & PROCESS:
            style += self.get_component_rich_style("timeline--process", partial=True)
        if self.app.no_color and flags & (FAILED | WARNING):
            style += Style(bold=True)  # no red: failures stand out by weight (and the mark)
        if pos == self.cursor:
            if self.app.no_color:
                style += Style(reverse=True)
            else:
                style += self.get_component_rich_style("timeline--cursor", partial=True)
            if self.has_focus:
                style += Style(bold=True)
        gutter = mark + " "
        if self.files > 1:
            gutter = f"{self.rows.file[row] + 1:>2} " + gutter
        text = self.rows.text(row)
        if width < NARROW:
            text = compact(text, self.rows.kind[row] == CALL)
        segments = [Segment(gutter + text, style)]
        return Strip(segments).crop_extend(scroll_x, scroll_x + width, style)
