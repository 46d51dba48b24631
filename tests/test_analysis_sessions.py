"""Operations and login changes per session, checked against what the drivers that
made the fixtures recorded doing (their *.expected.json), never against pkspy."""

from __future__ import annotations

from collections import Counter

from conftest import ROOT, SPY_DIR, expected, pkspy, summary

PYKCS11 = SPY_DIR / "softhsm2-pykcs11.log"
THREADS = SPY_DIR / "softhsm2-threads.log"
# The driver's call that starts each kind of operation, and the calls that continue it.
STARTS = {"find": "C_FindObjectsInit", "sign": "C_SignInit", "verify": "C_VerifyInit",
          "digest": "C_DigestInit", "encrypt": "C_EncryptInit", "decrypt": "C_DecryptInit",
          "generate key": "C_GenerateKey", "generate key pair": "C_GenerateKeyPair",
          "create object": "C_CreateObject", "destroy object": "C_DestroyObject",
          "get attribute": "C_GetAttributeValue", "set attribute": "C_SetAttributeValue",
          "random": "C_GenerateRandom"}
KIND_OF = {f: k for k, f in STARTS.items()} | {
    "C_FindObjects": "find", "C_FindObjectsFinal": "find", "C_Sign": "sign",
    "C_Verify": "verify", "C_Digest": "digest", "C_Encrypt": "encrypt", "C_Decrypt": "decrypt",
    "C_SeedRandom": "random"}


def driver_operations(calls: list[list]) -> dict[str, dict[str, int]]:
    """Operations the driver ran, from its recorded [function, rv, thread] calls. In
    these runs no operation failed twice, so a failing call is one failed operation."""
    ops: dict[str, dict[str, int]] = {}
    for function, rv, _thread in calls:
        kind = KIND_OF.get(function)
        if kind is None:
            continue
        op = ops.setdefault(kind, {"count": 0, "failed": 0})
        op["count"] += function == STARTS[kind] or function == "C_SeedRandom"
        op["failed"] += rv != "CKR_OK"
    return ops


def driver_logins(calls: list[list]) -> list[tuple[str, str]]:
    return [(f, rv) for f, rv, _ in calls if f in ("C_Login", "C_Logout")]


def test_single_session_processes_match_the_driver() -> None:
    truth, s = expected(PYKCS11), summary(PYKCS11)
    for run in truth["calls"]:
        sessions = [x for x in s["sessions"] if x["process"] == run["process"]]
        if len(sessions) != 1:
            continue
        session = sessions[0]
        want = driver_operations(run["calls"])
        assert {k: {"count": v["count"], "failed": v["failed"]}
                for k, v in session["operations"].items()} == want
        assert [(c["call"], c["result"]) for c in session["login_changes"]] == \
            driver_logins(run["calls"])


def test_operations_of_two_sessions_add_up_to_the_process() -> None:
    truth, s = expected(PYKCS11), summary(PYKCS11)
    run = next(r for r in truth["calls"] if r["process"] == 1)
    sessions = [x for x in s["sessions"] if x["process"] == 1]
    assert len(sessions) == 2
    total: dict[str, dict[str, int]] = {}
    for x in sessions:
        for kind, op in x["operations"].items():
            t = total.setdefault(kind, {"count": 0, "failed": 0})
            t["count"] += op["count"]
            t["failed"] += op["failed"]
    assert total == driver_operations(run["calls"])
    # PyKCS11 asks C_Sign for the length first: two calls, one operation
    assert total["sign"]["count"] == Counter(f for f, _, _ in run["calls"])["C_Sign"] // 2


def test_each_thread_session_matches_its_thread() -> None:
    """Process 1 of the threaded run: PyKCS11 keeps each call whole, so every count is
    exact. Each worker thread had its own session; the driver counted per thread."""
    threads = next(t for t in expected(THREADS)["threads"] if t["process"] == 1)
    sessions = {x["handle"]: x for x in summary(THREADS)["sessions"] if x["process"] == 1}
    for worker in threads["per_thread"]:
        session = sessions[f"0x{worker['session_handle']:x}"]
        counts = worker["call_counts"]
        assert session["operations"] == {
            "find": {"count": counts["C_FindObjectsInit"], "failed": 0},
            "sign": {"count": counts["C_SignInit"], "failed": 0}}
        logins = Counter(c["result"] for c in session["login_changes"] if c["call"] == "C_Login")
        assert logins == Counter(worker["logins"])
        assert sum(c["call"] == "C_Logout" for c in session["login_changes"]) == \
            counts.get("C_Logout", 0)


def test_torn_records_are_counted_apart() -> None:
    """Process 2 released the GIL: the spy's records are torn, so some calls may be
    another's. Those are counted as uncertain, never as more or failed operations."""
    threads = next(t for t in expected(THREADS)["threads"] if t["process"] == 2)
    sessions = {x["handle"]: x for x in summary(THREADS)["sessions"] if x["process"] == 2}
    uncertain = 0
    for worker in threads["per_thread"]:
        ops = sessions[f"0x{worker['session_handle']:x}"]["operations"]
        for kind, start in (("find", "C_FindObjectsInit"), ("sign", "C_SignInit")):
            op = ops.get(kind, {"count": 0, "failed": 0})
            assert op["failed"] == 0
            assert op["count"] + op.get("uncertain", 0) <= worker["call_counts"][start]
            uncertain += op.get("uncertain", 0)
    assert uncertain > 0


