"""The pkcs11-spy parser over real traces of OpenSC 0.23 to 0.27.1."""

from __future__ import annotations

import re

from conftest import SPY_DIR, expected

from pkspy.formats.spy import SpyParser
from pkspy.model import Pkcs11Call, ProcessStart, Unparsed
from pkspy.pipeline import open_events
from pkspy.sources import open_trace, read_lines

HEADER = re.compile(r"^\d+: (C_\w+|SetOperationState)\r?$", re.M)
BANNER = "*************** OpenSC PKCS#11 spy *****************"


def events_of(path):
    return list(open_events(str(path))[1])


def calls_of(path):
    return [e for e in events_of(path) if isinstance(e, Pkcs11Call)]


def test_every_call_header_is_one_call_and_every_banner_one_process(spy_trace):
    text = spy_trace.read_text(errors="replace")
    events = events_of(spy_trace)
    calls = [e for e in events if isinstance(e, Pkcs11Call) and e.function]
    assert len(calls) == len(HEADER.findall(text))
    starts = [e for e in events if isinstance(e, ProcessStart)]
    assert len(starts) == text.count(BANNER) == expected(spy_trace)["processes"]
    assert [s.process for s in starts] == list(range(len(starts)))
    # every call's record holds exactly one header: no two calls merged
    for call in calls:
        assert sum(bool(HEADER.match(line)) for line in call.raw) == 1


def test_untorn_traces_parse_without_a_line_left_over(spy_trace):
    if expected(spy_trace).get("threads"):
        return  # torn by threads on purpose: see test_threads_tear_records
    events = events_of(spy_trace)
    assert not [e for e in events if isinstance(e, Unparsed)]
    calls = [e for e in events if isinstance(e, Pkcs11Call)]
    assert [c.problems for c in calls if c.problems] == []
    assert not [c for c in calls if c.incomplete or c.torn or c.rv is None]


def test_pid_and_tid_from_0_24_on():
    calls = calls_of(SPY_DIR / "pkcs11-spy-0.24.0-softhsm2.log")
    assert all(isinstance(c.pid, int) and c.tid and c.tid.isdigit() for c in calls)
    assert calls[0].pid == 2614 or calls[0].pid > 0
    assert calls[0].time and re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}", calls[0].time)
    # one pid per process
    pids = {}
    for c in calls:
        pids.setdefault(c.process, set()).add(c.pid)
    assert all(len(p) == 1 for p in pids.values()) and len(pids) == 5


def test_0_23_has_date_but_no_pid():
    calls = calls_of(SPY_DIR / "softhsm2-pkcs11-tool.log")
    assert calls and all(c.pid is None and c.tid is None and c.time for c in calls)


def test_decoded_values_of_an_ec_key_pair_generation():
    calls = calls_of(SPY_DIR / "pkcs11-spy-0.26.0-softhsm2.log")
    gen = next(c for c in calls if c.function == "C_GenerateKeyPair")
    mech = gen.arg("pMechanism").value
    assert mech.name == "CKM_EC_KEY_PAIR_GEN" and mech.type == 0x1040
    public = {a.name: a for a in gen.arg("pPublicKeyTemplate").value}
    assert public["CKA_EC_PARAMS"].value == bytes.fromhex("06082a8648ce3d030107")
    assert public["CKA_LABEL"].value == b"ec-0.26.0"
    assert public["CKA_CLASS"].value == "CKO_PUBLIC_KEY"
    assert public["CKA_TOKEN"].value is True
    assert gen.arg("hPublicKey", "out").value > 0 and gen.arg("hPrivateKey", "out").value > 0


