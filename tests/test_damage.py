"""Summary of damage: `pkspy summary` says how many records were incomplete, torn or
unparsed, and where (Analysis.damage, which the TUI can read too)."""

from __future__ import annotations

import json

from conftest import ROOT, SPY_DIR, pkspy

from pkspy.analysis import DAMAGE_LISTED

SPY = (SPY_DIR / "pkcs11-spy-0.24.0-softhsm2.log").read_bytes()


def _summary(path) -> dict:
    r = pkspy("summary", "--json", str(path))
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_a_crash_cut_and_pasted_garbage_are_located(tmp_path):
    at = SPY.index(b"\n3: C_") + 1  # in process 0, which the cut ends
    garbage_line = SPY[:at].count(b"\n") + 1
    cut = SPY.index(b"Returned:", SPY.index(b"\n8: C_Finalize\n"))  # a crash in the last call
    trace = tmp_path / "damaged.log"
    trace.write_bytes(SPY[:at] + b"paste from a chat\n\xff\xfe garbage\n" + SPY[at:cut])
    s = _summary(trace)
    assert s["unparsed_lines"] == 2 and s["incomplete_records"] >= 1
    unparsed = [d for d in s["damage"] if d["kind"] == "unparsed"]
    assert [(d["line"], d["end_line"]) for d in unparsed] == [(garbage_line, garbage_line + 1)]
    incomplete = [d for d in s["damage"] if "incomplete" in d["kind"]]
    last_call = (SPY[:at] + b"x\nx\n" + SPY[at:cut]).count(b"\n") + 1
    assert any(d["what"] == "C_Finalize" and d["line"] <= last_call <= d["end_line"] + 1
               for d in incomplete), incomplete
    text = pkspy("summary", str(trace)).stdout.decode()
    assert f"line {garbage_line}-{garbage_line + 1}" in text and "unparsed" in text


def test_torn_records_of_threads_are_listed_and_bounded():
    trace = SPY_DIR / "softhsm2-threads.log"
    s = _summary(trace)
    kinds = {d["kind"] for d in s["damage"]}
    assert {"torn", "result without call"} <= kinds or "incomplete, torn" in kinds
    total = s["incomplete_records"] + s["torn_records"] + s["orphan_results"]
    assert len(s["damage"]) == min(DAMAGE_LISTED, total + len(
        [d for d in s["damage"] if d["kind"] == "unparsed"]))
    lines = trace.read_text().splitlines()
    for d in s["damage"]:
        if "torn" in d["kind"] and d["what"].startswith("C_"):
            assert lines[d["line"] - 1].endswith(d["what"].split(":")[0])  # the call's header
    text = pkspy("summary", str(trace)).stdout.decode()
    assert "are listed by summary --json" in text


def test_an_undamaged_trace_has_no_damage():
    s = _summary(ROOT / "fixtures/pkcs11-spy/pkcs11-spy-0.27.1-softhsm2.log")
    assert s["damage"] == [] and s["unparsed_lines"] == 0
