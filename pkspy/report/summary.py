"""``pkspy summary``: the analysis of a whole trace, as JSON or as text."""

from __future__ import annotations

from pkspy import fastscan
from pkspy.analysis import Analysis
from pkspy.pipeline import open_events


def template_text(template: dict, empty: str = "(any object)") -> str:
    """A lookup's template. A value the trace does not hold is '?': p11-kit prints
    only the types of a template it passes in."""
    return ", ".join(f"{k}={'?' if v is None else v}" for k, v in template.items()) or empty


def summarize(path: str, fmt: str | None = None, parallel: bool = True) -> dict:
    """``parallel``: a large pkcs11-spy log is read on every core, and records read
    before are copied (the same result); False: every line through the parser."""
    fmt, events = open_events(path, fmt=fmt, copies=parallel)
    fast = fastscan.summarize(path, fmt) if parallel else None
    if fast is not None:
        events.close()
        return fast
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


def login_changes_text(changes: list[dict], more: int = 0) -> str:
    """'#5 C_Login CKU_USER -> CKR_OK, #9 C_Logout -> CKR_OK'."""
    return ", ".join(f"#{c['seq']} {c['call']}" + (f" {c['user_type']}" if c["user_type"] else "")
                     + f" -> {c['result']}" for c in changes) + (f", and {more} more" if more
                                                                 else "")


def timing_text(stat: dict) -> str:
    """'12.5 ms in all, longest 9.0 ms' from a statistic's measured durations, or the
    spy's bounds as 'at most ...' (the spy prints start times only)."""
    if "total_ms" in stat:
        return f"{stat['total_ms']:.1f} ms in all, longest {stat['max_ms']:.1f} ms"
    if "bound_total_ms" in stat:
        return (f"at most {stat['bound_total_ms']:.0f} ms in all, longest at most "
                f"{stat['bound_max_ms']:.0f} ms")
    return ""


def _listed(s: dict, key: str) -> str:
    """How many entries a list has, and of how many when the summary left some out."""
    left_out = s.get("unlisted", {}).get(key, 0)
    n = len(s[key])
    return f"{n} listed of {n + left_out}" if left_out else f"{n}"


DAMAGE_SHOWN = 10


def damage_lines(damage: list[dict]) -> list[str]:
    """Where the first damaged records are: 'line 5881-5887  p2 incomplete, torn: C_Login...'."""
    out = []
    for d in damage[:DAMAGE_SHOWN]:
        lines = f"{d['line']}-{d['end_line']}" if d["end_line"] != d["line"] else str(d["line"])
        what = f": {d['what']}" if d.get("what") else ""
        out.append(f"  line {lines:<13} p{d['process']} {d['kind']}{what}")
    if len(damage) > DAMAGE_SHOWN:
        out.append(f"  ... the first {len(damage)} are listed by summary --json")
    return out


def render(s: dict) -> str:
    out = [f"format     {s['format']}",
           f"processes  {s['processes']}",
           f"calls      {s['calls']}"]
    if s["first_time"]:
        out.append(f"time       {s['first_time']} .. {s['last_time']}")
    out.append(f"records    {s['incomplete_records']} incomplete, {s['torn_records']} torn by "
               f"threads, {s['orphan_results']} results without a call, "
               f"{s['unparsed_lines']} unparsed lines")
    out += damage_lines(s.get("damage", []))
    out.append("")
    out.append(f"failed calls ({_listed(s, 'failed_calls')})")
    for f in s["failed_calls"]:
        out.append(f"  p{f['process']} #{f['seq']:<5} line {f['line']:<7} {f['function']:<22} "
                   f"{f['name']}")
    out.append("")
    out.append(f"logins ({_listed(s, 'logins')})")
    for x in s["logins"]:
        out.append(f"  p{x['process']} #{x['seq']:<5} session {x['session']} {x['user_type']}"
                   f" -> {x['result']}")
    out.append("")
    out.append(f"sessions ({_listed(s, 'sessions')})")
    for x in s["sessions"]:
        closed = f"closed #{x['closed_seq']}" if x["closed_seq"] is not None else "never closed"
        out.append(f"  p{x['process']} session {x['handle']} slot {x['slot']} flags {x['flags']}"
                   f" opened #{x['opened_seq']}, {closed}")
        if x.get("operations"):
            out.append("    operations: " + operations_text(x["operations"]))
        if x.get("login_changes"):
            out.append("    logins: " + login_changes_text(
                x["login_changes"], x.get("login_changes_unlisted", 0)))
    out.append("")
    out.append(f"object lookups ({_listed(s, 'finds')})")
    for x in s["finds"]:
        tmpl = template_text(x["template"])
        found = ", ".join(x["handles"]) or "nothing"
        out.append(f"  p{x['process']} #{x['seq']:<5} {tmpl} -> {found}")
    out.append("")
    out.append("calls by function")
    stats = s["statistics"]["functions"]
    width = max((len(k) for k in s["calls_by_function"]), default=0)
    for name, n in sorted(s["calls_by_function"].items(), key=lambda kv: (-kv[1], kv[0])):
        stat = stats.get(name, {})
        failed = f"{stat['failed']} failed" if stat.get("failed") else ""
        out.append(f"  {name:<{width}} {n:>5}  {failed:<10} {timing_text(stat)}".rstrip())
    if any("bound_total_ms" in v for v in stats.values()):
        out.append("  (pkcs11-spy prints when calls begin, not when they return: a bound is "
                   "the time to the next call)")
    for title, table in (("OpenSC functions that returned", "opensc_functions"),
                         ("PC/SC calls", "pcsc")):
        rows = s["statistics"].get(table) or {}
        if rows:
            out += ["", title]
            width = max(len(k) for k in rows)
            for name, stat in sorted(rows.items(), key=lambda kv: (-kv[1]["count"], kv[0])):
                failed = f"{stat['failed']} failed" if stat["failed"] else ""
                out.append(f"  {name:<{width}} {stat['count']:>5}  {failed:<10} "
                           f"{timing_text(stat)}".rstrip())
    return "\n".join(out)
