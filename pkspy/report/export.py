"""``pkspy export``: a decoded, redacted trace to attach to a bug report.

Markdown (to paste into an issue), plain text, a self-contained HTML page,
or JSON lines (one event per line, the schema in the README). Everything
comes through the pipeline, so it is redacted; there is no way to reveal
secrets here. The report puts what failed first, each failure with its
decoded result and a hint, then logins, PIN commands, sessions, lookups,
objects and statistics, and the decoded timeline last.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from decoders import explain, iso7816
from pkspy import __version__
from pkspy.analysis import Analysis
from pkspy.merge import labels, open_merged
from pkspy.model import (
    ApduExchange,
    DebugLine,
    Event,
    Pkcs11Call,
    Redacted,
    to_json,
)
from pkspy.pipeline import open_events
from pkspy.redact import Redactor
from pkspy.report.jsonl_fields import with_fields
from pkspy.report.lines import format_event, is_shown
from pkspy.report.links import Links, json_fields, pair, read_links
from pkspy.report.links import table as links_table
from pkspy.report.summary import (
    login_changes_text,
    operations_text,
    template_text,
    timing_text,
)

TIMELINE_MAX = 20000  # lines of the timeline kept in a report; the rest is counted
# Failures that programs cause on purpose while probing: listed after the others.
ROUTINE = {"CKR_ATTRIBUTE_TYPE_INVALID", "CKR_BUFFER_TOO_SMALL", "CKR_ATTRIBUTE_SENSITIVE",
           "CKR_USER_ALREADY_LOGGED_IN", "SCARD_E_UNSUPPORTED_FEATURE", "SCARD_E_TIMEOUT"}


@dataclass
class Trace:
    """One file, read once: its analysis, its timeline and what was redacted."""

    path: str
    format: str = ""
    analysis: Analysis = field(default_factory=Analysis)
    timeline: list[str] = field(default_factory=list)
    timeline_cut: int = 0
    redacted: dict[str, int] = field(default_factory=dict)
    apdu_failures: dict[tuple[str, str], dict] = field(default_factory=dict)
    merged: bool = False  # its lines are in a merged timeline, not in its own
    sources: list[str] | None = None  # set: the merged timeline of these files, nothing else
    links: Links | None = None  # a spy log's calls linked to a debug log given with it


def _count_redacted(event: Event, counts: dict[str, int]) -> None:
    def seen(value: object) -> None:
        if isinstance(value, Redacted):
            kind = value.what.split(" (")[0]
            counts[kind] = counts.get(kind, 0) + 1

    if isinstance(event, Pkcs11Call):
        for arg in event.args:
            seen(arg.value)
            if isinstance(arg.value, list):
                for item in arg.value:
                    seen(getattr(item, "value", None))
    elif isinstance(event, ApduExchange):
        seen(event.command_data)
    elif isinstance(event, DebugLine) and event.secret:
        counts[event.secret] = counts.get(event.secret, 0) + 1


def read(path: str, fmt: str | None = None) -> Trace:
    redactor = Redactor()
    trace = Trace(path)
    trace.format, events = open_events(path, fmt=fmt, redactor=redactor)
    trace.analysis.format = trace.format
    for event in events:
        _add(trace, event, trace.timeline)
    return trace


def read_merged(paths: list[str], fmt: str | None = None) -> list[Trace]:
    """Each file's analysis, and one more Trace: their timeline merged by time, each
    line marked with its file."""
    notices: list[str] = []
    formats, events = open_merged(paths, fmt=fmt, notices=notices)
    traces = [Trace(p, f, merged=True) for p, f in zip(paths, formats, strict=True)]
    for t in traces:
        t.analysis.format = t.format
    names = labels(paths)
    merged = Trace("merged timeline", sources=names)
    width = max(len(n) for n in names)
    marks = [f"{n:<{width}} " for n in names]
    for index, event in events:
        _add(traces[index], event, merged.timeline, marks[index])
    merged.timeline_cut = sum(t.timeline_cut for t in traces)
    merged.timeline[:0] = [f"-- {n}" for n in notices]
    both = pair(paths, formats)
    if both is not None:
        traces[paths.index(both[0])].links = read_links(*both)
    return [*traces, merged]


def _add(trace: Trace, event: Event, timeline: list[str], mark: str = "") -> None:
    """Fold one event into its trace's analysis, and its line into a timeline."""
    trace.analysis.add(event)
    _count_redacted(event, trace.redacted)
    if isinstance(event, ApduExchange) and event.sw is not None and len(event.command) >= 4 \
            and not iso7816.status_word(event.sw).ok:
        cla, ins, p1, p2 = event.command[:4]
        key = (iso7816.ins_name(ins, cla, None, p1, p2), f"{event.sw:04X}")
        entry = trace.apdu_failures.setdefault(key, {"count": 0, "line": event.line})
        entry["count"] += 1
    if is_shown(event):
        if len(timeline) < TIMELINE_MAX:
            timeline.append(mark + format_event(event))
        else:
            trace.timeline_cut += 1


