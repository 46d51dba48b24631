"""The replay as a decoded side-by-side table: recorded | replayed, first divergence marked.

Both sides are read from redacted traces and decoded with the same one-line
formatter as ``pkspy tail`` (``report.lines``), so no secret can reach the
table that the traces do not already hide.
"""

from __future__ import annotations

from pkspy.model import Pkcs11Call
from pkspy.replay.compare import DIFFERS, SAME, SKIPPED, Row, first_divergence
from pkspy.replay.plan import REFUSE, RUN, Plan
from pkspy.report.lines import format_arg, result_text

CALL_WIDTH = 46
SIDE_WIDTH = 38
MARKS = {SAME: "=", DIFFERS: "≠", SKIPPED: "-", "not run": "·"}


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _call_text(call: Pkcs11Call) -> str:
    ins = [format_arg(a) for a in call.args if a.direction != "out"]
    return " ".join([f"#{call.seq}", call.function or "?", *filter(None, ins)])


def _result(call: Pkcs11Call | None) -> str:
    if call is None:
        return ""
    name = result_text(call).split(" (", 1)[0]
    outs = [format_arg(a) for a in call.args if a.direction == "out" and a.kind != "info"]
    return " ".join([name, *filter(None, outs)])


def table(rows: list[Row], stop_at_divergence: bool = False) -> str:
    head = f"  {'recorded call':<{CALL_WIDTH}} {'recorded':<{SIDE_WIDTH}} | replayed"
    out = [head, "  " + "-" * (CALL_WIDTH + SIDE_WIDTH + 12)]
    first = first_divergence(rows)
    for row in rows:
        rec = row.step.call
        mark = ">" if row is first else MARKS.get(row.verdict, " ")
        if row.verdict in (SKIPPED, "not run"):
            replayed = f"({row.verdict}: {row.reason})"
        else:
            replayed = _result(row.live) or "(no result)"
        out.append(f"{mark} {_cut(_call_text(rec), CALL_WIDTH):<{CALL_WIDTH}} "
                   f"{_cut(_result(rec), SIDE_WIDTH):<{SIDE_WIDTH}} | {replayed}")
        if row.verdict == DIFFERS:
            out.append(f"  {'':<{CALL_WIDTH}} {'':<{SIDE_WIDTH}}   ≠ {row.reason}")
        for note in row.notes:
            out.append(f"  {'':<{CALL_WIDTH}} {'':<{SIDE_WIDTH}}   note: {note}")
        if row is first and stop_at_divergence:
            out.append(f"  ... {len(rows) - rows.index(row) - 1} more step(s) after the first "
                       "divergence (--all shows them)")
            break
    return "\n".join(out)


def verdict(rows: list[Row], trace: str, replay_trace: str | None) -> str:
    first = first_divergence(rows)
    ran = sum(1 for r in rows if r.live is not None)
    skipped = [r for r in rows if r.verdict == SKIPPED]
    lines = [""]
    if first is None:
        lines.append(f"No divergence: {ran} call(s) replayed with the recorded results.")
    else:
        c = first.step.call
        lines.append(f"First divergence: #{c.seq} {c.function} (line {c.line} of {trace}): "
                     f"{first.reason}.")
        others = sum(1 for r in rows if r.verdict == DIFFERS) - 1
        if others:
            lines.append(f"{others} more step(s) differ after it.")
    if skipped:
        lines.append(f"{len(skipped)} call(s) not replayed:")
        for r in skipped:
            lines.append(f"  #{r.step.call.seq} {r.step.call.function}: {r.reason}")
    if replay_trace:
        lines.append(f"Replay trace (redacted): {replay_trace} — next to the original: "
                     f"pkspy view {trace} {replay_trace}, or pkspy diff {trace} {replay_trace}")
    return "\n".join(lines)


def dry_run(the_plan: Plan, trace: str) -> str:
    """What a replay would do, without touching any module."""
    out = [f"Replay plan for process {the_plan.process} of {trace}"
           + (f" (recorded module {the_plan.module})" if the_plan.module else "")
           + f": {len(the_plan.steps)} call(s)."]
    if len(the_plan.processes) > 1:
        out.append("Processes with calls: " + ", ".join(map(str, the_plan.processes))
                   + " (--process N picks one).")
    for step in the_plan.steps:
        what = {RUN: "run   ", REFUSE: "REFUSE"}.get(step.action, "skip  ")
        line = f"  {what} {_cut(_call_text(step.call), 70)}"
        if step.merged:
            line += "  [made inside the next call]"
        if step.reason:
            line += f"  — {step.reason}"
        out.append(line)
    logins = the_plan.logins()
    if logins:
        out.append("PIN needed for: " + ", ".join(sorted(logins))
                   + " (--pin-env VAR / --so-pin-env VAR, or asked on the terminal).")
    return "\n".join(out)
