"""p11-kit ``log-calls`` traces: real stderr of pkcs11-tool and PyKCS11 through
p11-kit-proxy over SoftHSM2 (fixtures/p11-kit/make_p11kit_fixtures.py)."""

from __future__ import annotations

import json
from collections import Counter

import pytest
from conftest import (
    ROOT,
    assert_no_output_holds_a_secret,
    expected,
    pkspy,
    summary,
)

from pkspy import formats
from pkspy.formats.p11kit import P11KitParser
from pkspy.model import Pkcs11Call, Redacted, Unparsed
from pkspy.pipeline import open_events

DIR = ROOT / "fixtures" / "p11-kit"
TRACES = sorted(DIR.glob("*.log"))
PYKCS11 = DIR / "p11kit-pykcs11.log"
TOOL = DIR / "p11kit-pkcs11-tool.log"
# Calls p11-kit-proxy hands to the module one for one (it answers C_GetInfo,
# C_GetSlotList... itself and adds calls of its own).
PASSED_THROUGH = ("C_Login", "C_Logout", "C_InitToken", "C_InitPIN", "C_SetPIN",
                  "C_GenerateKey", "C_GenerateKeyPair", "C_CreateObject", "C_DestroyObject",
                  "C_SignInit", "C_Sign", "C_EncryptInit", "C_DecryptInit", "C_GetAttributeValue")


def _parse(text: str) -> list:
    parser = P11KitParser()
    events = []
    for n, line in enumerate(text.splitlines(), 1):
        events += parser.feed(line, n, 0)
    return events + parser.close()


