"""The Sessions, Logins, Objects and Statistics tables, filled from a snapshot.

Each table row remembers what selecting it means: a Filter for the timeline
(and a trace line to put the cursor on), kept in ``Pane.targets``.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from rich.text import Text
from textual.widgets import DataTable

from decoders import iso7816, opensc
from pkspy.tui.index import Filter

RW_SESSION = 0x2  # CKF_RW_SESSION


@dataclass
class Target:
    filter: Filter
    file: int = 0
    line: int | None = None  # a trace line to put the cursor on


def _int(h: str | None) -> int | None:
    try:
        return int(h, 16) if h else None
    except ValueError:
        return None


def _target(snap: dict, line: int | None, **narrow) -> Target:
    return Target(Filter(file=snap["file"], **narrow), snap["file"], line)


def _proc(snap: dict, many: bool, proc: object) -> str:
    return f"{snap['file'] + 1}:p{proc}" if many else f"p{proc}"


class Pane(DataTable):
    """A table whose rows select a timeline filter."""

    def __init__(self, columns: tuple[str, ...], **kwargs) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, **kwargs)
        self._columns = columns
        self.targets: list[Target | None] = []
        self.filled_from: object = None

    def on_mount(self) -> None:
        self.add_columns(*self._columns)

    def describe(self, row: int) -> str:
        """A row in full, 'column: value', for the detail pane."""
        labels = [c.label.plain for c in self.ordered_columns]
        cells = [str(c).strip() for c in self.get_row_at(row)]
        return "  ".join(f"{label}: {cell}" for label, cell in zip(labels, cells, strict=True)
                         if cell)

    def fill(self, rows: list[tuple[tuple, Target | None]]) -> None:
        keep = self.cursor_row
        self.clear()
        self.targets = [t for _, t in rows]
        # Text, not str: a label from a trace is shown as it is, never read as markup
        self.add_rows([tuple(Text(str(c) if c is not None else "", no_wrap=True) for c in r)
                       for r, _ in rows])
        if rows:
            self.move_cursor(row=min(keep, len(rows) - 1), animate=False)


def sessions(snaps: list[dict]) -> list[tuple[tuple, Target | None]]:
    many = len(snaps) > 1
    out = []
    for snap in snaps:
        for s in snap["sessions"]:
            h = _int(s["handle"])
            flags = _int(s["flags"]) or 0
            closed = f"#{s['closed_seq']}" if s["closed_seq"] is not None else "open"
            calls = snap["per_session"].get((s["process"], h), 0)
            target = _target(snap, s["opened_line"], process=s["process"], session=h)
            out.append(((_proc(snap, many, s["process"]), s["handle"], s["slot"],
                         "RW" if flags & RW_SESSION else "RO", s["user"] or "-",
                         f"#{s['opened_seq']}", closed, calls, _operations(s)), target))
    return out


def _operations(session: dict) -> str:
    """'find 2, sign 1 (1 failed)': the operations a session ran, most first."""
    ops = sorted(session.get("operations", {}).items(), key=lambda kv: -kv[1]["count"])
    return ", ".join(f"{kind} {op['count']}" + (f" ({op['failed']} failed)" if op["failed"]
                                                else "") for kind, op in ops)


def _timing(stat: dict | None) -> str:
    """Measured durations, or the spy's upper bounds ("≤"): it never says when a call
    returned, only when the next began."""
    if not stat:
        return ""
    if "total_ms" in stat:
        return f"max {stat['max_ms']:.1f} ms, total {stat['total_ms']:.1f}"
    if "bound_total_ms" in stat:
        return f"max ≤{stat['bound_max_ms']:.0f} ms, total ≤{stat['bound_total_ms']:.0f}"
    return ""


def logins(snaps: list[dict]) -> list[tuple[tuple, Target | None]]:
    """Login calls, then the PIN commands a card answered and tokens' PIN warnings."""
    many = len(snaps) > 1
    out = []
    for snap in snaps:
        for x in snap["logins"]:
            h = _int(x["session"])
            target = _target(snap, x["line"], process=x["process"], session=h)
            result = x["result"] or "(no result)"
            notes = [{"CKR_PIN_LOCKED": "PIN locked", "CKR_PIN_INCORRECT": "wrong PIN",
                      "CKR_USER_ALREADY_LOGGED_IN": "already in"}.get(result, "")]
            if x.get("pin_length"):
                notes.append(f"PIN of {x['pin_length']}")
            if x.get("uncertain"):
                notes.append("uncertain: torn record")
            out.append(((_proc(snap, many, x["process"]), f"#{x['seq']}", x["session"],
                         result, ", ".join(n for n in notes if n), x["user_type"], x["line"]),
                        target))
        for p in snap["pin_commands"]:
            notes = []
            if p.get("tries_left") is not None:
                notes.append(f"{p['tries_left']} tries left")
            if p.get("blocked"):
                notes.append("blocked")
            if p.get("pin_length"):
                notes.append(f"PIN of {p['pin_length']}")
            out.append(((_proc(snap, many, p["process"]), p["command"], f"ref {p['reference']}",
                         f"{p['sw'] or '?'} {p['result'] or ''}".strip(), ", ".join(notes),
                         "card", p["line"]), Target(Filter(), snap["file"], p["line"])))
        for f in snap["pin_flags"]:
            out.append(((_proc(snap, many, f["process"]), f"#{f['seq']}", f"slot {f['slot']}",
                         "C_GetTokenInfo", ", ".join(f["flags"]), "token", f["line"]),
                        Target(Filter(), snap["file"], f["line"])))
    return out


