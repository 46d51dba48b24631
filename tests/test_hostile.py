"""A file from a stranger must not make pkspy hang, eat memory or write where it should
not. Each case runs the real command in a subprocess with its address space capped
(RLIMIT_AS) and a timeout: a hang is a timeout, a runaway allocation a MemoryError
(which would be a traceback and exit 70), so no timing is asserted.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ROOT, SPY_DIR

from pkspy import errors, formats
from pkspy.sources import CUT_MARK, MAX_LINE

MEMORY = 768 << 20  # address space: summary peaks at ~60 MB (VmPeak); a 1 GB line must not fit
TIMEOUT = 120
SPY = (SPY_DIR / "pkcs11-spy-0.24.0-softhsm2.log").read_bytes()
SPY_CALLS = SPY.count(b"\nReturned:")


# A large spy log is mapped whole (fastscan.py) to be read on every core: the map takes
# address space, not memory, so a 1 GB file gets room for its map and no more.
MAPPED = MEMORY + (1 << 30)


def _limit(memory: int = MEMORY) -> None:
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))


def run(*args: str, stdin=None, input: bytes | None = None, timeout: float = TIMEOUT,
        memory: int = MEMORY) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pkspy", *args], stdin=stdin, input=input,
                          capture_output=True, timeout=timeout, cwd=ROOT,
                          preexec_fn=lambda: _limit(memory))


def one_line_error(r: subprocess.CompletedProcess, code: int, words: str) -> None:
    err = r.stderr.decode()
    assert r.returncode == code, err
    assert err.count("\n") == 1 and err.startswith("pkspy: ") and words in err, err
    assert "Traceback" not in err


def _feed(proc: subprocess.Popen, parts) -> None:
    with proc.stdin:
        for part in parts:
            proc.stdin.write(part)


def test_a_1_gb_line_is_cut_not_held(tmp_path):
    """A spy trace with a 1 GB line in the middle, through a pipe: read in bounded
    memory, the line cut at 1 MiB and shown, every call around it still read."""
    at = SPY.index(b"\n7: C_Login\n") + 1
    gigabyte = (b"00 " * (1 << 18) for _ in range(1365))  # 1365 x 768 KiB = 1 GiB, no newline

    def parts():
        yield SPY[:at]
        yield b"    00000000  "
        yield from gigabyte
        yield b"\n" + SPY[at:]

    out, err = tmp_path / "out", tmp_path / "err"
    with open(out, "wb") as o, open(err, "wb") as e:
        proc = subprocess.Popen([sys.executable, "-m", "pkspy", "summary", "--json", "-"],
                                stdin=subprocess.PIPE, stdout=o, stderr=e, cwd=ROOT,
                                preexec_fn=_limit)
        _feed(proc, parts())
        proc.wait(timeout=300)
    assert proc.returncode == 0, err.read_text()[-500:]
    out = out.read_bytes()
    s = json.loads(out)
    assert s["calls"] == SPY_CALLS
    assert s["unparsed_lines"] >= 1  # the cut line, shown for what it is


def test_a_sparse_1_gb_line_in_a_file(tmp_path):
    """A 1 GB run of NUL bytes (a sparse file) between two records: every command reads
    past it in bounded memory; the redacted copy holds the line cut and marked."""
    at = SPY.index(b"\n7: C_Login\n") + 1
    trace = tmp_path / "hole.log"
    with open(trace, "wb") as f:
        f.write(SPY[:at])
        f.seek(1 << 30, os.SEEK_CUR)
        f.write(b"\n" + SPY[at:])
    r = run("summary", "--json", str(trace), memory=MAPPED)
    assert r.returncode == 0, r.stderr.decode()
    s = json.loads(r.stdout)
    assert s["calls"] == SPY_CALLS and s["unparsed_lines"] == 1
    r = run("tail", "--no-follow", "--errors", str(trace))
    assert r.returncode == 0 and b"not parsed" in r.stdout and len(r.stdout) < MAX_LINE
    copy = tmp_path / "copy.log"
    r = run("redact", "-o", str(copy), str(trace))
    assert r.returncode == 0, r.stderr
    lines = copy.read_bytes().split(b"\n")
    assert lines[SPY[:at].count(b"\n")].endswith(CUT_MARK.encode())
    assert copy.stat().st_size < len(SPY) + MAX_LINE + 100


# A length claim of 2^63 (or just under) on the header of a dump, for each format
# whose grammar has one; the dump that follows is short.
HUGE = 1 << 63
CLAIMS = {
    "pkcs11-spy": b"""*************** OpenSC PKCS#11 spy *****************
Loaded: "/usr/lib/softhsm/libsofthsm2.so"
0: C_Login
P:2636; T:0x140636708403264 2026-11-27 14:16:11.878
[in] hSession = 0x1
[in] userType = CKU_USER
[in] pPin[ulPinLen] 00007ffc96b21a2f / %d
    00000000  31 32 33 34                                      1234
Returned:  0 CKR_OK

1: C_GetAttributeValue
P:2636; T:0x140636708403264 2026-11-27 14:16:11.879
[in] hSession = 0x1
[in] hObject = 0x2
[in] pTemplate[1]: %s
    CKA_LABEL             00007ffc96b21a2f / %d
[out] pTemplate[1]: %s
    CKA_LABEL             00007ffc96b21a2f / %d
    00000000  61 62                                            ab