def test_summary_text_and_export_show_operations() -> None:
    for args in (("summary",), ("export", "-f", "md"), ("export", "-f", "text"),
                 ("export", "-f", "html")):
        r = pkspy(*args, str(THREADS))
        assert r.returncode == 0, r.stderr
        out = r.stdout.decode()
        assert "find 20, sign 20" in out
        assert "C_Login CKU_USER -&gt; CKR_OK" in out if args[-1] == "html" else \
            "C_Login CKU_USER -> CKR_OK" in out


# -- per-function statistics and durations ------------------------------------

def test_function_statistics_match_the_driver() -> None:
    truth, stats = expected(PYKCS11), summary(PYKCS11)["statistics"]["functions"]
    count: Counter[str] = Counter()
    failed: Counter[str] = Counter()
    for run in truth["calls"]:
        for function, rv, _ in run["calls"]:
            count[function] += 1
            failed[function] += rv != "CKR_OK"
    assert {f: (v["count"], v["failed"]) for f, v in stats.items()} == \
        {f: (n, failed[f]) for f, n in count.items()}


def test_spy_durations_are_bounds_that_do_not_overlap(spy_trace) -> None:
    """The spy prints only start times: pkspy gives no duration, only an upper bound
    per call (the time to the next call). Bounds of one process never overlap, so
    together they fit in the process's span, plus the 1 ms each loses to truncation."""
    from datetime import datetime

    from pkspy.model import Pkcs11Call
    from pkspy.pipeline import open_events

    s = summary(spy_trace)
    stats = s["statistics"]["functions"]
    assert not any("total_ms" in v for v in stats.values())
    assert any("bound_total_ms" in v for v in stats.values())
    spans: dict[int, list[float]] = {}
    for e in open_events(str(spy_trace))[1]:
        if isinstance(e, Pkcs11Call) and e.time:
            t = datetime.fromisoformat(e.time).timestamp()
            spans.setdefault(e.process, []).append(t)
    room = sum((max(v) - min(v)) * 1000 + len(v) for v in spans.values())
    assert sum(v.get("bound_total_ms", 0) for v in stats.values()) <= room + 1e-6
    for v in stats.values():
        if "bound_total_ms" in v:
            assert 1.0 <= v["bound_max_ms"] <= v["bound_total_ms"]


def test_pcsc_statistics_match_the_program_and_are_timed() -> None:
    trace = ROOT / "fixtures" / "pcsc-spy" / "pyscard.raw"
    truth, stats = expected(trace), summary(trace)["statistics"]["pcsc"]
    failed = Counter(c["function"] for c in truth["failed_calls"])
    assert {f: (v["count"], v["failed"]) for f, v in stats.items()} == \
        {f: (n, failed[f]) for f, n in truth["calls_by_function"].items()}
    assert all("total_ms" in v and v["max_ms"] <= v["total_ms"] for v in stats.values())
    md = pkspy("export", "-f", "md", str(trace)).stdout.decode()
    for function, n in truth["calls_by_function"].items():  # the report's statistics table
        assert f"| {function} | {n} | {failed[function]} | " in md


def test_opensc_functions_are_timed_from_called_to_returning() -> None:
    """Every APDU the card got went through sc_single_transmit, which logs "called"
    and "returning": each is counted and timed."""
    trace = ROOT / "fixtures" / "opensc-debug" / "pkcs11-tool-L-d9.log"
    truth, s = expected(trace), summary(trace)
    single = s["statistics"]["opensc_functions"]["sc_single_transmit"]
    assert single["count"] == truth["apdus"]
    assert "total_ms" in single and single["failed"] == 0
    r = pkspy("summary", str(trace))
    assert "OpenSC functions that returned" in r.stdout.decode()


def test_a_long_session_lists_its_first_login_changes_and_counts_the_rest(monkeypatch) -> None:
    """A session that logs in for ever keeps bounded memory: the first changes are
    listed, the others counted, and together they are what the thread did."""
    from pkspy import analysis
    from pkspy.report.summary import render, summarize

    monkeypatch.setattr(analysis, "LOGIN_CHANGES_LISTED", 5)
    threads = next(t for t in expected(THREADS)["threads"] if t["process"] == 1)
    s = summarize(str(THREADS))
    sessions = {x["handle"]: x for x in s["sessions"] if x["process"] == 1}
    for worker in threads["per_thread"]:
        session = sessions[f"0x{worker['session_handle']:x}"]
        did = worker["call_counts"]["C_Login"] + worker["call_counts"].get("C_Logout", 0)
        assert len(session["login_changes"]) == 5
        assert 5 + session["login_changes_unlisted"] == did
    assert f"and {did - 5} more" in render(s)
