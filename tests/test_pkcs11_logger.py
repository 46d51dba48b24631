"""pkcs11-logger 2.3.0 traces: PyKCS11 (PINs hidden, the default) and pkcs11-tool
(PKCS11_LOGGER_FLAGS=8: PINs in clear) through the logger over SoftHSM2
(fixtures/pkcs11-logger/make_logger_fixtures.py)."""

from __future__ import annotations

import json
import re
from collections import Counter

import pytest
from conftest import (
    ROOT,
    assert_no_output_holds_a_secret,
    expected,
    pkspy,
    summary,
)

from decoders import pkcs11
from pkspy import formats
from pkspy.formats.pkcs11_logger import Pkcs11LoggerParser
from pkspy.model import Pkcs11Call, ProcessStart, Redacted
from pkspy.pipeline import open_events

DIR = ROOT / "fixtures" / "pkcs11-logger"
TRACES = sorted(DIR.glob("*.log"))
HIDDEN = DIR / "logger-pykcs11.log"
PINS = DIR / "logger-pins-tool.log"
IDS = re.compile(r"^0x[0-9a-f]{8} : 0x[0-9a-f]{16} : ")


def _parse(lines: list[str]) -> list:
    parser = Pkcs11LoggerParser()
    events = []
    for n, line in enumerate(lines, 1):
        events += parser.feed(line, n, 0)
    return events + parser.close()


def _calls(trace) -> list[Pkcs11Call]:
    return [e for e in open_events(str(trace))[1] if isinstance(e, Pkcs11Call)]


