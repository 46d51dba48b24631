"""Shapes of other spy versions and platforms.

Where no real trace of a version exists here, the input is a real fixture
rewritten the way that version or platform prints (pkcs11-spy.c's format
strings are quoted), so the parser is held to the source, not to one build.
"""

from __future__ import annotations

import re

from conftest import SPY_DIR

from pkspy.formats import parse
from pkspy.model import Pkcs11Call, Unparsed

REAL = (SPY_DIR / "pkcs11-spy-0.27.1-softhsm2.log").read_bytes()


def _parse(data: bytes):
    lines, offset = [], 0
    for raw in data.splitlines(keepends=True):
        text = raw.rstrip(b"\n")
        text = text[:-1] if text.endswith(b"\r") else text
        lines.append((text.decode("utf-8", "backslashreplace"), offset))
        offset += len(raw)
    return list(parse(lines, "pkcs11-spy"))


def _calls(events):
    return [e for e in events if isinstance(e, Pkcs11Call)]


def _shape(events):
    """What a parse says, without positions and times."""
    out = []
    for c in _calls(events):
        args = [(a.name, a.direction, a.kind, a.value if a.kind != "mechanism" else a.value.name)
                for a in c.args if a.kind not in ("template", "info")]
        out.append((c.process, c.seq, c.function, c.rv, args, c.problems))
    return out


BASE = _parse(REAL)


def test_windows_crlf_and_stamp():
    # Windows: text mode (CRLF), "P:%lu; T:%lu" with no 0x, negative 32-bit vendor rv
    data = REAL.replace(b"; T:0x", b"; T:").replace(b"\n", b"\r\n")
    events = _parse(data)
    assert _shape(events) == _shape(BASE)
    assert all(c.tid and c.tid.isdigit() for c in _calls(events))


def test_before_0_24_and_before_0_13():
    # 0.13-0.23: the date alone; <0.13: no timestamp line at all
    dated = re.sub(rb"(?m)^P:\d+; T:0x\d+ ", b"", REAL)
    events = _parse(dated)
    assert _shape(events) == _shape(BASE)
    assert all(c.pid is None and c.time for c in _calls(events))
    bare = re.sub(rb"(?m)^P:\d+; T:0x\d+ \d{4}-\d\d-\d\d [\d:.]+\n", b"", REAL)
    events = _parse(bare)
    assert _shape(events) == _shape(BASE)
    assert all(c.time is None for c in _calls(events))


def test_vendor_rv_printed_null_or_negative():
    # glibc prints a NULL name as "(null)"; a 32-bit long prints 0x80000123 as negative
    data = REAL.replace(b"Returned:  160 CKR_PIN_INCORRECT",
                        b"Returned:  2147483939 (null)", 1)
    login = next(c for c in _calls(_parse(data)) if c.rv == 0x80000123)
    assert login.function == "C_Login" and login.rv_text == "(null)"
    data = REAL.replace(b"Returned:  160 CKR_PIN_INCORRECT",
                        b"Returned:  -2147483357 (null)", 1)
    assert any(c.rv == 0x80000123 for c in _calls(_parse(data)))


def test_cut_anywhere_never_raises_and_keeps_every_record_before_the_cut():
    step = max(len(REAL) // 97, 1)
    for cut in range(0, len(REAL), step):
        events = _parse(REAL[:cut])
        calls = _calls(events)
        headers = len(re.findall(rb"(?m)^\d+: C_\w+\r?$", REAL[:cut]))
        assert len([c for c in calls if c.function]) == headers
        assert all(not c.incomplete for c in calls[:-1])


def test_garbage_between_records_is_shown_not_dropped():
    junk = b"Using slot 0 with a present token (0x2d76028c)\n\x00\xff binary\n"
    at = REAL.index(b"\n7: C_Login")
    events = _parse(REAL[:at] + b"\n" + junk + REAL[at:])
    unparsed = [e for e in events if isinstance(e, Unparsed)]
    assert [e.raw[0] for e in unparsed] == ["Using slot 0 with a present token (0x2d76028c)",
                                            "\x00\\xff binary"]
    assert _shape(events) == _shape(BASE)


ECMQV = """\
12: C_DeriveKey
2026-11-27 13:38:20.172
[in] hSession = 0x1
[in] pMechanism->type = CKM_ECMQV_DERIVE
[in] pMechanism->pParameter->kdf = CKD_NULL
pMechanism->pParameter->pSharedData[ulSharedDataLen] = 0000000000000000 / 0
    00000000                                                                   
pMechanism->pParameter->pPublicData[ulPublicDataLen] = 000055a281e81110 / 3
    00000000  04 AB CD                                         ...             
pMechanism->pParameter->ulPrivateDataLen = 32\
pMechanism->pParameter->hPrivateData = 5\
pMechanism->pParameter->pPublicData2[ulPublicDataLen2] = 000055a281e81120 / 2
    00000000  04 EF                                            ..              
pMechanism->pParameter->publicKey = 7[in] hBaseKey = 0x3
[in] pTemplate[0]: 
[out] hKey = 0x9
Returned:  0 CKR_OK
"""


def test_ecmqv_parameters_printed_without_newlines():
    # spy_dump_mechanism_in: "%s->pParameter->ulPrivateDataLen = %lu" and the next two
    # fprintf calls have no "\n"; the last one runs into "[in] hBaseKey = ".
    (call,) = _calls(_parse(ECMQV.encode()))
    assert not call.problems and call.rv == 0
    mech = call.arg("pMechanism").value
    params = {a.name.rsplit("->", 1)[-1]: a.value for a in mech.params}
    assert mech.name == "CKM_ECMQV_DERIVE"
    assert params["pPublicData"] == b"\x04\xab\xcd" and params["pPublicData2"] == b"\x04\xef"
    assert params["ulPrivateDataLen"] == 32 and params["hPrivateData"] == 5
    assert params["publicKey"] == 7 and params["kdf"] == "CKD_NULL"
    assert call.arg("hBaseKey").value == 3 and call.arg("hKey", "out").value == 9
