"""OpenSC debug log shapes of other versions and platforms (log.c's format strings),
made by rewriting a real 0.23 log the way those versions print."""

from __future__ import annotations

import re

from conftest import ROOT

from pkspy.formats import detect, parse
from pkspy.model import ApduExchange, DebugLine
from pkspy.redact import Redactor

REAL = (ROOT / "fixtures" / "opensc-debug" / "opensc-tool-d3.log").read_bytes()
HEAD = re.compile(rb"(?m)^P:(\d+); T:0x(\d+) (\d\d:\d\d:\d\d\.\d{3}) \[([^\]]*)\] ([^:\n]+):")


def _events(data: bytes):
    lines, offset = [], 0
    for raw in data.splitlines(keepends=True):
        text = raw.rstrip(b"\n")
        text = text[:-1] if text.endswith(b"\r") else text
        lines.append((text.decode("utf-8", "backslashreplace"), offset))
        offset += len(raw)
    assert detect(t for t, _ in lines[:200]) == "opensc-debug"
    redact = Redactor()
    return [redact(e) for e in parse(lines, "opensc-debug")]


def _story(events):
    """What a log says, without the header's form: exchanges and failures."""
    out = []
    for e in events:
        if isinstance(e, ApduExchange):
            out.append(("apdu", e.command, e.response, e.sw))
        elif isinstance(e, DebugLine) and e.error is not None:
            out.append(("error", e.function, e.error, e.origin))
    return out


BASE = _story(_events(REAL))


def test_real_log_has_a_story():
    assert len([s for s in BASE if s[0] == "apdu"]) == 44
    assert any(s[0] == "error" and s[3] for s in BASE)


def test_before_0_20_unix_header():
    # <=0.19: "0x%lx %s [%s] %s:%d:%s: " with the thread id in real hex
    data = HEAD.sub(lambda m: b"0x%x %s [%s] %s:" % (int(m[2]), m[3], m[4], m[5]), REAL)
    events = _events(data)
    assert _story(events) == BASE
    assert all(e.pid is None and re.fullmatch(r"[0-9a-f]+", e.tid) for e in events
               if isinstance(e, DebugLine))


def test_windows_header_paths_and_crlf():
    # Windows: "P:%lu; T:%lu YYYY-MM-DD HH:MM:SS.mmm", __FILE__ with a drive, text mode
    data = HEAD.sub(lambda m: b"P:%s; T:%s 2026-11-27 %s [%s] C:\\opensc\\src\\libopensc\\%s:"
                    % (m[1], m[2], m[3], m[4], m[5]), REAL).replace(b"\n", b"\r\n")
    events = _events(data)
    assert _story(events) == BASE
    lines = [e for e in events if isinstance(e, DebugLine) and e.file]
    assert lines and all(e.file.startswith("C:\\opensc\\") and e.src_line for e in lines)
    assert all(e.time.startswith("2026-11-27 ") for e in lines)


def test_colours_of_a_terminal_capture():
    # 0.20+ colours the header when the target is a tty (script, tmux)
    data = HEAD.sub(lambda m: b"\x1b[32mP:%s; T:0x%s\x1b[0m %s \x1b[33m[%s]\x1b[0m %s:"
                    % (m[1], m[2], m[3], m[4], m[5]), REAL)
    assert _story(_events(data)) == BASE


def test_midnight_rollover_keeps_durations_positive():
    times = iter(range(10**6))

    def late(m):
        t = 86399.0 + next(times) * 0.0004  # starts at 23:59:59 and runs past midnight
        t %= 86400
        clock = b"%02d:%02d:%06.3f" % (t // 3600, t % 3600 // 60, t % 60)
        return b"P:%s; T:0x%s %s [%s] %s:" % (m[1], m[2], clock, m[4], m[5])

    events = _events(HEAD.sub(late, REAL))
    apdus = [e for e in events if isinstance(e, ApduExchange)]
    assert len(apdus) == 44 and all(a.duration is not None and a.duration >= 0 for a in apdus)


def test_pin_printed_by_c_initpin_is_redacted():
    # pkcs11-session.c: sc_log(context, "C_InitPIN() called, pin '%s'", pPin) - every version
    line = (b"P:1; T:0x2 10:00:00.000 [opensc-pkcs11] pkcs11-session.c:295:C_InitPIN: "
            b"C_InitPIN() called, pin '90817263'\n")
    events = _events(line + REAL)
    first = events[0]
    assert first.secret == "PIN" and first.secret_text is None
    assert "90817263" not in first.message and "‹PIN redacted, 8 bytes›" in first.message
    assert "90817263" not in first.raw[0]