@pytest.mark.parametrize("trace", TRACES, ids=lambda p: p.name)
def test_detected_from_the_head_and_from_a_middle_part(trace):
    lines = trace.read_text(errors="replace").splitlines()
    assert formats.detect(lines[:200]) == "pkcs11-logger"
    assert formats.detect(lines[len(lines) // 2:]) == "pkcs11-logger"
    # without pid and tid (PKCS11_LOGGER_FLAGS=6) the lines still say what they are
    assert formats.detect([IDS.sub("", line) for line in lines[:50]]) == "pkcs11-logger"


def test_every_call_the_driver_made_in_order_with_its_result():
    truth = expected(HIDDEN)
    calls = _calls(HIDDEN)
    for proc in truth["calls"]:
        got = [(c.function, pkcs11.ckr_name(c.rv)) for c in calls if c.process == proc["process"]]
        assert got == [(f, rv) for f, rv, _thread in proc["calls"]]
    assert not [c for c in calls if c.incomplete or c.torn or c.problems]
    # one banner per process, with the module the logger loaded
    starts = [e for e in open_events(str(HIDDEN))[1] if isinstance(e, ProcessStart)]
    assert [s.process for s in starts] == list(range(truth["processes"]))
    assert {s.module for s in starts} == {truth["spy"]["loaded_module"]}
    assert {s.tool for s in starts} == {f"pkcs11-logger {truth['spy']['pkcs11-logger']}"}
    assert len({c.pid for c in calls}) == truth["processes"]


def test_blank_lines_before_the_trace_begin_no_process():
    # a paste often starts with an empty line: the first pid is still process 0
    lines = ["", "  ", *HIDDEN.read_text().splitlines()]
    calls = [e for e in _parse(lines) if isinstance(e, Pkcs11Call)]
    want = _calls(HIDDEN)
    assert [(c.process, c.function, c.line + 2) for c in want] == \
        [(c.process, c.function, c.line) for c in calls]


@pytest.mark.parametrize("trace", TRACES, ids=lambda p: p.name)
def test_logins_and_failures_are_the_ones_the_clients_made(trace):
    truth = expected(trace)
    got = summary(trace)
    # hidden or not, the length of each PIN is known (ulPinLen), the PIN never shown
    logins = [(lg["process"], lg["user_type"], lg["result"], lg["pin_length"])
              for lg in got["logins"]]
    want_logins = [(lg["process"], lg["user_type"], lg["result"],
                    len(truth["secrets"][lg["pin"]])) for lg in truth["logins"]]
    if "threads" in truth:  # threads log in an order of their own: the same logins
        assert Counter(logins) == Counter(want_logins)
    else:
        assert logins == want_logins
    failed = Counter((f["process"], f["function"], f["name"]) for f in got["failed_calls"])
    want = Counter((f["process"], f["function"], f["name"])
                   for f in truth["failed_calls_expected"])
    if truth["failed_calls_expected_is"] == "exact":
        assert failed == want
    else:
        assert not want - failed


def test_pins_hidden_by_the_logger_are_markers_with_their_length():
    truth = expected(HIDDEN)
    assert not truth["pins_logged"]
    marks = [(c.function, a.name, a.value) for c in _calls(HIDDEN) for a in c.args
             if a.name in ("pPin", "pOldPin", "pNewPin")]
    assert len(marks) == len(truth["secret_uses"])
    assert all(isinstance(v, Redacted) and "hidden by pkcs11-logger" in v.what
               for _, _, v in marks)
    assert [v.length for _, _, v in marks] == [len(truth["secrets"][u["secret"]])
                                               for u in truth["secret_uses"]]


def test_calls_carry_time_pid_tid_and_duration():
    for call in _calls(HIDDEN):
        assert call.pid is not None and call.tid is not None and call.time is not None
        if call.function != "C_GetFunctionList":  # answered by the logger itself
            assert call.duration is not None and call.duration >= 0


def test_values_are_decoded():
    calls = _calls(HIDDEN)
    gen = next(c for c in calls if c.function == "C_GenerateKeyPair" and c.rv == 0)
    assert gen.arg("pMechanism").value.name == "CKM_RSA_PKCS_KEY_PAIR_GEN"
    tmpl = {a.name: a.value for a in gen.arg("pPublicKeyTemplate").value}
    assert tmpl["CKA_CLASS"] == "CKO_PUBLIC_KEY" and tmpl["CKA_TOKEN"] is True
    assert isinstance(gen.arg("hPublicKey").value, int)
    found = [c.arg("phObject", "out") for c in calls if c.function == "C_FindObjects"
             and c.arg("phObject", "out") is not None]
    assert any(a.kind == "objects" and a.value for a in found)
    info = next(c for c in calls if c.function == "C_GetTokenInfo").arg("pInfo", "out").value
    assert "CKF_RNG" in info["flag_names"] and info["model"] == "SoftHSM v2"
    # the known AES key went in with C_CreateObject; it comes out redacted
    key = expected(HIDDEN)["secrets"]["key_values_hex"][0]
    values = {}
    for c in calls:
        if c.function == "C_CreateObject":
            tmpl = {a.name: a.value for a in c.arg("pTemplate").value}
            values[tmpl["CKA_CLASS"]] = tmpl["CKA_VALUE"]
    assert isinstance(values["CKO_SECRET_KEY"], Redacted)
    assert isinstance(values["CKO_DATA"], Redacted)
    assert values["CKO_CERTIFICATE"][:1] == b"\x30"  # public: the DER certificate is shown
    assert key.upper() in HIDDEN.read_text()


@pytest.mark.parametrize("trace", TRACES, ids=lambda p: p.name)
def test_no_output_holds_a_secret(trace, tmp_path):
    truth = expected(trace)
    if truth["pins_logged"]:
        assert truth["secrets"]["so_pin"] in trace.read_text()
    assert_no_output_holds_a_secret(trace, tmp_path, (
        "format", "processes", "calls", "calls_by_function", "failed_calls", "logins",
        "unparsed_lines", "sessions"))


def test_threads_are_told_apart_by_their_tid():
    lines = HIDDEN.read_text().splitlines()
    first = next(i for i, t in enumerate(lines) if t.endswith("Entered C_GetSlotInfo"))
    end = next(i for i in range(first, len(lines)) if " - Returning " in lines[i])
    one = lines[first - 1:end + 1]  # separator .. Returning
    tid = IDS.match(one[0]).group(0).split(" : ")[1]
    other = [t.replace(tid, "0x00007f0000000001", 1) for t in one]
    mixed = [x for pair in zip(one, other, strict=True) for x in pair]  # line by line
    a, b = _parse(mixed)
    assert a.function == b.function == "C_GetSlotInfo"
    assert a.tid != b.tid and a.raw_lines == list(range(1, 2 * len(one), 2))
    assert a.arg("pInfo", "out").value == b.arg("pInfo", "out").value
    assert not a.problems and not a.incomplete and not b.incomplete


def test_2_2_records_with_the_time_in_the_separator():
    # src/log.c before 2.3.0: "%0#10x" thread ids, "*** <time> ***", untimed steps
    prefix = "0x00001a2b : 0x3c4d5e6f : "
    text = ["****************************** 2016-04-03 12:00:01 ***", "Calling C_Login",
            "Input", " hSession: 1", " userType: 1 (CKU_USER)", " pPin: 0x7ffd7a71ea18",
            " *pPin: 2424", " ulPinLen: 4", "Returning 160 (CKR_PIN_INCORRECT)"]
    lines = [prefix + t for t in text]
    assert formats.detect(lines) == "pkcs11-logger"
    (call,) = _parse(lines)
    assert call.function == "C_Login" and call.rv == 0xA0 and call.time == "2016-04-03 12:00:01.000"
    assert call.pid == 0x1A2B and call.arg("pPin").secret == "PIN"
    assert call.arg("pPin").value == b"2424" and call.arg("pPin").length == 4


@pytest.mark.parametrize("cut", [0.3, 0.6, 0.9])
def test_a_cut_or_damaged_trace_reads_without_a_traceback(cut, tmp_path):
    data = PINS.read_bytes()
    pin = expected(PINS)["secrets"]["new_pin"].encode()
    at = data.index(b"*pPin: " + pin, int(len(data) * cut)) + 7 + len(pin) // 2
    broken = tmp_path / "cut.log"
    broken.write_bytes(data[:at])
    r = pkspy("tail", "--no-follow", str(broken))
    assert r.returncode == 0 and b"Traceback" not in r.stderr
    assert pin[: len(pin) // 2] not in r.stdout.replace(b"pNewPin", b"")  # "NewPi"...
    assert b"PIN redacted, %d bytes" % (len(pin) // 2) in r.stdout  # what was left of it
    assert summary(broken)["incomplete_records"] == 1
    lines = data.splitlines(keepends=True)
    mid = len(lines) // 2
    garbage = [b"0x0000 : \x00\xff HEX(zz\n", lines[mid][:40] + b"\n"]
    damaged = tmp_path / "damaged.log"
    damaged.write_bytes(b"".join([*lines[:mid], *garbage, *lines[mid + 1:]]))
    r = pkspy("summary", "--json", str(damaged))
    assert r.returncode == 0 and b"Traceback" not in r.stderr
    got = json.loads(r.stdout)
    assert got["unparsed_lines"] + got.get("problems", 0) + got["incomplete_records"] >= 1


def test_real_threads_each_keep_their_own_calls_in_order():
    trace = DIR / "logger-pins-threads.log"
    truth = expected(trace)
    calls = _calls(trace)
    assert not [c for c in calls if c.incomplete or c.torn or c.problems]
    assert any(c.raw_lines is not None for c in calls)  # threads did interleave lines
    for proc in truth["calls"]:
        want: dict = {}
        for function, rv, thread in proc["calls"]:
            want.setdefault(thread, []).append((function, rv))
        got: dict = {}
        for c in calls:
            if c.process == proc["process"]:
                got.setdefault(c.tid, []).append((c.function, pkcs11.ckr_name(c.rv)))
        # which tid a driver thread got is not known: the sequences are
        assert sorted(got.values()) == sorted(want.values())


@pytest.mark.parametrize("flags", [0x02, 0x06], ids=["no-pid", "no-pid-no-tid"])
def test_without_pid_or_tid_prefixes(flags):
    # PKCS11_LOGGER_FLAGS 0x02 / 0x04 leave out the pid / tid: the same real lines without them
    lines = HIDDEN.read_text().splitlines()
    keep_tid = not flags & 0x04
    stripped = [IDS.sub(lambda m: m.group(0)[13:] if keep_tid else "", t) for t in lines]
    calls = [e for e in _parse(stripped) if isinstance(e, Pkcs11Call)]
    truth = expected(HIDDEN)
    assert [c.function for c in calls] == [f for p in truth["calls"] for f, _, _ in p["calls"]]
    assert all(c.pid is None and (c.tid is not None) == keep_tid for c in calls)
    assert [c.process for c in calls if c.function == "C_Initialize"] == [0, 1, 2]
    assert not [c for c in calls if c.incomplete or c.torn or c.problems]
