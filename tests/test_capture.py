"""`pkspy run` with the real programs: pkcs11-tool (and a PyKCS11 script, p11tool)
against a throw-away SoftHSM2 token behind pkcs11-spy; opensc-tool against the
live virtual card with OPENSC_DEBUG and libpcscspy; crashes and signals.

After every capture, every file under the test's directories (the traces
written, the softhsm token, pkspy's temporary directory, which must be gone)
and everything pkspy printed are searched for the PINs used, in ASCII and in
hex (upper and lower case, spaced or not).
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ROOT, pkspy, secret_forms

from pkspy.capture import locate

sys.path.insert(0, str(ROOT / "fixtures" / "card"))
from virtual_card import PACKAGES, VirtualCard, VirtualCardUnavailable

CI = bool(os.environ.get("CI"))
SOFTHSM = next((p for p in (*(f"{d}/softhsm/libsofthsm2.so" for d in locate.lib_dirs()),
                            *(f"{d}/libsofthsm2.so" for d in locate.lib_dirs()))
                if os.path.isfile(p)), None)
SO_PIN, USER_PIN, WRONG_PIN = "SoCap-7129", "UsrCap-4410", "WrongCap-93"
CARD_PIN, CARD_WRONG = "582163", "903447"


def need(ok: object, what: str) -> None:
    """A missing tool fails under CI (which installs everything) and skips elsewhere."""
    if ok:
        return
    if CI:
        pytest.fail(f"{what} is missing (scripts/test.sh installs it)")
    pytest.skip(f"{what} is not installed (scripts/test.sh installs it)")


def run(args: list[str], tmp: Path, env: dict | None = None, timeout: float = 60,
        **kw) -> subprocess.CompletedProcess:
    """``pkspy run ARGS`` with its temporary directory under ``tmp/pkspy-tmp``."""
    scratch = tmp / "pkspy-tmp"
    scratch.mkdir(exist_ok=True)
    env = dict(os.environ if env is None else env, TMPDIR=str(scratch), NO_COLOR="1")
    return subprocess.run([sys.executable, "-m", "pkspy", "run", *args], env=env, cwd=ROOT,
                          capture_output=True, timeout=timeout, **kw)


def no_secret_anywhere(dirs: list[Path], texts: list[bytes | str], pins: list[str]) -> None:
    forms = [f for pin in pins for f in secret_forms(pin)]
    for d in dirs:
        for path in d.rglob("*"):
            if path.is_symlink() or not path.is_file():
                continue
            data = path.read_bytes().decode("latin-1")
            found = [f for f in forms if f in data]
            assert not found, f"{path} holds {found}"
    for text in texts:
        text = text.decode("latin-1") if isinstance(text, bytes) else text
        found = [f for f in forms if f in text]
        assert not found, f"output holds {found}"


def nothing_left(tmp: Path) -> None:
    left = list((tmp / "pkspy-tmp").iterdir())
    assert not left, f"pkspy left {left}"


def summary(trace: Path) -> dict:
    r = pkspy("summary", "--json", str(trace))
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


# -- SoftHSM2 behind pkcs11-spy -----------------------------------------------------------


@pytest.fixture
def token(tmp_path):
    need(SOFTHSM and shutil.which("softhsm2-util"), "softhsm2")
    need(shutil.which("pkcs11-tool"), "opensc (pkcs11-tool)")
    try:
        locate.find_spy()
    except locate.NotFound as e:
        need(False, str(e))
    (tmp_path / "tokens").mkdir()
    conf = tmp_path / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {tmp_path / 'tokens'}\nobjectstore.backend = file\n")
    env = dict(os.environ, SOFTHSM2_CONF=str(conf))
    subprocess.run(["softhsm2-util", "--init-token", "--free", "--label", "cap", "--so-pin",
                    SO_PIN, "--pin", USER_PIN], env=env, check=True, capture_output=True)
    return env


def test_pkcs11_tool_wrong_then_right_pin(token, tmp_path):
    wrong = [shutil.which("pkcs11-tool"), "--module", SOFTHSM, "--token-label", "cap", "--login",
             "--pin", WRONG_PIN, "-O"]
    direct = subprocess.run(wrong, env=token, capture_output=True, timeout=60)
    assert direct.returncode != 0
    t1, t2 = tmp_path / "wrong.log", tmp_path / "right.log"
    r1 = run(["-o", str(t1), "--", *wrong], tmp_path, token)
    assert r1.returncode == direct.returncode, r1.stderr.decode()
    # the module given to pkspy, none on pkcs11-tool's command line: pkspy adds --module
    r2 = run(["--module", SOFTHSM, "-o", str(t2), "--", "pkcs11-tool", "--token-label", "cap",
              "--login", "--pin", USER_PIN, "-O"], tmp_path, token)
    assert r2.returncode == 0, r2.stderr.decode()
    for trace in (t1, t2):
        assert stat.S_IMODE(trace.stat().st_mode) == 0o600
    s1, s2 = summary(t1), summary(t2)
    assert s1["format"] == "pkcs11-spy"
    assert [(x["user_type"], x["result"]) for x in s1["logins"]] == [("CKU_USER",
                                                                      "CKR_PIN_INCORRECT")]
    assert [(f["function"], f["name"]) for f in s1["failed_calls"]] == [("C_Login",
                                                                        "CKR_PIN_INCORRECT")]
    assert [(x["user_type"], x["result"]) for x in s2["logins"]] == [("CKU_USER", "CKR_OK")]
    assert s2["failed_calls"] == [] and s2["calls_by_function"]["C_FindObjects"] >= 1
    for s in (s1, s2):
        assert s["incomplete_records"] == 0 and s["unparsed_lines"] == 0
    tail = r1.stderr.decode()
    assert "C_Login" in tail and "CKR_PIN_INCORRECT" in tail and "‹PIN redacted, 11 bytes›" in tail
    assert "added --module" in r2.stderr.decode()
    no_secret_anywhere([tmp_path], [r1.stdout, r1.stderr, r2.stdout, r2.stderr],
                       [WRONG_PIN, USER_PIN, SO_PIN])
    nothing_left(tmp_path)


def test_quiet_and_the_trace_matches_the_raw_trace(token, tmp_path, tmp_path_factory):
    """The written trace is the spy's own text with the PIN masked in place: the same
    lines, each as long as before, differing only by '*' (checked against a raw trace
    of the same program written by the spy to a file, kept apart and removed)."""
    from pkspy.capture.streams import redacted_copy
    from pkspy.sources import decode

    args = ["pkcs11-tool", "--module", SOFTHSM, "--token-label", "cap", "--login", "--pin",
            USER_PIN, "--keygen", "--key-type", "AES:16", "--label", "k1"]
    out = tmp_path / "trace.log"
    r = run(["--quiet", "-o", str(out), "--", *args], tmp_path, token)
    assert r.returncode == 0, r.stderr.decode()
    assert b"C_Login" not in r.stderr  # no tail
    written = out.read_text().splitlines()
    raw_dir = tmp_path_factory.mktemp("raw-apart")
    raw = raw_dir / "raw.log"
    spy = locate.find_spy()
    env = dict(token, PKCS11SPY=SOFTHSM, PKCS11SPY_OUTPUT=str(raw))
    args[2] = spy
    subprocess.run(args, env=env, check=True, capture_output=True, timeout=60)
    try:
        lines = [decode(x) for x in raw.read_bytes().splitlines(keepends=True)]
        copy = raw_dir / "copy.log"
        with copy.open("w") as f:
            redacted_copy(lines, "pkcs11-spy", f)
        masked = copy.read_text().splitlines()
        assert len(masked) == len(lines) and len(written) == len(lines)
        changed = 0
        for a, b in zip(lines, masked, strict=True):
            assert len(a) == len(b), (a, b)
            assert all(x == y or y == "*" for x, y in zip(a, b, strict=True)), (a, b)
            changed += a != b
        assert changed >= 1  # the PIN's dump row
        # what pkspy run wrote has the same shape (pointers and times differ)
        assert [len(x) for x in written] == [len(x) for x in masked]
    finally:
        shutil.rmtree(raw_dir)
    no_secret_anywhere([tmp_path], [r.stdout, r.stderr], [USER_PIN, SO_PIN])
    nothing_left(tmp_path)


def _on_a_terminal(args: list[str], env: dict, tmp_path: Path, answer: bytes,
                   prompt: bytes, module: bool = True) -> tuple[int, bytes]:
    """Run ``pkspy ARGS`` (``python ARGS`` with ``module=False``) as the session leader
    of a new terminal, type ``answer`` at ``prompt``; its exit status and everything
    the terminal showed."""
    import fcntl
    import termios

    scratch = tmp_path / "pkspy-tmp"
    scratch.mkdir(exist_ok=True)
    master, slave = os.openpty()

    def controlling_terminal() -> None:
        os.setsid()
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    p = subprocess.Popen([sys.executable, *(["-m", "pkspy"] if module else []), *args],
                         env=dict(env, TMPDIR=str(scratch), NO_COLOR="1"), cwd=ROOT,
                         stdin=slave, stdout=slave, stderr=slave,
                         preexec_fn=controlling_terminal)
    os.close(slave)
    seen = b""

    def read(timeout: float) -> bool:
        nonlocal seen
        if not select.select([master], [], [], timeout)[0]:
            return False
        try:
            chunk = os.read(master, 4096)
        except OSError:  # the terminal closed: everything was read
            return False
        seen += chunk
        return bool(chunk)

    try:
        deadline = time.monotonic() + 60
        while prompt not in seen and time.monotonic() < deadline:
            read(0.1)
        assert prompt in seen, seen.decode(errors="replace")
        # A program may turn echo off (flushing input) just after its prompt: answer
        # again if it does not go on.
        for _ in range(3):
            time.sleep(0.2)
            os.write(master, answer)
            try:
                status = p.wait(5)
                break
            except subprocess.TimeoutExpired:
                continue
        else:
            status = p.wait(60)
        while read(0.3):
            pass
    finally:
        os.close(master)
        if p.poll() is None:
            p.kill()
            p.wait()
    return status, seen


def test_pin_typed_at_the_prompt(token, tmp_path):
    """pkcs11-tool --login -O asks for the PIN on the terminal: it must still reach it
    through pkspy, and be in no output and no file."""
    out = tmp_path / "prompt.log"
    status, seen = _on_a_terminal(
        ["run", "--module", SOFTHSM, "-o", str(out), "--", "pkcs11-tool", "--token-label", "cap",
         "--login", "-O"], token, tmp_path, USER_PIN.encode() + b"\n", b"PIN")
    assert status == 0, seen.decode(errors="replace")
    s = summary(out)
    assert [(x["user_type"], x["result"]) for x in s["logins"]] == [("CKU_USER", "CKR_OK")]
    no_secret_anywhere([tmp_path], [seen], [USER_PIN, SO_PIN])
    nothing_left(tmp_path)


PYKCS11_SCRIPT = """
import os, sys, PyKCS11
lib = PyKCS11.PyKCS11Lib()
lib.load(sys.argv[1])
slot = next(s for s in lib.getSlotList(tokenPresent=True)
            if lib.getTokenInfo(s).label.strip() == "cap")
