"""Errors a user can act on: one line on stderr, the exit code of pkspy/errors.py (the
README's "Exit codes" table), never a traceback unless --debug asks for it."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import pytest
from click.testing import CliRunner
from conftest import ROOT, SPY_DIR, pkspy

from pkspy import cli, errors, formats
from pkspy.report import summary as summary_report

TRACE = SPY_DIR / "pkcs11-spy-0.24.0-softhsm2.log"
READERS = (["summary"], ["summary", "--json"], ["tail"], ["tail", "--no-follow"], ["export"],
           ["redact"], ["view"])


def one_line(r: subprocess.CompletedProcess, code: int, *words: str) -> str:
    err = r.stderr.decode()
    assert r.returncode == code, (r.args, err)
    assert err.count("\n") == 1 and err.startswith("pkspy: "), err
    assert all(w in err for w in words), err
    assert "Traceback" not in err and r.stdout == b""
    return err


@pytest.mark.parametrize("cmd", READERS, ids=" ".join)
def test_missing_file_and_directory(tmp_path, cmd):
    if cmd != ["tail"]:  # following waits for a file to appear (test_follow.py)
        one_line(pkspy(*cmd, str(tmp_path / "missing.log")), errors.USAGE, "no such file")
    one_line(pkspy(*cmd, str(tmp_path)), errors.USAGE, "is a directory")


def test_permission_denied(tmp_path):
    locked = tmp_path / "locked.log"
    locked.write_bytes(TRACE.read_bytes())
    locked.chmod(0)
    # root reads anything: run without the capabilities that let it
    prefix = (["setpriv", "--bounding-set", "-dac_override,-dac_read_search"]
              if os.geteuid() == 0 else [])
    for cmd in (["summary"], ["tail", "--no-follow"], ["export"], ["redact"]):
        r = subprocess.run([*prefix, sys.executable, "-m", "pkspy", *cmd, str(locked)],
                           capture_output=True, timeout=60, cwd=ROOT)
        one_line(r, errors.USAGE, str(locked), "Permission denied")


def test_unsupported_format_lists_the_supported_ones(tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("Dear support,\nmy token does not work.\n")
    for cmd in (["summary"], ["tail", "--no-follow"], ["export"], ["redact"]):
        err = one_line(pkspy(*cmd, str(notes)), errors.NOT_A_TRACE, "not a trace format")
        assert all(name in err for name in formats.names()), err
    r = pkspy("summary", "--format", "bogus", str(TRACE))  # click's usage error
    assert r.returncode == errors.USAGE and b"pkcs11-spy" in r.stderr
    assert b"Traceback" not in r.stderr


def test_an_output_that_cannot_be_written(tmp_path):
    where = str(tmp_path / "no" / "such" / "dir" / "report.md")
    one_line(pkspy("export", "-o", where, str(TRACE)), errors.USAGE, "No such file")


@pytest.mark.parametrize("cmd", [["summary"], ["summary", "--json"], ["tail", "--no-follow"],
                                 ["tail", "--no-follow", "--json"], ["export"], ["redact"]],
                         ids=" ".join)
def test_broken_pipe_is_quiet(cmd):
    """Like `pkspy ... | head -1`, made certain: the reader is gone before the first write."""
    read, write = os.pipe()
    os.close(read)
    try:
        r = subprocess.run([sys.executable, "-m", "pkspy", *cmd, str(TRACE)], stdout=write,
                           stderr=subprocess.PIPE, timeout=60, cwd=ROOT)
    finally:
        os.close(write)
    assert r.returncode == errors.BROKEN_PIPE, r.stderr
    assert r.stderr == b""


def test_ctrl_c_while_following(tmp_path):
    log = tmp_path / "trace.log"
    log.write_bytes(TRACE.read_bytes())
    proc = subprocess.Popen([sys.executable, "-m", "pkspy", "tail", str(log)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
    try:
        assert b"C_" in proc.stdout.readline()  # following: the backlog is out
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == errors.INTERRUPTED
    assert err == b"pkspy: interrupted\n"


def test_an_unexpected_error_is_one_line_and_debug_shows_the_traceback(monkeypatch):
    def broken(*_a, **_k):
        raise RuntimeError("a bug\nover two lines")

    monkeypatch.setattr(summary_report, "summarize", broken)
    r = CliRunner().invoke(cli.main, ["summary", str(TRACE)])
    assert r.exit_code == errors.INTERNAL
    assert r.stderr == ("pkspy: internal error: RuntimeError: a bug over two lines "
                        "(run again with --debug for the traceback)\n")
    r = CliRunner().invoke(cli.main, ["--debug", "summary", str(TRACE)])
    assert r.exit_code == errors.INTERNAL
    assert "Traceback" in r.stderr and 'raise RuntimeError("a bug' in r.stderr


def test_the_readme_lists_every_exit_code():
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Exit codes", 1)[1].split("\n## ", 1)[0]
    listed = {int(n) for n in re.findall(r"^\| (\d+) +\|", section, re.MULTILINE)}
    assert listed == set(errors.EXIT_CODES)