Returned:  0 CKR_OK
""" % (HUGE, b"", HUGE, b"", HUGE - 1),  # the spy ends "pTemplate[1]: " with a blank
    "opensc-debug": (b"P:1224; T:0x140478855133248 15:10:12.158 [opensc-tool] apdu.c:378:"
                     b"sc_single_transmit: CLA:0, INS:20, P1:0, P2:81, data(%d) 0x1\n"
                     b"P:1224; T:0x140478855133248 15:10:12.158 [opensc-tool] reader-pcsc.c:"
                     b"242:pcsc_internal_transmit: reader 'Virtual PCD 00 00'\n"
                     b"P:1224; T:0x140478855133248 15:10:12.158 [opensc-tool] sc.c:100:"
                     b"sc_foo: \nOutgoing APDU (%d bytes):\n00 20 00 81 04 31 32 33 34 .....\n"
                     % (HUGE, HUGE)),
    "pcsc-spy": (b"SCardTransmit\n i hCard: 0x6CB499CE\n i pioSendPci.dwProtocol: 0x00000002\n"
                 b" i pioSendPci.cbPciLength: 0x%X\n i bSendLength 0x%X (%d)\n"
                 b" i bSendBuffer\n i  0000 00 A4 00 0C 02 3F 00                            "
                 b".....?.\n o bRecvLength 0x%X (%d)\n o bRecvBuffer\n"
                 b" o  0000 90 00                                           ..\n"
                 b" => Command successful. (SCARD_S_SUCCESS [0x00000000])  [0.044739]\n"
                 % (HUGE - 1, HUGE - 1, HUGE - 1, HUGE, HUGE)),
    "pcsc-spy-raw": (b"00000001@>|0|0|SCardTransmit\n00000001@0x00000001\n"
                     b"00000001@0x%X\n00000001@00 20 00 81 04 31 32 33 34 \n"
                     b"00000001@0x%X\n" % (HUGE - 1, HUGE - 1)),
}


@pytest.mark.parametrize("fmt", sorted(CLAIMS))
def test_a_length_claim_of_2_63_bytes_is_never_allocated(tmp_path, fmt):
    trace = tmp_path / "claim.log"
    trace.write_bytes(CLAIMS[fmt])
    for cmd in (["summary", "--json"], ["tail", "--no-follow"], ["export", "-f", "md"]):
        r = run(*cmd, "--format", fmt, str(trace))
        assert r.returncode == 0, (cmd, r.stderr.decode())
        assert b"Traceback" not in r.stderr


def test_deeply_nested_call_tree(tmp_path):
    """200 000 OpenSC functions each called inside the last and never returning, then
    all returning: no recursion, no quadratic walk."""
    depth = 200_000
    head = b"P:1; T:0x1 15:10:12.158 [opensc-tool] card.c:%d:f%d: called\n"
    tail = (b"P:1; T:0x1 15:10:12.159 [opensc-tool] card.c:%d:f%d: "
            b"returning with: -1200 (Card command failed)\n")
    trace = tmp_path / "deep.log"
    with open(trace, "wb") as f:
        for i in range(depth):
            f.write(head % (i, i))
        for i in reversed(range(depth)):
            f.write(tail % (i, i))
    r = run("summary", "--json", str(trace))
    assert r.returncode == 0, r.stderr.decode()[-500:]
    assert json.loads(r.stdout)["format"] == "opensc-debug"
    r = run("tail", "--no-follow", "--errors", str(trace))
    assert r.returncode == 0, r.stderr.decode()[-500:]


def test_a_binary_file(tmp_path):
    blob = tmp_path / "blob.bin"
    blob.write_bytes(os.urandom(4 << 20))
    one_line_error(run("summary", str(blob)), errors.NOT_A_TRACE, "not a trace format")
    for fmt in formats.names():  # forced: every line unparsed, counted, no crash
        r = run("summary", "--json", "--format", fmt, str(blob))
        assert r.returncode == 0, (fmt, r.stderr.decode()[-500:])
        assert json.loads(r.stdout)["unparsed_lines"] > 0


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/null", "/dev/urandom"])
def test_devices_and_links_to_them_are_refused(tmp_path, device):
    link = tmp_path / "trace.log"
    link.symlink_to(device)
    for path in (device, str(link)):
        for cmd in (["summary"], ["tail"], ["tail", "--no-follow"], ["export"], ["redact"],
                    ["view"]):
            one_line_error(run(*cmd, path), errors.USAGE, "a character device")
    one_line_error(run("summary", str(link)), errors.USAGE, f"a link to {device}")


def _interrupt_when_reading(proc: subprocess.Popen) -> subprocess.CompletedProcess:
    time.sleep(3)  # imports done, blocked reading
    assert proc.poll() is None
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


@pytest.mark.parametrize("writer", ["holds it open", "never opens it"])
def test_a_fifo_that_never_closes_stops_on_ctrl_c(tmp_path, writer):
    fifo = tmp_path / "spy.fifo"
    os.mkfifo(fifo)
    proc = subprocess.Popen([sys.executable, "-m", "pkspy", "summary", str(fifo)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT,
                            preexec_fn=_limit)
    w = None
    try:
        if writer == "holds it open":
            w = open(fifo, "wb")  # noqa: SIM115 - held open on purpose
            w.write(SPY[:2000])
            w.flush()
        r = _interrupt_when_reading(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
        if w is not None:
            w.close()
    one_line_error(r, errors.INTERRUPTED, "interrupted")


def test_nothing_is_written_next_to_the_input(tmp_path):
    """Reading never writes: a hostile file leaves its directory as it was."""
    trace = tmp_path / "in.log"
    trace.write_bytes(SPY[:5000] + os.urandom(5000))
    before = sorted(Path(tmp_path).iterdir())
    for cmd in (["summary"], ["tail", "--no-follow"], ["export"], ["redact"]):
        run(*cmd, "--format", "pkcs11-spy", str(trace))
    assert sorted(Path(tmp_path).iterdir()) == before