PIN_WORDS = ("PIN", "LOGIN", "VERIFY", "REFERENCE DATA", "RETRY", "63C", "6983", "AUTH")


def _rank(name: str | None, what: str | None) -> int:
    """0: about a PIN or a login; 1: other failures; 2: what programs do while probing."""
    text = f"{name} {what}".upper()
    if any(w in text for w in PIN_WORDS):
        return 0
    return 2 if name in ROUTINE else 1


def _hint(name: str | None, namespace: str) -> str:
    if not name:
        return ""
    matches = explain.explain(name, namespace)
    return matches[0].hint if matches and matches[0].hint else ""


# -- the report as a list of blocks, rendered three ways -----------------------

@dataclass
class Section:
    title: str
    paragraphs: list[str] = field(default_factory=list)
    items: list[tuple[str, str]] = field(default_factory=list)  # (headline, detail)
    table: tuple[list[str], list[list[str]]] | None = None
    pre: list[str] | None = None  # preformatted, collapsed in md/html
    pre_title: str = ""


def _failures(t: Trace) -> list[tuple[str, str]]:
    s = t.analysis.summary()
    groups: dict[tuple[str, str], dict] = {}
    for f in s["failed_calls"]:
        g = groups.setdefault((f["function"], f["name"]), {"count": 0, **f})
        g["count"] += 1
    items: list[tuple[int, str, str]] = []
    for (function, name), g in groups.items():
        times = f" ({g['count']} times)" if g["count"] > 1 else ""
        head = (f"{function} → {name} (0x{g['rv']:X}){times} — first at process "
                f"{g['process']}, call #{g['seq']}, line {g['line']}")
        items.append((_rank(name, function), head, _hint(name, "pkcs11")))
    for (command, sw), g in t.apdu_failures.items():
        meaning = iso7816.status_word(int(sw, 16)).meaning
        times = f" ({g['count']} times)" if g["count"] > 1 else ""
        items.append((_rank(sw, command), f"APDU {command} → SW {sw} {meaning}{times} — first "
                                          f"at line {g['line']}", _hint(sw, "sw")))
    origins: dict[tuple[str, int], dict] = {}
    for f in s["failures"]:
        g = origins.setdefault((f["function"], f["error"]), {"count": 0, **f})
        g["count"] += 1
    for (function, code), g in origins.items():
        times = f" ({g['count']} times)" if g["count"] > 1 else ""
        items.append((_rank(g["name"], function), f"OpenSC {function} ({g['file']}) failed: "
                                                   f"{g['name']} ({code})"
                             f"{times} — first at line {g['line']}", _hint(str(code), "opensc")))
    for f in s["failed_pcsc_calls"]:
        head = f"{f['function']} → {f['name']} ({f['rv']}) — line {f['line']}"
        items.append((_rank(f["name"], f["function"]), head, _hint(f["rv"], "pcsc")))
    items.sort(key=lambda x: x[0])  # PIN trouble first, routine probing last
    return [(head, hint) for _routine, head, hint in items]


def _timeline(t: Trace, title: str) -> Section:
    timeline = Section("Timeline", pre=t.timeline, pre_title=f"{title} ({len(t.timeline)} lines)")
    if t.timeline_cut:
        timeline.paragraphs.append(f"{t.timeline_cut} more lines are not in this report.")
    return timeline