session = lib.openSession(slot)
session.login(os.environ["CAP_PIN"])
print(len(session.findObjects()))
session.logout()
session.closeSession()
"""


def test_pykcs11_script_given_the_module_as_an_argument(token, tmp_path):
    script = tmp_path / "drive.py"
    script.write_text(PYKCS11_SCRIPT)
    out = tmp_path / "py.log"
    env = dict(token, CAP_PIN=USER_PIN)
    r = run(["--module", SOFTHSM, "-o", str(out), "--", sys.executable, str(script), SOFTHSM],
            tmp_path, env)
    assert r.returncode == 0, r.stderr.decode()
    assert "in its arguments" in r.stderr.decode()
    s = summary(out)
    assert [(x["user_type"], x["result"]) for x in s["logins"]] == [("CKU_USER", "CKR_OK")]
    assert s["calls_by_function"].get("C_Logout") == 1
    no_secret_anywhere([tmp_path], [r.stdout, r.stderr], [USER_PIN, SO_PIN])
    nothing_left(tmp_path)


def test_p11tool_provider(token, tmp_path):
    # gnutls-bin is not among the packages scripts/test.sh installs: a skip, even on CI
    if not shutil.which("p11tool"):
        pytest.skip("p11tool not installed (package gnutls-bin)")
    out = tmp_path / "p11tool.log"
    env = dict(token, GNUTLS_PIN=USER_PIN)
    args = ["p11tool", "--provider", SOFTHSM, "--login", "--list-all", "pkcs11:token=cap"]
    direct = subprocess.run(args, env=env, capture_output=True, timeout=60)
    r = run(["-o", str(out), "--", *args], tmp_path, env)
    assert r.returncode == direct.returncode, r.stderr.decode()  # 2 on an empty token
    s = summary(out)
    assert ("CKU_USER", "CKR_OK") in [(x["user_type"], x["result"]) for x in s["logins"]]
    no_secret_anywhere([tmp_path], [r.stdout, r.stderr], [USER_PIN, SO_PIN])
    nothing_left(tmp_path)


def test_ssh_keygen_lists_the_token_keys_through_the_spy(token, tmp_path):
    # openssh-client is not among the packages scripts/test.sh installs: a skip, even on CI
    if not shutil.which("ssh-keygen"):
        pytest.skip("ssh-keygen not installed (package openssh-client)")
    _keypair(token)
    out = tmp_path / "ssh.log"
    r = run(["-o", str(out), "--", "ssh-keygen", "-D", SOFTHSM], tmp_path, token)
    assert r.returncode == 0, r.stderr.decode()
    assert r.stdout.startswith(b"ecdsa-sha2-nistp256 ")  # the token's public key
    s = summary(out)
    assert s["calls_by_function"]["C_FindObjects"] >= 1 and s["logins"] == []
    nothing_left(tmp_path)


# -- the live virtual card: OPENSC_DEBUG and libpcscspy --------------------------------------


@pytest.fixture(scope="module")
def card():
    need(shutil.which("opensc-tool"), "opensc (opensc-tool)")
    try:
        with VirtualCard(pin=CARD_PIN) as c:
            yield c
    except VirtualCardUnavailable as e:
        need(False, f"the virtual card ({e}; install: {PACKAGES})")


CARD_ARGS = ["opensc-tool", "-r", "Virtual PCD 00 00", "-s", "00 A4 00 0C 02 3F 00",
             "-s", f"00 20 00 81 06 {CARD_WRONG.encode().hex(' ')}",
             "-s", f"00 20 00 81 06 {CARD_PIN.encode().hex(' ')}"]


def _card_run(card, tmp_path, options: list[str], names: list[str]) -> tuple[dict, bytes]:
    since = len(card.exchanges())
    base = tmp_path / "card.log"
    r = run([*options, "-o", str(base), "--", *CARD_ARGS], tmp_path, card.env())
    assert r.returncode == 0, r.stderr.decode()[-2000:]
    journal = card.exchanges(since)
    assert [x["sw"] for x in journal[-3:]] == ["9000", "63C2", "9000"]
    sws: dict[str, int] = {}
    for x in journal:
        sws[x["sw"]] = sws.get(x["sw"], 0) + 1
    out = {}
    for name in names:
        trace = base if len(names) == 1 else tmp_path / f"card.{name}.log"
        assert stat.S_IMODE(trace.stat().st_mode) == 0o600
        s = summary(trace)
        assert s["format"] == name
        assert s["apdus"] == len(journal) and s["status_words"] == sws
        out[name] = s
    tail = r.stderr.decode()
    assert tail.count("VERIFY 00 20 00 81 Lc=6 ‹PIN redacted, 6 bytes›") == 2 * len(names)
    # opensc-tool itself echoes the APDUs it was told to send ("Sending: ..."): that is
    # the program's own stdout, the PIN came from its command line. Nothing else has it.
    stdout = b"\n".join(x for x in r.stdout.splitlines() if not x.startswith(b"Sending: "))
    no_secret_anywhere([tmp_path], [stdout, r.stderr], [CARD_PIN, CARD_WRONG])
    nothing_left(tmp_path)
    return out, r.stderr


def test_opensc_debug_9_of_a_live_card(card, tmp_path):
    _card_run(card, tmp_path, ["--opensc-debug", "9"], ["opensc-debug"])


def test_pcsc_spy_of_a_live_card(card, tmp_path):
    if not _has_pcsc_spy():
        need(False, "libpcscspy.so.0 (package libpcsclite-dev)")
    s, _ = _card_run(card, tmp_path, ["--pcsc"], ["pcsc-spy-raw"])
    assert s["pcsc-spy-raw"]["pcsc_calls_by_function"]["SCardConnect"] >= 1


def test_both_card_tracers_at_once(card, tmp_path):
    if not _has_pcsc_spy():
        need(False, "libpcscspy.so.0 (package libpcsclite-dev)")
    _, tail = _card_run(card, tmp_path, ["--opensc-debug", "9", "--pcsc"],
                        ["opensc-debug", "pcsc-spy-raw"])
    assert b"[opensc] " in tail and b"[pcsc] " in tail


def _has_pcsc_spy() -> bool:
    try:
        locate.find_pcsc_spy()
    except locate.NotFound:
        return False
    return True


def test_card_list_and_send(card, tmp_path, tmp_path_factory):
    env = card.env()
    r = pkspy_env(["card", "list"], env)
    assert r.returncode == 0, r.stderr
    listing = r.stdout.decode()
    assert f"0: {card.reader}" in listing and card.atr in listing.replace(" ", "")
    assert "T=1" in listing
    script = tmp_path_factory.mktemp("script-apart") / "apdus.txt"  # the test's own PINs
    script.write_text(f"# wrong, then right\n00 20 00 81 06 {CARD_WRONG.encode().hex()}\n"
                      f"00200081 06{CARD_PIN.encode().hex(':')}  # right\n")
    record = tmp_path / "card.txt"
    since = len(card.exchanges())
    r = pkspy_env(["card", "send", "-r", card.reader, "-o", str(record), "00A4000C023F00",
                   "--script", str(script)], env)
    assert r.returncode == 0, r.stderr
    shown = r.stdout.decode().splitlines()
    assert [x["sw"] for x in card.exchanges(since)] == ["9000", "63C2", "9000"]
    assert shown[0].startswith("SELECT 00 A4 00 0C Lc=2 3F 00 -> 9000")
    assert all("VERIFY 00 20 00 81 Lc=6 ‹PIN redacted, 6 bytes›" in x for x in shown[1:])
    assert stat.S_IMODE(record.stat().st_mode) == 0o600
    lines = record.read_text().splitlines()
    assert lines[0].startswith(f"# reader {card.reader}, ATR ")
    assert lines[3:5] == ["> 00 20 00 81 06 ** ** ** ** ** **", "< 63 C2"]
    from pkspy import formats
    if "hex-apdu" in formats.PARSERS:
        s = summary(record)
        assert s["apdus"] == 3 and s["status_words"] == {"9000": 2, "63C2": 1}
    no_secret_anywhere([tmp_path], [r.stdout, r.stderr], [CARD_PIN, CARD_WRONG])


def test_recorder_on_a_pyscard_connection(card, tmp_path, monkeypatch):
    monkeypatch.setenv("PCSCLITE_CSOCK_NAME", card.env()["PCSCLITE_CSOCK_NAME"])
    from smartcard.System import readers

    from pkspy.capture.pcsc import Recorder

    reader = next(r for r in readers() if str(r) == card.reader)
    connection = reader.createConnection()
    seen = []
    with Recorder(connection, str(tmp_path / "rec.txt"), on_exchange=seen.append) as rec:
        connection.connect()
        connection.transmit([0x00, 0x20, 0x00, 0x81, 0x06, *CARD_PIN.encode()])
        connection.transmit([0x00, 0xA4, 0x00, 0x0C, 0x02, 0x3F, 0x00])
    connection.transmit([0x00, 0xA4, 0x00, 0x0C, 0x02, 0x3F, 0x00])  # not recorded
    connection.disconnect()
    with contextlib.suppress(Exception):
        connection.release()  # its PC/SC context, while this pcscd still runs
    del connection, reader
    assert seen == rec.exchanges and [e.sw for e in seen] == [0x9000, 0x9000]
    assert str(seen[0].command_data) == "‹PIN redacted, 6 bytes›" and seen[1].secret is None
    assert (tmp_path / "rec.txt").read_text().splitlines() == [
        "> 00 20 00 81 06 ** ** ** ** ** **", "< 90 00", "> 00 A4 00 0C 02 3F 00", "< 90 00"]
    no_secret_anywhere([tmp_path], [], [CARD_PIN])


# -- exit codes, crashes, signals ---------------------------------------------------------------


def _alive(marker: str) -> list[str]:
    """Running ``sleep`` processes whose argument is ``marker``."""
    out = []
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if cmdline.split()[:2] == ["sleep", marker]:
            out.append(cmdline)
    return out


def test_exit_code_passes_through(tmp_path):
    trace = tmp_path / "empty.log"
    r = run(["--opensc-debug", "3", "-o", str(trace), "--", "sh", "-c", "exit 7"], tmp_path)
    assert r.returncode == 7
    assert b"no trace came" in r.stderr and not trace.exists()
    nothing_left(tmp_path)


@pytest.mark.parametrize("how, signo", [("kill -SEGV $$", signal.SIGSEGV),
                                        ("kill -KILL $$", signal.SIGKILL)])
def test_a_crash_leaves_no_process_and_no_file(tmp_path, how, signo):
    marker = f"313.{signo}7"
    r = run(["--opensc-debug", "3", "--", "sh", "-c", f"sleep {marker} & {how}"], tmp_path)
    assert r.returncode == -signo, r.stderr.decode()
    assert b"left running" in r.stderr and b"killed by" in r.stderr
    assert _alive(marker) == []
    nothing_left(tmp_path)


def test_pkspy_terminated_passes_the_signal_on(tmp_path):
    scratch = tmp_path / "pkspy-tmp"
    scratch.mkdir()
    env = dict(os.environ, TMPDIR=str(scratch))
    p = subprocess.Popen([sys.executable, "-m", "pkspy", "run", "--opensc-debug", "3", "--",
                          "sleep", "31.7"], env=env, cwd=ROOT, stderr=subprocess.PIPE)
    _wait_for(lambda: _alive("31.7"))
    p.send_signal(signal.SIGTERM)
    assert p.wait(20) == -signal.SIGTERM
    p.stderr.close()
    assert _alive("31.7") == []
    nothing_left(tmp_path)


def _wait_for(cond, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


COUNT_SIGINT = """
import signal, sys, time
n = 0
def h(*_):
    global n
    n += 1
