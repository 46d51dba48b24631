"""pkspy.link: the APDUs and OpenSC failures behind each PKCS#11 call, on a real
pair of traces of the same runs (fixtures/link, made by make_link_fixtures.py),
checked against the card's own journal of what it received in each run."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta
from itertools import pairwise
from pathlib import Path

from conftest import ROOT, expected, pkspy

from pkspy.link import link, link_paths
from pkspy.model import ApduExchange, DebugLine, Pkcs11Call
from pkspy.pipeline import open_events

DIR = ROOT / "fixtures" / "link"
SPY, DEBUG = DIR / "spy.log", DIR / "debug.log"


def _linked() -> tuple[list[Pkcs11Call], dict[int, list]]:
    return link_paths(str(SPY), str(DEBUG))


def test_every_apdu_the_card_saw_is_linked_once_to_a_call_of_its_run() -> None:
    calls, links = _linked()
    runs = expected(SPY)["runs"]
    assert {c.process for c in calls} == {r["process"] for r in runs}
    for run in runs:
        got = [(e.command.hex().upper(), e.response.hex().upper())
               for c in calls if c.process == run["process"]
               for e in links.get(c.line, []) if isinstance(e, ApduExchange)]
        assert got == [(x["command"], x["response"]) for x in run["exchanges"]], run["argv"]
    assert sum(isinstance(e, ApduExchange) for v in links.values() for e in v) == \
        expected(SPY)["apdus"]


def test_a_card_probe_is_never_split_between_calls() -> None:
    """OpenSC probes the card with the same APDUs each time it detects it; a call
    that detects the card holds whole probes, so a link cut at the wrong place shows."""
    calls, links = _linked()
    for run in expected(SPY)["runs"]:
        commands = [x["command"] for x in run["exchanges"]]
        probe = commands[:commands.index(commands[0], 1)] if commands.count(commands[0]) > 1 \
            else commands
        for c in calls:
            if c.process != run["process"]:
                continue
            mine = [e.command.hex().upper() for e in links.get(c.line, [])
                    if isinstance(e, ApduExchange)]
            assert len(mine) % len(probe) == 0, (c.function, c.seq)
            assert mine == probe * (len(mine) // len(probe)), (c.function, c.seq)


def test_linked_events_happened_while_their_call_ran() -> None:
    """The spy stamps a call when it begins; what a call caused is no earlier than
    that, and no later than the next call of its process began."""
    calls, links = _linked()
    starts = {c.line: datetime.fromisoformat(c.time) for c in calls}
    later = {}
    for a, b in pairwise(calls):
        if a.process == b.process:
            later[a.line] = starts[b.line]
    for line, events in links.items():
        day = starts[line].date()
        for e in events:
            t = datetime.combine(day, datetime.strptime(e.time, "%H:%M:%S.%f").time())
            assert starts[line] <= t
            if line in later:
                assert t <= later[line]


def test_every_failure_origin_of_a_run_is_linked() -> None:
    _calls, links = _linked()
    debug = [e for e in open_events(str(DEBUG))[1]
             if isinstance(e, DebugLine) and e.error is not None and e.origin]
    linked = [e for v in links.values() for e in v if isinstance(e, DebugLine)]
    assert debug and [e.line for e in debug] == sorted(e.line for e in linked)


SPY_STAMP = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3})$")
DEBUG_STAMP = re.compile(r"^(P:\d+; T:0x\d+ )(\d\d:\d\d:\d\d\.\d{3})( \[)")


def _ms(t: datetime) -> str:
    return t.strftime("%H:%M:%S.") + f"{t.microsecond // 1000:03d}"


def _retime(tmp: Path, when) -> tuple[Path, Path]:
    """The fixture pair with each time t replaced by when(t): the spy's dated stamps
    and the debug log's times of day (no date: they wrap at midnight)."""
    day = datetime.fromisoformat(next(c.time for c in _linked()[0]))

    def spy_line(m: re.Match) -> str:
        t = when(datetime.fromisoformat(m[1]))
        return t.strftime("%Y-%m-%d ") + _ms(t)

    def debug_line(m: re.Match) -> str:
        clock = datetime.strptime(m[2], "%H:%M:%S.%f").time()
        return m[1] + _ms(when(datetime.combine(day.date(), clock))) + m[3]

    spy, debug = tmp / "spy.log", tmp / "debug.log"
    spy.write_text("".join(SPY_STAMP.sub(spy_line, line)
                           for line in SPY.read_text().splitlines(keepends=True)))
    debug.write_text("".join(DEBUG_STAMP.sub(debug_line, line)
                             for line in DEBUG.read_text().splitlines(keepends=True)))
    return spy, debug