def sections(t: Trace) -> list[Section]:
    if t.sources is not None:
        return [_timeline(t, f"Timeline of {', '.join(t.sources)} merged by time")]
    s = t.analysis.summary()
    out = []
    traced = [f"{s['format']} trace `{Path(t.path).name}`: {s['processes']} process(es)"]
    if s["calls"]:
        traced.append(f"{s['calls']} PKCS#11 calls")
    if s["apdus"] or s["apdus_unanswered"]:
        traced.append(f"{s['apdus']} APDU exchanges")
    if s["first_time"]:
        traced.append(f"from {s['first_time']} to {s['last_time']}")
    lines = [", ".join(traced) + "."]
    modules = sorted({m["module"] for m in s["modules"] if m["module"]})
    if modules:
        lines.append("Module: " + ", ".join(f"`{m}`" for m in modules) + ".")
    if s["readers"]:
        lines.append("Reader: " + ", ".join(f"`{r}`" for r in s["readers"]) + ".")
    if s["atr"]:
        lines.append("ATR: " + ", ".join(f"`{a}`" for a in s["atr"]) + ".")
    damaged = [f"{s[k]} {label}" for k, label in (
        ("incomplete_records", "incomplete records"), ("torn_records", "records torn by threads"),
        ("unparsed_lines", "lines not understood")) if s.get(k)]
    if damaged:
        lines.append("The trace is damaged: " + ", ".join(damaged) + ".")
    out.append(Section("What was traced", paragraphs=lines))
    failures = _failures(t)
    out.append(Section("What failed", items=failures,
                       paragraphs=[] if failures else ["Nothing failed."]))
    if t.links is not None:
        header, rows, left = links_table(t.links)
        note = [f"{left} more calls are not listed."] if left else []
        debug = Path(t.links.debug).name
        out.append(Section(f"Calls where something failed, and what they did ({debug})",
                           paragraphs=[*note] if rows else ["No call failed or caused a "
                                                            "failure in the card or OpenSC."],
                           table=(header, rows) if rows else None))
    if s["logins"]:
        rows = [[str(x["process"]), f"#{x['seq']}", str(x["user_type"]),
                 str(x.get("pin_length") or "?"), str(x["result"])] for x in s["logins"]]
        out.append(Section("Logins", table=(["process", "call", "user", "PIN length",
                                             "result"], rows)))
    if s["pin_flags"]:
        out.append(Section("PIN warnings from the token", items=[
            (f"process {x['process']}, call #{x['seq']}: " + ", ".join(x["flags"]), "")
            for x in s["pin_flags"]]))
    if s["pin_commands"]:
        rows = [[str(x["line"]), x["command"], x["reference"], str(x["pin_length"] or "-"),
                 str(x["sw"]), str(x["result"])] for x in s["pin_commands"]]
        out.append(Section("PIN commands sent to the card", table=(
            ["line", "command", "reference", "PIN length", "SW", "meaning"], rows)))
    if s["sessions"]:
        rows = [[str(x["process"]), x["handle"], str(x["slot"]), str(x["flags"]),
                 f"#{x['opened_seq']}", f"#{x['closed_seq']}" if x["closed_seq"] is not None
                 else "left open", operations_text(x.get("operations", {})),
                 login_changes_text(x.get("login_changes", []),
                                    x.get("login_changes_unlisted", 0))] for x in s["sessions"]]
        out.append(Section("Sessions", table=(["process", "handle", "slot", "flags", "opened",
                                                "closed", "operations", "logins"], rows)))
    if s["finds"]:
        rows = [[str(x["process"]), f"#{x['seq']}",
                 template_text(x["template"]),
                 ", ".join(x["handles"]) or "nothing"] for x in s["finds"]]
        out.append(Section("Object lookups", table=(["process", "call", "template", "found"],
                                                    rows)))
    if s["objects"]:
        rows = [[str(o["process"]), o["handle"], str(o.get("class", "")),
                 str(o.get("key_type", "")), str(o.get("label", "")), str(o.get("id", "")),
                 ", ".join(f"#{n}" for n in o["found_by"])] for o in s["objects"]]
        out.append(Section("Objects", table=(["process", "handle", "class", "key type", "label",
                                              "id", "found by"], rows)))
    stats = [[f, str(v["count"]), str(v["failed"]), timing_text(v)]
             for f, v in s["statistics"]["functions"].items()]
    stats += [[f"APDU {k}", str(v["count"]), str(v["failed"]), timing_text(v)]
              for k, v in s["statistics"]["apdus"].items()]
    stats += [[k, str(v["count"]), str(v["failed"]), timing_text(v)]
              for k, v in s["statistics"].get("pcsc", {}).items()]
    if stats:
        out.append(Section("Statistics", table=(["what", "count", "failed", "time"], stats)))
    if not t.merged:
        out.append(_timeline(t, "Decoded timeline"))
    return out


