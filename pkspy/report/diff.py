"""``pkspy diff A B``: where two runs of the same program part, as text or JSON.

The text shows a few calls both runs made alike, the first call or APDU where
they differ (both sides, decoded and redacted), then the changes after it,
``-`` for A and ``+`` for B as diff(1) marks them.
"""

from __future__ import annotations

from pathlib import Path

from pkspy.diff import Comparison, Located
from pkspy.model import Pkcs11Call
from pkspy.report.lines import format_event

WHAT = {
    "result": "the same call came back with another result",
    "arguments": "the same call, with other arguments or answers",
    "sequence": "the runs made different calls",
}


def _entry(located: Located) -> dict:
    index, it = located
    e = it.event
    out: dict = {"index": index, "kind": e.kind, "line": e.line, "process": e.process,
                 "what": it.what, "result": it.result, "key": it.key, "text": format_event(e)}
    if isinstance(e, Pkcs11Call):
        out["seq"] = e.seq
    return out


def to_json(c: Comparison) -> dict:
    """Plain data for scripts: the shape is in the README."""
    first = None
    if c.first is not None:
        d = c.first
        first = {"kind": d.kind, "a_index": d.a_index, "b_index": d.b_index,
                 "a": _entry(d.a) if d.a else None, "b": _entry(d.b) if d.b else None,
                 "context": [_entry(x) for x in d.context]}
    return {
        "same": c.same,
        "a": {"path": c.a.path, "format": c.a.format, "compared": len(c.a.items),
              "unparsed": c.a.unparsed},
        "b": {"path": c.b.path, "format": c.b.format, "compared": len(c.b.items),
              "unparsed": c.b.unparsed},
        "first_divergence": first,
        "differences": [{"op": ch.op, "a_range": list(ch.a_range), "b_range": list(ch.b_range),
                         "a": [_entry(x) for x in ch.a], "b": [_entry(x) for x in ch.b]}
                        for ch in c.changes],
        "differences_cut": c.changes_cut,
    }


def _at(located: Located | None, name: str) -> str:
    if located is None:
        return f"{name}: nothing here"
    e = located[1].event
    seq = f"call #{e.seq}, " if isinstance(e, Pkcs11Call) and e.seq is not None else ""
    proc = f"process {e.process}, " if e.process is not None else ""
    return f"{name}: {proc}{seq}line {e.line}"


def render(c: Comparison) -> str:
    a_name, b_name = Path(c.a.path).name, Path(c.b.path).name
    if a_name == b_name:
        a_name, b_name = c.a.path, c.b.path
    out = [f"--- A {a_name} ({c.a.format}, {len(c.a.items)} calls and APDUs compared)",
           f"+++ B {b_name} ({c.b.format}, {len(c.b.items)} calls and APDUs compared)"]
    if c.a.format != c.b.format:
        out.append("    (traces of two formats: only what both record can match)")
    for t, mark in ((c.a, "A"), (c.b, "B")):
        if t.unparsed:
            out.append(f"    ({mark} has {t.unparsed} line(s) not understood, not compared)")
    if c.first is None:
        out.append("The same calls and APDUs, with the same results "
                   "(handles, pointers, times, pids and threads aside).")
        return "\n".join(out) + "\n"
    d = c.first
    out += ["", f"First difference: {WHAT[d.kind]}.",
            f"  {_at(d.a, 'A')}; {_at(d.b, 'B')}"]
    if d.context:
        out.append("  after, in both:")
        out += [f"    {format_event(it.event)}" for _i, it in d.context]
    out += [f"- A {format_event(d.a[1].event)}" if d.a else "- A (nothing here)",
            f"+ B {format_event(d.b[1].event)}" if d.b else "+ B (nothing here)"]
    out += ["", "Differences:"]
    for ch in c.changes:
        out.append(f"@@ A {ch.a_range[0] + 1},{ch.a_range[1] - ch.a_range[0]} "
                   f"B {ch.b_range[0] + 1},{ch.b_range[1] - ch.b_range[0]} @@")
        out += [f"- {format_event(it.event)}" for _i, it in ch.a]
        out += [f"+ {format_event(it.event)}" for _i, it in ch.b]
        for side, shown, rng in (("A", ch.a, ch.a_range), ("B", ch.b, ch.b_range)):
            if len(shown) < rng[1] - rng[0]:
                out.append(f"  ({rng[1] - rng[0] - len(shown)} more in {side})")
    if c.changes_cut:
        out.append(f"({c.changes_cut} more differences not shown)")
    return "\n".join(out) + "\n"
