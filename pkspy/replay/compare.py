"""Each recorded call against its replayed twin (both read from redacted traces).

The replayed call of a step is found by walking the replay program's list of
live calls alongside the calls of the replay trace. A step diverges when its
result differs, when a lookup finds another number of objects, when an output
has another length, or when a value that does not depend on chance differs (a
digest, an attribute, an RSA PKCS#1 v1.5 signature). Info blocks, slot and
mechanism lists that differ are noted, not counted: another token has another
serial number.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from decoders import pkcs11
from pkspy.model import Arg, Mechanism, Pkcs11Call, Redacted
from pkspy.replay.identity import IDENTIFYING
from pkspy.replay.plan import LOADER, Plan, Step

SAME, DIFFERS, SKIPPED, NOT_RUN = "same", "differs", "skipped", "not run"
# Outputs that chance makes differ from run to run: compared by length only.
RANDOM_OUTPUTS = {"C_GenerateRandom"}
RANDOM_MECHANISMS = ("ECDSA", "DSA", "PSS", "OAEP", "GOSTR3410")
RANDOM_ENCRYPT = ("CKM_RSA_PKCS", "CKM_RSA_PKCS_OAEP", "CKM_RSA_X9_31")
INFO_FIELDS = ("label", "manufacturerID", "model", "flags", "libraryDescription",
               "slotDescription", "state")


@dataclass
class Row:
    step: Step
    verdict: str
    live: Pkcs11Call | None = None
    reason: str | None = None  # why it differs, or why it was skipped
    notes: list[str] = field(default_factory=list)


def pair_live(results: dict, live_calls: list[Pkcs11Call]) -> dict[int, Pkcs11Call]:
    """Step index -> its live call, walking the replay program's list of calls in order."""
    calls = [c for c in live_calls if c.function not in LOADER]
    out: dict[int, Pkcs11Call] = {}
    j = 0
    for owner, fn in results.get("live", []):
        while j < len(calls) and calls[j].function != fn:
            j += 1
        if j >= len(calls):
            break
        if owner is not None:
            out[owner] = calls[j]
        j += 1
    return out


def _out(call: Pkcs11Call, name: str) -> Arg | None:
    return call.arg(name, "out")


def _count(call: Pkcs11Call) -> int | None:
    a = call.arg("ulObjectCount", "out")
    return a.value if a is not None and isinstance(a.value, int) else None


def _template_text(arg: Arg | None) -> str:
    from pkspy.report.lines import format_arg

    return (format_arg(arg) or "{}").removeprefix("pTemplate") if arg is not None else "{}"


def _mechanism(call: Pkcs11Call | None) -> str:
    a = call.arg("pMechanism") if call is not None else None
    return a.value.name if a is not None and isinstance(a.value, Mechanism) else ""


def _random(fn: str, mech: str) -> bool:
    if fn in RANDOM_OUTPUTS:
        return True
    if fn.startswith("C_Sign"):
        return any(k in mech for k in RANDOM_MECHANISMS)
    if fn.startswith("C_Encrypt"):
        return mech in RANDOM_ENCRYPT or any(k in mech for k in RANDOM_MECHANISMS)
    return False


def _buffers(rec: Pkcs11Call, live: Pkcs11Call, mech: str) -> str | None:
    for a in rec.args:
        if a.direction != "out" or a.kind != "buffer":
            continue
        b = _out(live, a.name)
        if b is None:
            continue
        if a.value is None or b.value is None:  # a length query: lengths only
            if a.length != b.length:
                return f"{a.name}: length {b.length} where {a.length} was recorded"
            continue
        if a.length != b.length:
            return f"{a.name}: {b.length} bytes where {a.length} were recorded"
        if (isinstance(a.value, bytes) and isinstance(b.value, bytes) and a.value != b.value
                and not _random(rec.function or "", mech)):
            return f"{a.name}: other bytes (same length {a.length})"
    return None


def _attributes(rec: Pkcs11Call, live: Pkcs11Call) -> str | None:
    a, b = rec.arg("pTemplate", "out"), live.arg("pTemplate", "out")
    if a is None or b is None:
        return None
    theirs = {x.name: x for x in b.value or []}
    for x in a.value or []:
        y = theirs.get(x.name)
        if y is None:
            continue
        if x.length != y.length:
            what = "unavailable" if y.length == -1 else f"{y.length} bytes"
            was = "unavailable" if x.length == -1 else f"{x.length} bytes"
            return f"{x.name}: {what} where {was} was recorded"
        if (not isinstance(x.value, Redacted) and not isinstance(y.value, Redacted)
                and x.value is not None and y.value is not None and x.value != y.value):
            if x.name in IDENTIFYING:
                return (f"{x.name}: another value: not the object the user's lookup found at "
                        "this place (tokens list objects in their own order)")
            return f"{x.name}: another value"
    return None