def _closing(traces: list[Trace]) -> str:
    counts: dict[str, int] = {}
    for t in traces:
        for k, v in t.redacted.items():
            counts[k] = counts.get(k, 0) + v
    removed = ", ".join(f"{v} {k}" for k, v in sorted(counts.items())) or "nothing was found"
    return (f"Redacted by pkspy {__version__}: secrets removed: {removed}. PIN lengths, "
            "user types and results are kept.")


def render_markdown(traces: list[Trace]) -> str:
    out = []
    for t in traces:
        out.append(f"# pkspy report: {Path(t.path).name}\n")
        for sec in sections(t):
            out.append(f"## {sec.title}\n")
            out += [p + "\n" for p in sec.paragraphs]
            for head, detail in sec.items:
                out.append(f"- **{head}**" + (f"  \n  {detail}" if detail else ""))
            if sec.items:
                out.append("")
            if sec.table:
                header, rows = sec.table
                out.append("| " + " | ".join(header) + " |")
                out.append("|" + "---|" * len(header))
                out += ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in rows]
                out.append("")
            if sec.pre is not None:
                out.append(f"<details><summary>{sec.pre_title}</summary>\n\n```")
                out += sec.pre
                out.append("```\n\n</details>\n")
    out.append("---\n")
    out.append(_closing(traces))
    return "\n".join(out) + "\n"


def render_text(traces: list[Trace]) -> str:
    out = []
    for t in traces:
        title = f"pkspy report: {Path(t.path).name}"
        out += [title, "=" * len(title), ""]
        for sec in sections(t):
            out += [sec.title, "-" * len(sec.title)]
            out += sec.paragraphs
            for head, detail in sec.items:
                out.append(f"* {head}")
                if detail:
                    out.append(f"  {detail}")
            if sec.table:
                header, rows = sec.table
                widths = [max(len(x) for x in col) for col in zip(header, *rows, strict=True)]
                for r in [header, *rows]:
                    out.append("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)))
            if sec.pre is not None:
                out += sec.pre
            out.append("")
    out.append(_closing(traces))
    return "\n".join(out) + "\n"


STYLE = """body{font-family:system-ui,sans-serif;margin:2em;max-width:80em}
pre{background:#f4f4f4;padding:1em;overflow:auto;font-size:85%}
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.2em .5em;text-align:left}
li{margin:.4em 0}.hint{color:#555}"""


def render_html(traces: list[Trace]) -> str:
    e = html.escape
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
           f"<title>pkspy report</title><style>{STYLE}</style></head><body>"]
    for t in traces:
        out.append(f"<h1>pkspy report: {e(Path(t.path).name)}</h1>")
        for sec in sections(t):
            out.append(f"<h2>{e(sec.title)}</h2>")
            out += [f"<p>{e(p)}</p>" for p in sec.paragraphs]
            if sec.items:
                out.append("<ul>")
                out += [f"<li><strong>{e(h)}</strong>"
                        + (f'<br><span class="hint">{e(d)}</span>' if d else "") + "</li>"
                        for h, d in sec.items]
                out.append("</ul>")
            if sec.table:
                header, rows = sec.table
                out.append("<table><tr>" + "".join(f"<th>{e(h)}</th>" for h in header) + "</tr>")
                out += ["<tr>" + "".join(f"<td>{e(c)}</td>" for c in r) + "</tr>" for r in rows]
                out.append("</table>")
            if sec.pre is not None:
                out.append(f"<details><summary>{e(sec.pre_title)}</summary><pre>"
                           + e("\n".join(sec.pre)) + "</pre></details>")
    out.append(f"<hr><p>{e(_closing(traces))}</p></body></html>")
    return "\n".join(out) + "\n"


def write_jsonl(paths: list[str], out: TextIO, fmt: str | None = None) -> None:
    """One JSON object per event, each naming its source file; several files are
    merged by time."""
    formats, events = open_merged(paths, fmt=fmt)
    both = pair(paths, formats)
    links = read_links(*both) if both is not None else None
    for index, event, viewer in with_fields(paths, events):
        record = to_json(event)
        record.update(viewer)
        if links is not None:
            record.update(json_fields(links, paths[index], event))
        out.write(json.dumps(record, ensure_ascii=False) + "\n")


def export(paths: list[str], fmt: str, out: TextIO, trace_format: str | None = None) -> None:
    if fmt == "jsonl":
        write_jsonl(paths, out, trace_format)
        return
    traces = read_merged(paths, trace_format) if len(paths) > 1 else [read(paths[0], trace_format)]
    render = {"md": render_markdown, "text": render_text, "html": render_html}[fmt]
    out.write(render(traces))