@pytest.mark.parametrize("trace", TRACES, ids=lambda p: p.name)
def test_detected_from_the_head_and_from_a_middle_part(trace):
    lines = trace.read_text(errors="replace").splitlines()
    assert formats.detect(lines[:200]) == "p11-kit"
    assert formats.detect(lines[len(lines) // 2:]) == "p11-kit"


@pytest.mark.parametrize("trace", TRACES, ids=lambda p: p.name)
def test_logins_are_the_ones_the_clients_made(trace):
    truth = expected(trace)
    logins = summary(trace)["logins"]
    assert [(lg["user_type"], lg["result"]) for lg in logins] == [
        (lg["user_type"], lg["result"]) for lg in truth["logins"]]
    # the PIN's length is kept, never the PIN
    assert [lg["pin_length"] for lg in logins] == [
        len(truth["secrets"][lg["pin"]]) for lg in truth["logins"]]


def test_calls_passed_through_match_the_driver_count():
    truth = expected(PYKCS11)
    made = Counter(c[0] for p in truth["client_calls"] for c in p["calls"])
    got = summary(PYKCS11)
    assert {f: got["calls_by_function"].get(f, 0) for f in PASSED_THROUGH} == {
        f: made[f] for f in PASSED_THROUGH}
    # each process starts at C_Initialize: one per driver step, sessions per step as recorded
    assert got["processes"] == truth["processes"] == 3
    opened = Counter(s["process"] for s in got["sessions"])
    assert [opened[p] for p in range(3)] == truth["sessions_opened"]
    # the driver's failures (the complete list) are all there, with their process
    failed = Counter((f["process"], f["function"], f["name"]) for f in got["failed_calls"])
    want = Counter((f["process"], f["function"], f["name"])
                   for f in truth["failed_calls_expected"])
    assert not want - failed


def test_every_pin_function_of_the_tool_runs_is_a_call_with_its_result():
    truth = expected(TOOL)
    calls = [e for e in open_events(str(TOOL))[1] if isinstance(e, Pkcs11Call)]
    pin_calls = [(c.function, c.rv_text) for c in calls
                 if c.function in ("C_InitToken", "C_InitPIN", "C_SetPIN", "C_Login")]
    assert Counter(pin_calls) == Counter((u["function"], u["rv"])
                                         for u in _uses_by_call(truth["secret_uses"]))
    assert not [c for c in calls if c.incomplete or c.torn or c.problems]


def _uses_by_call(uses: list[dict]) -> list[dict]:
    """secret_uses has one entry per PIN argument: C_SetPIN's two are one call."""
    return [u for u in uses if u["param"] != "pNewPin"]


@pytest.mark.parametrize("trace", TRACES, ids=lambda p: p.name)
def test_pin_arguments_are_markers_with_the_pin_length(trace):
    truth = expected(trace)["secrets"]
    lengths = {len(v) for k, v in truth.items() if k.endswith("pin")}
    seen = []
    for event in open_events(str(trace))[1]:
        if isinstance(event, Pkcs11Call):
            for arg in event.args:
                if arg.name in ("pPin", "pOldPin", "pNewPin"):
                    assert isinstance(arg.value, Redacted), (event.line, arg)
                    seen.append(arg.value.length)
                    text = event.raw[arg.span[0]]
                    assert f'= ({arg.value.length}) "{"*" * arg.value.length}"' in text
    assert seen and set(seen) <= lengths


def test_values_and_outputs_are_decoded():
    calls = [e for e in open_events(str(PYKCS11))[1] if isinstance(e, Pkcs11Call)]
    opened = next(c for c in calls if c.function == "C_OpenSession" and c.rv == 0)
    assert opened.arg("*phSession").value >= 1 and opened.arg("slotID").value >= 0
    found = [c.arg("phObject") for c in calls if c.function == "C_FindObjects"]
    assert any(a is not None and a.kind == "objects" and a.value for a in found)
    gen = next(c for c in calls if c.function == "C_GenerateKeyPair")
    assert gen.arg("pMechanism").value.name == "CKM_RSA_PKCS_KEY_PAIR_GEN"
    assert gen.arg("hPublicKey", "out").value != gen.arg("hPrivateKey", "out").value
    # p11-kit prints only attribute types on input, values on output
    create = next(c for c in calls if c.function == "C_CreateObject")
    assert all(a.value is None for a in create.arg("pTemplate").value)
    read = [a for c in calls if c.function == "C_GetAttributeValue" and c.rv == 0
            for a in c.arg("pTemplate", "out").value]
    label = next(a for a in read if a.name == "CKA_LABEL" and a.value is not None)
    assert label.value == b"pkspy-rsa"
    hidden = next(a for a in read if a.name == "CKA_VALUE")
    assert hidden.value is None and hidden.length == 16 and "not printed" in hidden.note


@pytest.mark.parametrize("trace", TRACES, ids=lambda p: p.name)
def test_no_output_holds_a_secret(trace, tmp_path):
    pin = expected(trace)["secrets"]["so_pin"]
    assert pin in trace.read_text(errors="replace")  # p11-kit prints PINs in clear
    assert_no_output_holds_a_secret(trace, tmp_path, (
        "format", "calls", "calls_by_function", "failed_calls", "logins", "unparsed_lines",
        "sessions"))


def test_lookup_templates_say_their_values_were_not_logged():
    # p11-kit prints the types of an input template, not its values: a lookup's
    # template shows each type with '?', in summary, export and their JSON alike
    finds = summary(PYKCS11)["finds"]
    assert finds and all(v is None for f in finds for v in f["template"].values())
    text = pkspy("summary", str(PYKCS11)).stdout.decode()
    md = pkspy("export", "--to", "md", str(PYKCS11)).stdout.decode()
    for out in (text, md):
        assert "CKA_CLASS=?" in out and "CKA_LABEL=?" in out
        assert "=None" not in out


def test_each_raw_line_is_in_exactly_one_event():
    lines = TOOL.read_text(errors="replace").splitlines()
    seen: Counter[int] = Counter()
    for event in open_events(str(TOOL), reveal=True)[1]:
        for n in event.source_lines():
            seen[n] += 1
    assert not [n for n, text in enumerate(lines, 1) if text.strip() and seen[n] != 1]
    # pkcs11-tool's own stderr lines ("Using slot ...", "error: ...") are kept as
    # unparsed lines; no line p11-kit wrote is among them
    unparsed = [e.raw[0] for e in open_events(str(TOOL))[1] if isinstance(e, Unparsed)]
    assert any(u.startswith("Using slot") for u in unparsed)
    assert not [u for u in unparsed if u.startswith(("C_", "  IN: ", " OUT: ", "\t", "    "))]


@pytest.mark.parametrize("cut", [0.25, 0.5, 0.75])
def test_a_cut_or_damaged_trace_reads_without_a_traceback(cut, tmp_path):
    data = PYKCS11.read_bytes()
    pin = expected(PYKCS11)["secrets"]["user_pin"].encode()
    # cut inside a PIN: the part of it that is left is a secret too
    at = data.index(b'"' + pin, int(len(data) * cut)) + 1 + len(pin) // 2
    broken = tmp_path / "cut.log"
    broken.write_bytes(data[:at])
    r = pkspy("tail", "--no-follow", str(broken))
    assert r.returncode == 0 and b"Traceback" not in r.stderr
    assert pin[: len(pin) // 2] not in r.stdout
    got = summary(broken)
    assert got["incomplete_records"] == 1
    last = [e for e in open_events(str(broken))[1] if isinstance(e, Pkcs11Call)][-1]
    assert last.incomplete and "ends inside its value" in last.problems[0]
    damaged = tmp_path / "damaged.log"
    lines = data.splitlines(keepends=True)
    mid = len(lines) // 2
    garbage = [b"\x00\xff garbage }{ ] (\n", lines[mid][:7] + b"\n"]
    damaged.write_bytes(b"".join([*lines[:mid], *garbage, *lines[mid + 1:]]))
    r = pkspy("summary", "--json", str(damaged))
    assert r.returncode == 0 and b"Traceback" not in r.stderr
    assert json.loads(r.stdout)["unparsed_lines"] >= 1


def test_threads_outputs_go_to_the_call_their_result_names():
    events = _parse("C_OpenSession\n  IN: slotID = SL0\n  IN: flags = 4 = CKF_SERIAL_SESSION\n"
                    "C_GetSlotList\n  IN: tokenPresent = CK_TRUE\n"
                    "  IN: pulCount = 0x7FFC51F71EB0 = 1\n"
                    " OUT: pSlotList = (1) [ SL0 ]\nC_GetSlotList = CKR_OK\n"
                    " OUT: phSession = 0x7FFC51F71E00 = S3\nC_OpenSession = CKR_OK\n")
    slots, session = events
    assert slots.function == "C_GetSlotList" and slots.arg("pSlotList").value == [0]
    assert session.arg("*phSession").value == 3 and session.raw_lines == [1, 2, 3, 9, 10]
    assert not slots.torn and not session.torn


def test_attribute_values_are_read_by_their_length():
    # a label holding '" }, { ' and escapes; p11-kit leaves '"' unescaped (common/attrs.c)
    events = _parse('C_GetAttributeValue\n  IN: hObject = H2\n'
                    '  IN: pTemplate = (3) [ CKA_LABEL, CKA_ID, CKA_TOKEN ]\n'
                    ' OUT: pTemplate = (3) [ { CKA_LABEL = (7) "a" }, {" }, '
                    '{ CKA_ID = (2) "\\x01\\t" }, { CKA_TOKEN = (1) "\\x01" } ]\n'
                    'C_GetAttributeValue = CKR_OK\n')
    (call,) = events
    label, ident, token = call.arg("pTemplate", "out").value
    assert label.value == b'a" }, {'
    assert ident.value == b"\x01\t" and token.value is True


def test_older_and_newer_shapes():
    # 0.24 utcTime with NULs, vendor codes as CKR_0x/CKM_0x, 0.25's C_LoginUser names
    events = _parse("C_GetTokenInfo\n  IN: slotID = SL1\n OUT: pInfo = {\n"
                    '\tlabel: "tok"\n\tflags: 1069 = CKF_RNG | CKF_LOGIN_REQUIRED\n'
                    "\tutcTime: \x00(p11-kit:%d) \x00U\n      }\nC_GetTokenInfo = CKR_OK\n"
                    "C_EncryptInit\n  IN: hSession = S1\n  IN: pMechanism = {\n"
                    "\tmechanism: CKM_0x80000001\n\tpParameter: (0) NULL\n      }\n"
                    "  IN: hKey = H4\nC_EncryptInit = CKR_0x80000002\n"
                    "C_LoginUser\n  IN: session = S1\n  IN: user_type = CKU_USER\n"
                    '  IN: pin = (4) "9876"\n  IN: username = (3) "bob"\n'
                    "C_LoginUser = CKR_OK\n")
    info, enc, login = events
    assert info.arg("pInfo").value["flags"] == 1069 and info.arg("pInfo").value["label"] == "tok"
    assert "CKF_LOGIN_REQUIRED" in info.arg("pInfo").value["flag_names"] and not info.problems
    assert enc.rv == 0x80000002 and enc.arg("pMechanism").value.type == 0x80000001
    assert login.arg("pPin").secret == "PIN" and login.arg("pUsername").value == b"bob"
    assert login.arg("userType").value == "CKU_USER"
