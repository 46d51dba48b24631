"""`pkspy tail` and `pkspy summary` as a user runs them."""

from __future__ import annotations

import json

from conftest import SPY_DIR, pkspy

V027 = SPY_DIR / "pkcs11-spy-0.27.1-softhsm2.log"


def test_summary_json_has_the_documented_keys_and_types():
    r = pkspy("summary", "--json", str(V027))
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)
    assert s["format"] == "pkcs11-spy" and s["processes"] == 5 and s["calls"] == 289
    assert sum(s["calls_by_function"].values()) == s["calls"]
    assert s["incomplete_records"] == 0 and s["unparsed_lines"] == 0
    fail = next(f for f in s["failed_calls"] if f["function"] == "C_Login")
    assert fail == {"process": 1, "seq": 7, "line": fail["line"], "function": "C_Login",
                    "rv": 160, "name": "CKR_PIN_INCORRECT"}
    assert V027.read_text().splitlines()[fail["line"] - 1] == "7: C_Login"
    session = s["sessions"][0]
    assert session["handle"] == "0x1" and session["slot"] == "0x2d76028c"
    assert session["flags"] == "0x4" and session["opened_seq"] == 5 and session["closed_seq"] == 8
    assert {"process": 3, "seq": 9, "session": "0x1", "template": {"CKA_CLASS": "CKO_PRIVATE_KEY"},
            "handles": ["0x2"]}.items() <= next(f for f in s["finds"] if f["process"] == 3).items()


def test_summary_text_names_the_failure():
    r = pkspy("summary", str(V027))
    assert r.returncode == 0
    out = r.stdout.decode()
    assert "processes  5" in out and "C_Login" in out and "CKR_PIN_INCORRECT" in out


def test_tail_no_follow_prints_one_line_per_call():
    r = pkspy("tail", "--no-follow", str(V027))
    assert r.returncode == 0, r.stderr
    lines = r.stdout.decode().splitlines()
    calls = [line for line in lines if " C_" in line or "SetOperationState" in line]
    assert len(calls) == 289
    login = next(line for line in lines if "#7 C_Login" in line and "PIN_INCORRECT" in line)
    assert "user=CKU_USER" in login and "session=0x1" in login
    assert "‹PIN redacted, 10 bytes›" in login


def test_tail_last_n_errors_and_json():
    r = pkspy("tail", "--no-follow", "-n", "3", str(V027))
    lines = r.stdout.decode().splitlines()
    assert len(lines) == 3 and "C_Finalize" in lines[-1]
    r = pkspy("tail", "--no-follow", "--errors", str(V027))
    lines = r.stdout.decode().splitlines()
    assert lines and all("-> CKR_OK" not in line for line in lines)
    assert any("CKR_PIN_INCORRECT" in line for line in lines)
    r = pkspy("tail", "--no-follow", "--json", str(V027))
    events = [json.loads(line) for line in r.stdout.decode().splitlines()]
    calls = [e for e in events if e["kind"] == "call"]
    assert len(calls) == 289 and calls[0]["function"] == "C_GetInterface"
    assert sum(e["kind"] == "process" for e in events) == 5


def test_tail_reads_stdin():
    r = pkspy("tail", "-", input=V027.read_bytes())
    assert r.returncode == 0, r.stderr
    assert len([x for x in r.stdout.decode().splitlines() if " C_" in x]) == 289


def test_bad_input_gets_one_line_and_nonzero_exit(tmp_path):
    not_trace = tmp_path / "notes.txt"
    not_trace.write_text("hello\nthis is not a trace\n")
    empty = tmp_path / "empty.log"
    empty.write_bytes(b"")
    binary = tmp_path / "blob.bin"
    binary.write_bytes(bytes(range(256)) * 64)
    cases = {str(tmp_path / "missing.log"): ("no such file", 2),
             str(tmp_path): ("is a directory", 2), str(not_trace): ("not a trace", 3),
             str(empty): ("empty", 3), str(binary): ("not a trace", 3)}  # pkspy/errors.py
    for path, (words, code) in cases.items():
        for cmd in (["summary"], ["summary", "--json"], ["tail", "--no-follow"]):
            r = pkspy(*cmd, path)
            err = r.stderr.decode()
            assert r.returncode == code, (cmd, path, err)
            assert err.count("\n") == 1 and err.startswith("pkspy: ") and words in err, err
            assert "Traceback" not in err and r.stdout == b""


def test_format_option_forces_a_parser(tmp_path):
    r = pkspy("summary", "--json", "--format", "pkcs11-spy", str(V027))
    assert json.loads(r.stdout)["calls"] == 289
    r = pkspy("summary", "--format", "nope", str(V027))
    assert r.returncode == 2 and b"nope" in r.stderr