signal.signal(signal.SIGINT, h)
print("ready", flush=True)
deadline = time.time() + 20
while n == 0 and time.time() < deadline:
    time.sleep(0.01)
time.sleep(0.5)  # a second SIGINT would arrive here
sys.exit(40 + n)
"""


def test_sigint_sent_to_pkspy_is_forwarded_once(tmp_path):
    scratch = tmp_path / "pkspy-tmp"
    scratch.mkdir()
    p = subprocess.Popen([sys.executable, "-m", "pkspy", "run", "--quiet", "--opensc-debug", "3",
                          "--", sys.executable, "-c", COUNT_SIGINT],
                         env=dict(os.environ, TMPDIR=str(scratch)), cwd=ROOT,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert p.stdout.readline() == b"ready\n"
    p.send_signal(signal.SIGINT)
    assert p.wait(20) == 41  # the program's handler ran once, and its exit code came back
    p.stdout.close()
    p.stderr.close()
    nothing_left(tmp_path)


def test_ctrl_c_on_the_terminal_reaches_the_program_once(tmp_path):
    """Ctrl-C on a terminal goes to the whole foreground process group: the program
    gets it from the terminal, and pkspy must not send it a second one."""
    status, _ = _on_a_terminal(["run", "--quiet", "--opensc-debug", "3", "--", sys.executable,
                                "-c", COUNT_SIGINT], dict(os.environ), tmp_path,
                               b"\x03", b"ready")  # the terminal's interrupt character
    assert status == 41
    nothing_left(tmp_path)


# pkspy run as on a system without sigtimedwait (macOS): signal handlers, and the
# terminal's foreground process group to tell a Ctrl-C from a kill.
WITHOUT_SIGTIMEDWAIT = """
import sys
from pkspy.capture import run
run.HAVE_SIGTIMEDWAIT = False
outcome = run.run(run.RunOptions(command=sys.argv[1:], opensc_debug=3, quiet=True))
sys.exit(run.exit_like(outcome.status))
"""


def test_without_sigtimedwait_sigint_is_forwarded_once(tmp_path):
    scratch = tmp_path / "pkspy-tmp"
    scratch.mkdir()
    p = subprocess.Popen([sys.executable, "-c", WITHOUT_SIGTIMEDWAIT, sys.executable, "-c",
                          COUNT_SIGINT], env=dict(os.environ, TMPDIR=str(scratch)), cwd=ROOT,
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    assert p.stdout.readline() == b"ready\n"
    p.send_signal(signal.SIGINT)
    assert p.wait(20) == 41
    p.stdout.close()
    p.stderr.close()
    nothing_left(tmp_path)


def test_without_sigtimedwait_ctrl_c_reaches_the_program_once(tmp_path):
    status, _ = _on_a_terminal(["-c", WITHOUT_SIGTIMEDWAIT, sys.executable, "-c",
                                COUNT_SIGINT], dict(os.environ), tmp_path, b"\x03", b"ready",
                               module=False)
    assert status == 41
    nothing_left(tmp_path)


# -- what pkspy says when it cannot -------------------------------------------------------------


def test_it_says_plainly_when_it_cannot(tmp_path):
    r = run(["--", "sh", "-c", "true"], tmp_path)
    assert r.returncode == 2 and b"nothing to capture" in r.stderr
    r = run(["--module", "/nonexistent/module.so", "--", "pkcs11-tool", "-L"], tmp_path)
    assert r.returncode == 2 and b"/nonexistent/module.so: no such module" in r.stderr
    r = run(["--module", "/x.so", "--", "ssh-add", "-s", "/x.so"], tmp_path)
    assert r.returncode == 2 and b"ssh-agent" in r.stderr
    r = run(["--opensc-debug", "3", "--", "/nonexistent/program"], tmp_path)
    assert r.returncode == 2 and b"command not found" in r.stderr
    nothing_left(tmp_path)


def test_env_prints_exports_and_the_warning():
    r = pkspy("env", "--module", "/usr/lib/real.so", "--output", "/tmp/x.fifo")
    try:
        locate.find_spy()
    except locate.NotFound:
        assert r.returncode == 2
        return
    assert r.returncode == 0, r.stderr
    assert b"export PKCS11SPY=/usr/lib/real.so" in r.stdout
    assert b"export PKCS11SPY_OUTPUT=/tmp/x.fifo" in r.stdout
    assert b"in clear" in r.stderr and b"mkfifo -m 600 /tmp/x.fifo" in r.stderr
    fish = pkspy("env", "--module", "/usr/lib/real.so", "--shell", "fish")
    assert b"set -gx PKCS11SPY /usr/lib/real.so;" in fish.stdout


# -- pkspy probe -------------------------------------------------------------------------------


def _keypair(token) -> None:
    subprocess.run(["pkcs11-tool", "--module", SOFTHSM, "--token-label", "cap", "--login",
                    "--pin", USER_PIN, "--keypairgen", "--key-type", "EC:prime256v1",
                    "--label", "probe-key", "--id", "0a0b"], env=token, check=True,
                   capture_output=True, timeout=60)


def _check_probe(report: Path, tmp_path: Path, texts: list) -> None:
    text = report.read_text()
    assert stat.S_IMODE(report.stat().st_mode) == 0o600
    assert "### Token cap" in text and "#### Mechanisms (" in text and "CKM_ECDSA" in text
    public = text.split("#### Objects without login", 1)[1].split("####", 1)[0]
    private = text.split("#### Objects seen only after login", 1)[1].split("##", 1)[0]
    assert "| CKO_PUBLIC_KEY | probe-key | 0a0b | CKK_EC" in public
    assert "CKO_PRIVATE_KEY" not in public
    assert "| CKO_PRIVATE_KEY | probe-key | 0a0b | CKK_EC" in private
    trace = tmp_path / "probe.pkcs11-spy.log"
    assert f"`{trace.name}`" in text and "## Trace" in text
    s = summary(trace)
    assert ("CKU_USER", "CKR_OK") in [(x["user_type"], x["result"]) for x in s["logins"]]
    assert not {"C_CreateObject", "C_DestroyObject", "C_SetAttributeValue", "C_InitToken",
                "C_GenerateKeyPair"} & set(s["calls_by_function"])  # read-only
    no_secret_anywhere([tmp_path], texts, [USER_PIN, SO_PIN])
    nothing_left(tmp_path)


def test_probe_with_the_pin_from_the_environment(token, tmp_path):
    _keypair(token)
    report = tmp_path / "probe.md"
    scratch = tmp_path / "pkspy-tmp"
    scratch.mkdir()
    r = pkspy_env(["probe", "--module", SOFTHSM, "--login", "--pin-env", "CAP_PIN", "-o",
                   str(report)], dict(token, CAP_PIN=USER_PIN, TMPDIR=str(scratch)))
    assert r.returncode == 0, r.stderr.decode()
    _check_probe(report, tmp_path, [r.stdout, r.stderr])


def test_probe_asks_for_the_pin_without_echo(token, tmp_path):
    _keypair(token)
    report = tmp_path / "probe.md"
    status, seen = _on_a_terminal(["probe", "--module", SOFTHSM, "--login", "-o", str(report)],
                                  token, tmp_path, USER_PIN.encode() + b"\n", b"User PIN")
    assert status == 0, seen.decode(errors="replace")
    _check_probe(report, tmp_path, [seen])


def pkspy_env(args: list[str], env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pkspy", *args], env=env, cwd=ROOT,
                          capture_output=True, timeout=120)
