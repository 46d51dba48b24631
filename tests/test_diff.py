"""`pkspy diff A B`: where two runs of one program part (pkspy/diff.py, report/diff.py).

fixtures/diff holds runs of one program (fixtures/diff/drive_sign.py) through
pkcs11-spy over SoftHSM2; each pair's expected.json says, from the program's own
record of its calls, where the script made the runs part.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from conftest import ROOT, pkspy, secret_forms

from pkspy.model import Pkcs11Call
from pkspy.pipeline import open_events

DIFF = ROOT / "fixtures" / "diff"
PAIRS = ["pin", "key"]
OPENSC = ROOT / "fixtures" / "opensc-debug"
PCSC = ROOT / "fixtures" / "pcsc-spy"


def _truth(pair: str) -> dict:
    return json.loads((DIFF / f"{pair}.expected.json").read_text())


def _diff_json(a: Path, b: Path) -> tuple[int, dict]:
    r = pkspy("diff", "--json", str(a), str(b))
    assert r.returncode in (0, 1), r.stderr
    return r.returncode, json.loads(r.stdout)


@pytest.mark.parametrize("pair", PAIRS)
def test_diff_finds_the_divergence_each_pair_was_made_with(pair):
    truth = _truth(pair)
    want = truth["divergence"]
    rc, out = _diff_json(DIFF / truth["a"], DIFF / truth["b"])
    assert rc == 1 and out["same"] is False
    first = out["first_divergence"]
    assert first["kind"] == want["kind"]
    for side in ("a", "b"):  # the spy numbers calls as the program made them
        assert first[side]["seq"] == want["seq"]
        assert first[side]["what"] == want["function"]
    if want["kind"] == "result":
        assert first["a"]["result"] == want["a"]["rv"]
        assert first["b"]["result"] == want["b"]["rv"]
    else:  # same call, same result: the number of objects found differs
        assert first["a"]["result"] == first["b"]["result"] == "CKR_OK"
        for side in ("a", "b"):
            found = re.search(r"ulObjectCount=(\d+)", first[side]["key"])
            assert int(found[1]) == want[side]["objects_found"]
    # the calls before it, which both runs made alike
    assert [c["seq"] for c in first["context"]] == list(range(want["seq"] - 3, want["seq"]))
    # what only the working run went on to do is listed after it
    calls_a = [c["function"] for c in truth["runs"][0]["calls"]]
    listed = [x["what"] for d in out["differences"] for x in d["a"]]
    assert "C_Sign" in calls_a and "C_Sign" in listed


def test_text_shows_the_failing_login_decoded_and_redacted():
    truth = _truth("pin")
    r = pkspy("diff", str(DIFF / truth["a"]), str(DIFF / truth["b"]))
    assert r.returncode == 1, r.stderr
    text = r.stdout.decode()
    assert "First difference: the same call came back with another result." in text
    a_line = next(x for x in text.splitlines() if x.startswith("- A "))
    b_line = next(x for x in text.splitlines() if x.startswith("+ B "))
    assert "#6 C_Login" in a_line and a_line.endswith("-> CKR_OK")
    assert "#6 C_Login" in b_line and "CKR_PIN_INCORRECT (0xa0): PIN does not match" in b_line
    assert "pPin=‹PIN redacted, 12 bytes›" in b_line


@pytest.mark.parametrize("pair", PAIRS)
def test_no_pin_in_any_output(pair):
    truth = _truth(pair)
    forms = [f for s in truth["secrets"].values() for f in secret_forms(s)]
    for args in (["diff"], ["diff", "--json"]):
        r = pkspy(*args, str(DIFF / truth["a"]), str(DIFF / truth["b"]))
        assert r.returncode == 1, r.stderr
        out = r.stdout.decode()
        assert "C_Login" in out
        for form in forms:
            assert form not in out, (args, form)


def test_identical_traces_are_the_same():
    trace = DIFF / "pin-ok.log"
    r = pkspy("diff", str(trace), str(trace))
    assert r.returncode == 0, r.stderr
    assert "The same calls and APDUs" in r.stdout.decode()


def test_a_rerun_on_another_token_is_the_same():
    truth = _truth("rerun")
    assert truth["divergence"] is None
    a, b = DIFF / truth["a"], DIFF / truth["b"]
    calls = [[e for e in open_events(str(p))[1] if isinstance(e, Pkcs11Call)] for p in (a, b)]
    # the runs do differ in what the diff sets aside: slot ids, times, pointers
    slots = [{x.arg("slotID").value for x in cs if x.arg("slotID")} for cs in calls]
    assert slots[0] and slots[0].isdisjoint(slots[1])
    assert [x.time for x in calls[0]] != [x.time for x in calls[1]]
    rc, out = _diff_json(a, b)
    assert rc == 0 and out["same"] is True and out["first_divergence"] is None
    assert out["a"]["compared"] == out["b"]["compared"] == len(calls[0]) + 1  # + the banner


def _renumbered(text: str, session: str, key: str) -> str:
    """The same run as if the module had handed out other handles, at another time."""
    text = re.sub(r"(hSession|\*phSession) = 0x1$", rf"\1 = {session}", text, flags=re.M)
    text = re.sub(r"^Object 0x2 matches", f"Object {key} matches", text, flags=re.M)
    text = re.sub(r"^\[in\] hKey = 0x2$", f"[in] hKey = {key}", text, flags=re.M)
    return re.sub(r"^2026-11-27 17:", "2026-12-01 09:", text, flags=re.M)


def test_handles_and_times_differing_alone_make_no_difference(tmp_path):
    original = DIFF / "pin-ok.log"
    other = tmp_path / "other.log"
    other.write_text(_renumbered(original.read_text(), "0x7f", "0x1c"))
    found = [e for e in open_events(str(other))[1] if e.kind == "call"
             and e.function == "C_FindObjects" and e.arg("phObject")]
    assert found[0].arg("phObject").value == [0x1C]  # the rewrite took
    rc, out = _diff_json(original, other)
    assert rc == 0, out["first_divergence"]


def test_a_handle_used_out_of_its_place_is_a_difference(tmp_path):
    """Handles are named by first appearance: signing with another object than the one
    found differs, though every handle is a handle."""
    text = (DIFF / "pin-ok.log").read_text()
    other = tmp_path / "other.log"
    other.write_text(re.sub(r"^\[in\] hKey = 0x2$", "[in] hKey = 0x3", text, flags=re.M))
    rc, out = _diff_json(DIFF / "pin-ok.log", other)
    assert rc == 1
    first = out["first_divergence"]
    assert first["kind"] == "arguments" and first["a"]["what"] == "C_SignInit"
    assert "hKey=object#1" in first["a"]["key"] and "hKey=object#2" in first["b"]["key"]


def test_apdus_of_two_runs_of_the_same_tools_are_the_same():
    # the same five opensc-tool runs, one logging to a file at level 3, one to
    # stderr at level 9: other pids, times and debug lines, the same APDUs
    rc, out = _diff_json(OPENSC / "opensc-tool-d3.log", OPENSC / "opensc-tool-d9-stderr.log")
    assert rc == 0 and out["a"]["compared"] == out["b"]["compared"] > 0


def test_pcsc_calls_and_apdus_compared_with_contexts_and_cards_named():
    rc, out = _diff_json(PCSC / "pyscard.raw", PCSC / "pyscard.txt")  # one run, two renderings
    assert rc == 0
    rc, out = _diff_json(PCSC / "pyscard.raw", PCSC / "pyscard-threads.raw")
    assert rc == 1 and out["first_divergence"]["kind"] == "sequence"
    keys = [x["key"] for d in out["differences"] for x in d["a"] + d["b"]]
    assert any("context#2" in k for k in keys)  # the second thread's own context
    assert not any(re.search(r"hContext=\d", k) for k in keys)


def test_json_shape():
    truth = _truth("key")
    _rc, out = _diff_json(DIFF / truth["a"], DIFF / truth["b"])
    assert set(out) == {"same", "a", "b", "first_divergence", "differences", "differences_cut"}
    assert set(out["a"]) == {"path", "format", "compared", "unparsed"}
    assert out["a"]["format"] == out["b"]["format"] == "pkcs11-spy"
    assert set(out["first_divergence"]) == {"kind", "a_index", "b_index", "a", "b", "context"}
    item = out["first_divergence"]["a"]
    assert set(item) == {"index", "kind", "line", "process", "what", "result", "key", "text",
                         "seq"}
    for d in out["differences"]:
        assert d["op"] in ("replace", "delete", "insert")
        assert len(d["a"]) == d["a_range"][1] - d["a_range"][0]
        assert len(d["b"]) == d["b_range"][1] - d["b_range"][0]


def test_trouble_is_exit_2_with_one_line(tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("not a trace at all\n")
    for args in ([str(tmp_path / "missing.log"), str(DIFF / "pin-ok.log")],
                 [str(DIFF / "pin-ok.log"), str(notes)],
                 [str(DIFF / "pin-ok.log")]):
        r = pkspy("diff", *args)
        assert r.returncode == 2, args
        assert b"Traceback" not in r.stderr and r.stdout == b""


def test_past_the_comparison_bound_the_rest_is_one_change(monkeypatch):
    from pkspy import diff

    truth = _truth("pin")
    a, b = diff.read(str(DIFF / truth["a"])), diff.read(str(DIFF / truth["b"]))
    whole = diff.compare(a, b)
    monkeypatch.setattr(diff, "MAX_COMPARED", 2)
    bounded = diff.compare(a, b)
    assert bounded.first == whole.first  # the divergence is found all the same
    last = bounded.changes[-1]
    # nothing past the bound is dropped: the changes cover both sides to the common end
    covered_a = sum(c.a_range[1] - c.a_range[0] for c in bounded.changes)
    covered_b = sum(c.b_range[1] - c.b_range[0] for c in bounded.changes)
    assert last.a_range[1] == len(a.items) - 2 and last.b_range[1] == len(b.items) - 2
    assert covered_a >= sum(c.a_range[1] - c.a_range[0] for c in whole.changes)
    assert covered_b >= sum(c.b_range[1] - c.b_range[0] for c in whole.changes)


@pytest.mark.parametrize("log", ["spy.log", "opensc-debug.log"])
def test_one_more_run_is_where_the_traces_part(log):
    """fixtures/merge: 'midnight' ran pkcs11-tool -L (under faketime), 'tool' ran the same
    then pkcs11-tool -I. In the spy log and in OpenSC's own log alike, the first run
    matches (other pids, clocks, days) and the difference is the second process."""
    merge = ROOT / "fixtures" / "merge"
    one, two = (json.loads((merge / f"{n}.expected.json").read_text())
                for n in ("midnight", "tool"))
    assert one["runs"][0]["argv"] == two["runs"][0]["argv"] and two["processes"] == 2
    rc, out = _diff_json(merge / f"midnight.{log}", merge / f"tool.{log}")
    assert rc == 1
    first = out["first_divergence"]
    assert first["kind"] == "sequence" and first["a"] is None
    assert first["b"]["process"] == 1 and first["a_index"] == out["a"]["compared"]
    assert all(x["process"] == 1 for d in out["differences"] for x in d["b"])
    # the first run's last call, as each trace records it (OpenSC logs some results itself)
    last = first["context"][-1]
    if log == "spy.log":
        assert last["what"] == "C_Finalize" and last["result"] == "CKR_OK"
    else:
        assert last["what"] == "C_GetSlotInfo" and "in OpenSC's log" in last["key"]


def test_pin_apdus_in_a_diff_stay_redacted():
    from conftest import fixture_secret_forms

    a, b = OPENSC / "pkcs11-tool-L-d9.log", OPENSC / "opensc-tool-d9.log"  # b sends VERIFYs
    forms = fixture_secret_forms(a) + fixture_secret_forms(b)
    for args in (["diff"], ["diff", "--json"]):
        r = pkspy(*args, str(a), str(b))
        assert r.returncode == 1, r.stderr
        out = r.stdout.decode()
        assert "VERIFY" in out and "PIN redacted" in out
        for form in forms:
            assert form not in out, (args, form)