def test_slot_list_and_token_info():
    calls = calls_of(SPY_DIR / "pkcs11-spy-0.27.1-softhsm2.log")
    size_query, full = [c for c in calls if c.function == "C_GetSlotList"][:2]
    assert size_query.arg("pSlotList").value is None and size_query.arg("pSlotList").length == 2
    assert full.arg("pSlotList").value == [762708620, 1]
    token = next(c for c in calls if c.function == "C_GetTokenInfo")
    assert token.arg("slotID").value == 762708620 == 0x2D76028C
    info = token.arg("pInfo").value
    assert info["label"].strip() == "newer" and info["flags"] == 0x42D
    assert set(info["flag_names"]) == {"CKF_RNG", "CKF_LOGIN_REQUIRED", "CKF_USER_PIN_INITIALIZED",
                                       "CKF_RESTORE_KEY_NOT_NEEDED", "CKF_TOKEN_INITIALIZED"}
    mech = next(c for c in calls if c.function == "C_GetMechanismInfo")
    assert mech.arg("pInfo").value["mechanism"] == "CKM_AES_CBC"
    assert mech.arg("pInfo").value["flags"] == 0x20300


def test_find_objects_matches():
    calls = calls_of(SPY_DIR / "pkcs11-spy-0.27.1-softhsm2.log")
    finds = [c for c in calls if c.function == "C_FindObjects" and c.arg("phObject")]
    assert finds
    for c in finds:
        assert len(c.arg("phObject").value) == c.arg("ulObjectCount").value


def test_incremental_parser_holds_a_record_until_it_returns():
    path = SPY_DIR / "pkcs11-spy-0.27.1-softhsm2.log"
    lines = list(read_lines(open_trace(str(path))))
    login_at = next(i for i, (t, _) in enumerate(lines) if t == "7: C_Login")
    returned_at = next(i for i in range(login_at, len(lines))
                       if lines[i][0].startswith("Returned:"))
    parser = SpyParser()
    seen = []
    for n, (text, offset) in enumerate(lines[:returned_at], 1):
        seen += parser.feed(text, n, offset)
    assert [c.seq for c in seen if isinstance(c, Pkcs11Call)][-1] == 6  # #7 held back
    done = parser.feed(lines[returned_at][0], returned_at + 1, lines[returned_at][1])
    assert [(c.function, c.seq, c.line, c.offset) for c in done] == [
        ("C_Login", 7, login_at + 1, lines[login_at][1])]
    # a trace cut inside a record reports it incomplete at the end
    parser = SpyParser()
    for n, (text, offset) in enumerate(lines[:returned_at], 1):
        parser.feed(text, n, offset)
    tail = parser.close()
    assert len(tail) == 1 and tail[0].incomplete and tail[0].rv is None
    assert tail[0].function == "C_Login"


def test_byte_offsets_point_at_the_record():
    path = SPY_DIR / "pkcs11-spy-0.24.0-softhsm2.log"
    data = path.read_bytes()
    for call in calls_of(path)[:50]:
        assert data[call.offset:].startswith(f"{call.seq}: {call.function}".encode())


def test_0_23_glued_mechanism_info_lines_are_split():
    path = SPY_DIR / "softhsm2-pkcs11-tool.log"
    glued = [line for line in path.read_text().splitlines()
             if line.startswith("[in] type = ") and "[out] pInfo:" in line]
    assert glued  # the real 0.23 quirk is in the fixture
    infos = [c for c in calls_of(path) if c.function == "C_GetMechanismInfo"]
    assert len(infos) >= len(glued)
    for c in infos:
        assert c.arg("type").value == c.arg("pInfo").value["mechanism"]
        assert isinstance(c.arg("pInfo").value["flags"], int) and not c.problems
    # the failing variant: "[in] type = 0x80001234Returned:  112 CKR_MECHANISM_INVALID"
    bad = [c for c in calls_of(SPY_DIR / "softhsm2-pykcs11.log")
           if c.function == "C_GetMechanismInfo" and c.rv == 0x70]
    assert len(bad) == 1 and not bad[0].problems
    assert bad[0].arg("type").value == "CKM_VENDOR_DEFINED+0x1234"


def test_types_the_spy_did_not_know_are_named():
    calls = calls_of(SPY_DIR / "softhsm2-pkcs11-tool.log")
    attrs = {(a.name, a.type) for c in calls if c.function == "C_GetAttributeValue"
             for a in c.arg("pTemplate").value}
    assert ("CKA_UNIQUE_ID", 4) in attrs  # printed "CKA_? (0x00000004)" by 0.23
    assert ("CKA_OPENSC_NON_REPUDIATION", 0xCF534301) in attrs