def _notes(rec: Pkcs11Call, live: Pkcs11Call) -> list[str]:
    notes = []
    for a in rec.args:
        b = _out(live, a.name)
        if b is None:
            continue
        if a.kind == "info" and isinstance(a.value, dict) and isinstance(b.value, dict):
            differ = [k for k in INFO_FIELDS if k in a.value and a.value.get(k) != b.value.get(k)]
            if differ:
                notes.append("info differs: " + ", ".join(differ))
        elif a.kind == "slots" and a.value is not None and b.value is not None \
                and len(a.value) != len(b.value):
            notes.append(f"{len(b.value)} slot(s) where {len(a.value)} were recorded")
        elif a.kind == "mechanisms" and a.value and b.value is not None:
            missing = [m for m in a.value if m not in b.value]
            if missing:
                notes.append(f"{len(missing)} recorded mechanism(s) missing: "
                             + ", ".join(missing[:4]) + (" …" if len(missing) > 4 else ""))
    return notes


def compare(the_plan: Plan, results: dict, live_calls: list[Pkcs11Call]) -> list[Row]:
    paired = pair_live(results, live_calls)
    by_index = {s["index"]: s for s in results.get("steps", [])}
    rows: list[Row] = []
    finding: dict[int, Arg | None] = {}  # recorded session -> template of its lookup
    operation: dict[tuple[int, str], str] = {}  # (session, Sign/Encrypt...) -> mechanism
    for i, step in enumerate(the_plan.steps):
        rec = step.call
        fn = rec.function or ""
        s = rec.arg("hSession")
        session = s.value if s is not None and isinstance(s.value, int) else -1
        if fn == "C_FindObjectsInit":
            finding[session] = rec.arg("pTemplate", "in") or rec.arg("pTemplate")
        if fn.endswith("Init") and rec.arg("pMechanism") is not None:
            operation[(session, fn[2:-4])] = _mechanism(rec)
        result = by_index.get(i, {})
        status = result.get("status", "skipped")
        if i == results.get("crashed"):
            live = paired.get(i)
            rows.append(Row(step, DIFFERS, live=live, reason=(
                f"{_rv(rec.rv)} was recorded; the replay program {results.get('ended', 'ended')}"
                " during this call")))
            break
        if status in ("skip", "refuse", "skipped", "merged") or i not in paired:
            reason = result.get("reason") or step.reason or "not made"
            if status == "merged" and i + 1 in paired:
                reason = "asked together with the next call"
            rows.append(Row(step, SKIPPED if status != "merged" else NOT_RUN, reason=reason))
            continue
        live = paired[i]
        row = Row(step, SAME, live=live)
        rows.append(row)
        if rec.rv != live.rv:
            row.verdict = DIFFERS
            row.reason = f"{_rv(rec.rv)} was recorded, the replay got {_rv(live.rv)}"
            meaning = pkcs11.ckr_meaning(live.rv) if live.rv else None
            if meaning:
                row.reason += f" ({meaning})"
            continue
        if fn == "C_FindObjects" and _count(rec) != _count(live):
            row.verdict = DIFFERS
            row.reason = (f"the lookup found {objects(_count(live))} ({objects(_count(rec))} "
                          f"recorded), template {_template_text(finding.get(session))}")
            if _count(live) == 0:
                row.reason += ": no object on this token matches it"
            continue
        op = fn[2:].removesuffix("Final").removesuffix("Update")
        problem = _buffers(rec, live, operation.get((session, op), "")) or (
            _attributes(rec, live) if fn == "C_GetAttributeValue" else None)
        if problem:
            row.verdict, row.reason = DIFFERS, problem
            continue
        row.notes = _notes(rec, live)
    return rows


def objects(n: int | None) -> str:
    return "1 object" if n == 1 else f"{n} objects"


def _rv(rv: int | None) -> str:
    return "no result" if rv is None else pkcs11.ckr_name(rv)


def first_divergence(rows: list[Row]) -> Row | None:
    return next((r for r in rows if r.verdict == DIFFERS), None)