def _lines(links: dict[int, list]) -> dict[int, list[int]]:
    return {k: [e.line for e in v] for k, v in links.items()}


def test_a_run_across_midnight_links_the_same(tmp_path: Path) -> None:
    calls, links = _linked()
    times = [datetime.fromisoformat(c.time) for c in calls]
    middle = times[0] + (times[-1] - times[0]) / 2
    midnight = datetime.combine(middle.date() + timedelta(days=1), datetime.min.time())
    spy, debug = _retime(tmp_path, lambda t: t + (midnight - middle))
    shifted_calls, shifted = link_paths(str(spy), str(debug))
    assert len({c.time[:10] for c in shifted_calls}) == 2  # it really spans two dates
    assert _lines(shifted) == _lines(links)


def test_calls_within_one_millisecond_are_told_apart_by_their_lines(tmp_path: Path) -> None:
    """On a fast machine a run's calls share a millisecond: then only OpenSC's own
    C_Xxx lines tell which call a line belongs to (two C_GetSlotList in a row too).
    Every run squeezed into its first millisecond must link the same."""
    calls, links = _linked()
    firsts = sorted({datetime.fromisoformat(c.time) for c in calls
                     if c.function == "C_GetInterface"})

    def squeeze(t: datetime) -> datetime:
        return max((f for f in firsts if f <= t), default=firsts[0])

    spy, debug = _retime(tmp_path, squeeze)
    squeezed_calls, squeezed = link_paths(str(spy), str(debug))
    assert len({c.time for c in squeezed_calls}) == len(firsts)
    assert _lines(squeezed) == _lines(links)


def test_a_debug_log_of_another_run_links_nothing() -> None:
    """A spy log of SoftHSM2 (0.24: it names its pids) and an OpenSC log of a card:
    no process in common."""
    spy = ROOT / "fixtures" / "pkcs11-spy" / "pkcs11-spy-0.24.0-softhsm2.log"
    calls = [e for e in open_events(str(spy))[1] if isinstance(e, Pkcs11Call)]
    assert link(calls, open_events(str(DEBUG))[1]) == {}


def test_export_md_lists_each_call_with_its_apdus_under_it() -> None:
    truth = expected(SPY)
    r = pkspy("export", "-f", "md", str(SPY), str(DEBUG))
    assert r.returncode == 0, r.stderr
    md = r.stdout.decode()
    section = md.split("## Calls where something failed, and what they did (debug.log)")[1]
    rows = [line for line in section.split("\n## ")[0].splitlines() if line.startswith("| ")]
    calls, links = _linked()
    by_line = {c.line: c for c in calls}
    current, seen, apdus = None, [], 0
    for row in rows[1:]:
        call, debug_line, what = (c.strip() for c in row.strip("|").split(" | "))
        if call:
            current = int(re.search(r"\(line (\d+)\)$", call)[1])
            assert by_line[current].function in call
        elif debug_line:
            seen.append((current, int(debug_line)))
            apdus += "APDU" in what
    # every SW the card gave was an error, so every call that reached the card is listed
    assert all(sw.startswith("6") for run in truth["runs"] for sw in run["status_words"])
    assert seen == [(line, e.line) for line, events in sorted(links.items()) for e in events]
    assert apdus == truth["apdus"]
    assert "C_GetTokenInfo → CKR_TOKEN_NOT_RECOGNIZED" in section


def test_export_jsonl_names_linked_events_both_ways() -> None:
    r = pkspy("export", "-f", "jsonl", str(SPY), str(DEBUG))
    assert r.returncode == 0, r.stderr
    records = [json.loads(line) for line in r.stdout.decode().splitlines()]
    debug = {x["line"]: x for x in records if x["source"].endswith("debug.log")}
    calls = {x["line"]: x for x in records if x["source"].endswith("spy.log")
             and x["kind"] == "call"}
    pointed = set()
    for call in calls.values():
        for link_ in call.get("links", []):
            target = debug[link_["line"]]
            assert target["kind"] == link_["kind"]
            assert target["call"]["line"] == call["line"]
            pointed.add(link_["line"])
    assert pointed == {line for line, x in debug.items() if "call" in x}
    assert sum(x["kind"] == "apdu" and "call" in x for x in debug.values()) == \
        expected(SPY)["apdus"]
    for fmt in ("text", "html"):
        r = pkspy("export", "-f", fmt, str(SPY), str(DEBUG))
        assert r.returncode == 0 and b"C_GetTokenInfo" in r.stdout
