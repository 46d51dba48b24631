"""`pkspy summary --json` against what the programs that made each fixture did.

The `.expected.json` beside each trace was written by its driver from the
calls it made (fixtures/make_spy_fixtures.py), never by reading the trace.
In the multi-threaded fixture the spy's records tear (it takes no lock): a
torn record keeps its call but loses its result, so there the checks are
that nothing is invented and that every gap is a record marked torn.
"""

from __future__ import annotations

import json
from collections import Counter

from conftest import expected, pkspy

from decoders import pkcs11
from pkspy.model import Pkcs11Call
from pkspy.pipeline import open_events


def _summary(trace) -> dict:
    r = pkspy("summary", "--json", str(trace))
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def _calls(trace) -> list[Pkcs11Call]:
    return [e for e in open_events(str(trace))[1] if isinstance(e, Pkcs11Call)]


def _ordered(truth: dict) -> set[int]:
    """Processes whose calls were made from one thread, so their order is known."""
    return {c["process"] for c in truth.get("calls", []) if c["ordered"]} or set(
        range(truth["processes"]))


def _torn(calls: list[Pkcs11Call], proc: int, function: str | None = None) -> int:
    """Records of a process (and function) that threads tore apart."""
    return sum(1 for c in calls if c.process == proc and c.function is not None
               and c.torn and (function is None or c.function == function))


def test_only_threaded_fixtures_have_torn_records(spy_trace):
    s, truth = _summary(spy_trace), expected(spy_trace)
    if truth.get("threads"):
        assert s["torn_records"] >= s["incomplete_records"] > 0 and s["orphan_results"] > 0
    else:
        assert s["torn_records"] == s["incomplete_records"] == s["orphan_results"] == 0


def test_processes_and_logins(spy_trace):
    s, truth = _summary(spy_trace), expected(spy_trace)
    assert s["processes"] == truth["processes"]
    ordered = _ordered(truth)
    for proc in range(truth["processes"]):
        got = [(x["user_type"], x["result"]) for x in s["logins"] if x["process"] == proc]
        want = [(x["user_type"], x["result"]) for x in truth["logins"] if x["process"] == proc]
        if proc in ordered:
            assert got == want, proc
            continue
        assert len(got) == len(want), proc
        certain = [(x["user_type"], x["result"]) for x in s["logins"]
                   if x["process"] == proc and not x.get("uncertain")]
        assert not Counter(certain) - Counter(want), proc


def test_sessions(spy_trace):
    s, truth = _summary(spy_trace), expected(spy_trace)
    calls = _calls(spy_trace)
    opened = Counter(x["process"] for x in s["sessions"])
    for proc, n in enumerate(truth["sessions_opened"]):
        assert opened[proc] + _torn(calls, proc, "C_OpenSession") == n, proc


def test_failed_calls(spy_trace):
    s, truth = _summary(spy_trace), expected(spy_trace)
    calls = _calls(spy_trace)
    got = Counter((f["process"], f["function"], f["name"]) for f in s["failed_calls"]
                  if "uncertain" not in f)
    want = Counter((f["process"], f["function"], f["name"]) for f in truth["failed_calls_expected"])
    if truth["failed_calls_expected_is"] == "at_least":
        assert not want - got
        return
    assert not got - want  # nothing invented
    missing = want - got
    for (proc, function, _name), n in missing.items():
        assert n <= _torn(calls, proc, function), (proc, function)


def test_finds(spy_trace):
    s, truth = _summary(spy_trace), expected(spy_trace)
    key = lambda f, n: (f["process"], json.dumps(f["template"], sort_keys=True), n)  # noqa: E731
    got = Counter(key(f, len(f["handles"])) for f in s["finds"])
    want = Counter(key(f, f["handles_found"]) for f in truth["finds"])
    if not truth.get("threads"):
        assert not want - got
        return
    # every lookup is there; the templates of records no thread tore are exact
    assert len(s["finds"]) == len(truth["finds"])
    certain = Counter(key(f, 0)[:2] for f in s["finds"] if "uncertain" not in f)
    assert not certain - Counter(k[:2] for k in want.elements())


def test_call_sequence_of_programs_that_recorded_every_call(spy_trace):
    truth = expected(spy_trace)
    if "calls" not in truth:
        return  # pkcs11-tool runs: the driver cannot see pkcs11-tool's own calls
    calls = [c for c in _calls(spy_trace) if c.function]
    for proc in truth["calls"]:
        mine = [c for c in calls if c.process == proc["process"]]
        want = [(f, rv) for f, rv, _thread in proc["calls"]]
        if proc["ordered"]:
            assert [(c.function, pkcs11.ckr_name(c.rv)) for c in mine] == want
            continue
        # threads: every call is there; every result that survived is a real one
        assert Counter(c.function for c in mine) == Counter(f for f, _ in want)
        known = Counter((c.function, pkcs11.ckr_name(c.rv)) for c in mine
                        if c.rv is not None and not c.torn)
        assert not known - Counter(want)
