"""`pkspy tail FILE` follows a growing file, like tail -F."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time

from conftest import ROOT, SPY_DIR

TRACE = (SPY_DIR / "pkcs11-spy-0.24.0-softhsm2.log").read_bytes()


class Tail:
    """`pkspy tail` in the background, its stdout lines collected as they come."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "pkspy", "tail", *args],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for raw in self.proc.stdout:
            self.lines.put(raw.decode())

    def wait_for(self, needle: str, timeout: float = 20) -> list[str]:
        seen = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.1)
            except queue.Empty:
                continue
            seen.append(line)
            if needle in line:
                return seen
        raise AssertionError(f"{needle!r} not shown within {timeout}s; saw {seen[-5:]}")

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


def _cut(text: bytes, marker: bytes) -> int:
    return text.index(marker)


def test_tail_shows_records_appended_while_following(tmp_path):
    log = tmp_path / "trace.log"
    split = _cut(TRACE, b"\n7: C_Login\n") + 1
    # write up to the middle of the C_Login record: it must be held back
    login_end = TRACE.index(b"Returned:", split)
    log.write_bytes(TRACE[:login_end])
    tail = Tail(str(log))
    try:
        seen = tail.wait_for("#6 C_GetTokenInfo")
        assert not any("C_Login" in s for s in seen)
        with open(log, "ab") as f:
            f.write(TRACE[login_end:])
        seen = tail.wait_for("#7 C_Login")
        assert "CKR_PIN_INCORRECT" in seen[-1]
        tail.wait_for("p4/")  # the rest of the file, through the last process
    finally:
        tail.close()


def test_tail_follows_truncation_and_replacement(tmp_path):
    log = tmp_path / "trace.log"
    first = _cut(TRACE, b"\n\n\n*************** OpenSC PKCS#11 spy") + 1
    log.write_bytes(TRACE[:first])
    tail = Tail("-n", "0", str(log))
    try:
        time.sleep(1.0)
        # copytruncate: the file starts again from nothing
        with open(log, "r+b") as f:
            f.truncate(0)
        time.sleep(0.5)
        with open(log, "ab") as f:
            f.write(TRACE[:first])
        tail.wait_for("truncated; reading from the start")
        seen = tail.wait_for("#8 C_Finalize")
        assert sum(" C_" in s for s in seen) == 9  # the run once, from its first call
        # logrotate create: a new file under the same name
        os.rename(log, tmp_path / "trace.log.1")
        log.write_bytes(TRACE[:first])
        tail.wait_for("replaced; reading the new file")
        seen = tail.wait_for("#8 C_Finalize")
        assert sum(" C_" in s for s in seen) == 9
    finally:
        tail.close()


def test_tail_waits_for_a_file_that_does_not_exist_yet(tmp_path):
    log = tmp_path / "later.log"
    tail = Tail(str(log))
    try:
        time.sleep(0.5)
        log.write_bytes(TRACE[: _cut(TRACE, b"\n\n\n*************** OpenSC PKCS#11 spy") + 1])
        tail.wait_for("#8 C_Finalize")
    finally:
        tail.close()


def test_tail_of_a_fifo_prints_every_record_as_it_comes(tmp_path):
    fifo = tmp_path / "spy.fifo"
    os.mkfifo(fifo)
    tail = Tail(str(fifo))  # follows by default: a FIFO is read to its writer's end
    try:
        with open(fifo, "wb") as w:
            w.write(TRACE)
        seen = tail.wait_for("#52 C_Finalize")
        assert sum(" C_" in s for s in seen) == TRACE.count(b"\nReturned:")
        assert tail.proc.wait(timeout=10) == 0
    finally:
        if tail.proc.poll() is None:
            tail.close()


ONE_RUN = TRACE[: _cut(TRACE, b"\n\n\n*************** OpenSC PKCS#11 spy") + 1]


def _calls(lines: list[str]) -> list[str]:
    return [s.split()[2] + " " + s.split()[3] for s in lines if " C_" in s]


def test_tail_says_it_waits_for_a_missing_file_at_once(tmp_path):
    log = tmp_path / "later.log"
    tail = Tail(str(log))
    try:
        tail.wait_for(f"-- {log}: does not exist yet; waiting for it")
    finally:
        tail.close()


def test_tail_notices_deletion_and_reads_the_file_created_again(tmp_path):
    log = tmp_path / "trace.log"
    log.write_bytes(ONE_RUN)
    tail = Tail(str(log))
    try:
        tail.wait_for("#8 C_Finalize")  # following it
        log.unlink()
        tail.wait_for("deleted; waiting for it to be created again")
        log.write_bytes(ONE_RUN)
        tail.wait_for("replaced; reading the new file")
        seen = tail.wait_for("#8 C_Finalize")
        assert len(_calls(seen)) == 9 == ONE_RUN.count(b"\nReturned:")  # once, from the start
    finally:
        tail.close()


def test_a_slow_writer_half_a_line_at_a_time_loses_and_repeats_nothing(tmp_path):
    """The writer flushes 37 bytes at a time, cutting lines and records anywhere: tail
    shows each call once, as `tail --no-follow` of the whole file does."""
    log = tmp_path / "trace.log"
    log.write_bytes(b"")
    part = TRACE[: TRACE.index(b"\n7: C_Login\n") + 1]
    tail = Tail("-n", "100000", str(log))
    try:
        with open(log, "ab") as f:
            for at in range(0, len(part), 37):
                f.write(part[at:at + 37])
                f.flush()
                time.sleep(0.002)
        seen = tail.wait_for("#6 C_GetTokenInfo")
        time.sleep(1.0)
        while not tail.lines.empty():
            seen.append(tail.lines.get())
    finally:
        tail.close()
    whole = subprocess.run([sys.executable, "-m", "pkspy", "tail", "--no-follow", str(log)],
                           capture_output=True, cwd=ROOT, timeout=60).stdout.decode()
    assert _calls(seen) == _calls(whole.splitlines(keepends=True))
    assert len(_calls(seen)) == part.count(b"\nReturned:")


def test_a_record_its_writer_never_finishes_is_shown_on_ctrl_c(tmp_path):
    log = tmp_path / "trace.log"
    cut = TRACE.index(b"Returned:", TRACE.index(b"\n7: C_Login\n"))
    log.write_bytes(TRACE[:cut])  # the writer hangs inside C_Login
    tail = Tail(str(log))
    try:
        seen = tail.wait_for("#6 C_GetTokenInfo")
        time.sleep(0.5)
        assert not any("C_Login" in s for s in seen)
        tail.proc.send_signal(signal.SIGINT)
        seen = tail.wait_for("#7 C_Login")
        assert "[incomplete]" in seen[-1]
        assert tail.proc.wait(timeout=10) == 130
        assert tail.proc.stderr.read() == b"pkspy: interrupted\n"
    finally:
        if tail.proc.poll() is None:
            tail.close()
