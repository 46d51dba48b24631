"""Command palette entries (Ctrl+P): filters and tabs by name."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace
from functools import partial

from textual.command import DiscoveryHit, Hit, Hits, Provider

from pkspy.tui.index import Filter

TAB_NAMES = {"timeline": "Timeline", "sessions": "Sessions", "logins": "Logins",
             "objects": "Objects", "apdus": "APDUs", "errors": "Errors",
             "stats": "Statistics"}


class ViewCommands(Provider):
    """Show a tab; narrow the timeline to a function or a process; clear the filter."""

    def _commands(self) -> Iterator[tuple[str, Callable[[], None], str]]:
        app = self.app
        for tab, name in TAB_NAMES.items():
            yield f"Show {name}", partial(app.action_tab, tab), "open the tab"
        yield "Failures only", app.action_errors_only, "show only failed and torn records"
        yield "Clear filter", partial(app.apply, Filter()), "show every row"
        rows = app.rows
        current = app.timeline.view.filter
        for name in sorted(n for n in rows.functions if n):
            yield (f"Only {name}", partial(app.apply, replace(current, function=name)),
                   "narrow the timeline to this function")
        for file, trace in enumerate(app.traces):
            for proc in sorted(trace.analysis.processes):
                label = f"Only process p{proc}" + (f" of {trace.label}" if len(app.traces) > 1
                                                   else "")
                yield (label, partial(app.apply, replace(current, file=file, process=proc)),
                       "narrow the timeline to this process")

    async def discover(self) -> Hits:
        for name, callback, help in self._commands():
            yield DiscoveryHit(name, callback, help=help)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for name, callback, help in self._commands():
            score = matcher.match(name)
            if score > 0:
                yield Hit(score, matcher.highlight(name), callback, help=help)
