"""``pkspy summary``: the analysis of a whole trace, as JSON or as text."""

from __future__ import annotations

from pkspy.analysis import Analysis
from pkspy.pipeline import open_events


def summarize(path: str, fmt: str | None = None) -> dict:
    fmt, events = open_events(path, fmt=fmt)
    analysis = Analysis(format=fmt)
    for event in events:
        analysis.add(event)
    return analysis.summary()


def operations_text(operations: dict[str, dict]) -> str:
    """'find 20, sign 3 (1 failed)': what a session ran, by kind."""
    parts = []
    for kind, op in operations.items():
        notes = [f"{op['failed']} failed"] if op["failed"] else []
        if op.get("uncertain"):
            notes.append(f"{op['uncertain']} more in torn records")
        parts.append(f"{kind} {op['count']}" + (f" ({', '.join(notes)})" if notes else ""))
    return ", ".join(parts)


def login_changes_text(changes: list[dict]) -> str:
    """'#5 C_Login CKU_USER -> CKR_OK, #9 C_Logout -> CKR_OK'."""
    return ", ".join(f"#{c['seq']} {c['call']}" + (f" {c['user_type']}" if c["user_type"] else "")
                     + f" -> {c['result']}" for c in changes)


def render(s: dict) -> str:
    out = [f"format     {s['format']}",
           f"processes  {s['processes']}",
           f"calls      {s['calls']}"]
    if s["first_time"]:
        out.append(f"time       {s['first_time']} .. {s['last_time']}")
    out.append(f"records    {s['incomplete_records']} incomplete, {s['torn_records']} torn by "
               f"threads, {s['orphan_results']} results without a call, "
               f"{s['unparsed_lines']} unparsed lines")
    out.append("")
    out.append(f"failed calls ({len(s['failed_calls'])})")
    for f in s["failed_calls"]:
        out.append(f"  p{f['process']} #{f['seq']:<5} line {f['line']:<7} {f['function']:<22} "
                   f"{f['name']}")
    out.append("")
    out.append(f"logins ({len(s['logins'])})")
    for x in s["logins"]:
        out.append(f"  p{x['process']} #{x['seq']:<5} session {x['session']} {x['user_type']}"
                   f" -> {x['result']}")
    out.append("")
    out.append(f"sessions ({len(s['sessions'])})")
    for x in s["sessions"]:
        closed = f"closed #{x['closed_seq']}" if x["closed_seq"] is not None else "never closed"
        out.append(f"  p{x['process']} session {x['handle']} slot {x['slot']} flags {x['flags']}"
                   f" opened #{x['opened_seq']}, {closed}")
        if x.get("operations"):
            out.append("    operations: " + operations_text(x["operations"]))
        if x.get("login_changes"):
            out.append("    logins: " + login_changes_text(x["login_changes"]))
    out.append("")
    out.append(f"object lookups ({len(s['finds'])})")
    for x in s["finds"]:
        tmpl = ", ".join(f"{k}={v}" for k, v in x["template"].items()) or "(any object)"
        found = ", ".join(x["handles"]) or "nothing"
        out.append(f"  p{x['process']} #{x['seq']:<5} {tmpl} -> {found}")
    out.append("")
    out.append("calls by function")
    width = max((len(k) for k in s["calls_by_function"]), default=0)
    for name, n in sorted(s["calls_by_function"].items(), key=lambda kv: (-kv[1], kv[0])):
        out.append(f"  {name:<{width}} {n}")
    return "\n".join(out)