def _lookup(snap: dict, proc: int, seq: object) -> str:
    # not at start-up: the summary module brings its multi-core scanner along
    from pkspy.report.summary import template_text

    for f in snap["finds"]:
        if f["process"] == proc and f["seq"] == seq:
            tmpl = template_text(f["template"], "any object")
            return f"#{seq} {{{tmpl}}}"
    return f"#{seq}"


def objects(snaps: list[dict]) -> list[tuple[tuple, Target | None]]:
    many = len(snaps) > 1
    out = []
    for snap in snaps:
        for o in sorted(snap["objects"], key=lambda o: (o["process"], _int(o["handle"]) or 0)):
            # the lookup that first found it: the detail pane shows its template
            line = next((f["line"] for f in snap["finds"] if f["process"] == o["process"]
                         and f["seq"] in o["found_by"]), None)
            target = _target(snap, line, process=o["process"], object=_int(o["handle"]))
            created = f"#{o['created_seq']}" if o.get("created_seq") is not None else ""
            out.append(((_proc(snap, many, o["process"]), o["handle"], o.get("class") or "?",
                         o.get("key_type") or o.get("certificate_type") or "",
                         o.get("label") or "", o.get("id") or "", created,
                         "; ".join(_lookup(snap, o["process"], s) for s in o["found_by"]),
                         ", ".join(a.removeprefix("CKA_") for a in o["attributes_read"])),
                        target))
    return out


def statistics(snaps: list[dict]) -> list[tuple[tuple, Target | None]]:
    out: list[tuple[tuple, Target | None]] = []
    for snap in snaps:
        f = snap["file"]
        # the path in the wide last column: the first keeps to the names' width
        out.append(((f"trace {f + 1}", "", "", "", f"{snap['path']} ({snap['format']})"), None))
        span = f"{snap['first_time'] or '?'} .. {snap['last_time'] or '?'}"
        out.append((("  processes", snap["processes"], "", "", span), None))
        failed = snap["failed_by_function"]
        out.append((("  calls", snap["calls"], sum(failed.values()), "", ""),
                    Target(Filter(file=f, kind="call"), f)))
        problems = (f"{snap['incomplete_records']} incomplete, {snap['torn_records']} torn, "
                    f"{snap['unparsed_lines']} unparsed lines")
        out.append((("  records", "", "", "", problems), None))
        for d in snap.get("damage", ()):  # where: Enter goes to the damaged record
            end = d.get("end_line") or d["line"]
            lines = f"{d['line']}-{end}" if end > d["line"] else f"{d['line']}"
            out.append(((f"    line {lines}", "", "", "", f"{d['kind']}: {d['what']}"),
                        _target(snap, d["line"])))
        for name, n in sorted(snap["calls_by_function"].items(), key=lambda kv: -kv[1]):
            why = Counter(c["name"] for c in snap["failed_calls"] if c["function"] == name)
            out.append(((f"  {name}", n, failed.get(name, 0),
                         _timing(snap["call_times"].get(name)),
                         ", ".join(f"{k} ×{v}" for k, v in why.most_common(3))),
                        Target(Filter(file=f, function=name), f)))
        failed_pcsc = Counter(c["function"] for c in snap["failed_pcsc_calls"])
        for name, n in sorted(snap["pcsc_calls"].items(), key=lambda kv: -kv[1]):
            why = Counter(c["name"] or c["rv"] for c in snap["failed_pcsc_calls"]
                          if c["function"] == name)
            out.append(((f"  {name}", n, failed_pcsc.get(name, 0),
                         _timing(snap["pcsc_stats"].get(name)),
                         ", ".join(f"{k} ×{v}" for k, v in why.most_common(3))),
                        Target(Filter(file=f, function=name), f)))
        # OpenSC's own functions (a debug log), the slowest first: where the time went
        for name, st in sorted(snap["debug_stats"].items(),
                               key=lambda kv: (-kv[1].get("total_ms", 0), kv[0])):
            out.append(((f"  {name}", st["count"], st["failed"], _timing(st), "OpenSC"),
                        Target(Filter(file=f, function=name), f)))
        if snap["apdus"] or snap["apdus_unanswered"]:
            out.append((("  APDU exchanges", snap["apdus"], snap["apdus_unanswered"], "",
                         "answered / unanswered"), Target(Filter(file=f, kind="apdu"), f)))
        for ins, st in sorted(snap["apdu_stats"].items(), key=lambda kv: -kv[1]["count"]):
            timing = (f"avg {st['total_ms'] / st['count']:.1f} ms, max {st['max_ms']:.1f} ms"
                      if st["total_ms"] else "")
            out.append(((f"  APDU {ins}", st["count"], st["failed"], timing, ""), None))
        for sw, n in sorted(snap["status_words"].items(), key=lambda kv: -kv[1]):
            out.append(((f"  SW {sw}", n, "", "", iso7816.sw_text(int(sw, 16))), None))
        for code, n in sorted(snap["sc_errors"].items(), key=lambda kv: -kv[1]):
            out.append(((f"  {opensc.name(int(code)) or code}", n, n, "", opensc.text(int(code))),
                        None))
    return out


STAT_COLUMNS = ("what", "count", "failed", "duration", "detail")
SESSION_COLUMNS = ("process", "session", "slot", "mode", "user", "opened", "closed", "calls",
                   "operations")
# result and note before the rest: what matters is in the first 80 columns
LOGIN_COLUMNS = ("process", "call", "session", "result", "note", "user", "line")
OBJECT_COLUMNS = ("process", "handle", "class", "type", "label", "id", "created", "found by",
                  "attributes read")
