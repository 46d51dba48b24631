"""pkspy replay: a trace recorded against one SoftHSM2 token, made again against others.

pkcs11-tool signs with (and lists) a key on token A behind OpenSC's
pkcs11-spy; the trace is replayed against token B holding the same key pair
(the same results, call by call) and against token C without it (the first
divergence is the C_FindObjects that comes back empty). Plans, refusals and
skips are checked on the PyKCS11 fixture trace, without any module.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, SPY_DIR, secret_forms
from test_e2e_softhsm import SOFTHSM, SPY, TOOL

from pkspy.model import Pkcs11Call
from pkspy.pipeline import open_events
from pkspy.replay.plan import LOADER

OPENSSL = shutil.which("openssl")
# CI installs them all: there a missing one is a failure, not a skip
needs_softhsm = pytest.mark.skipif(
    os.environ.get("CI") is None and not (SPY and SOFTHSM and TOOL and OPENSSL),
    reason="needs softhsm2, opensc-pkcs11 (pkcs11-spy.so), opensc (pkcs11-tool) and openssl")

SO_PIN, USER_PIN = "SoReplay-9051", "UsrReplay-3318"
PYKCS11_TRACE = SPY_DIR / "softhsm2-pykcs11.log"


def run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """pkspy with no terminal on stdin (no prompt can wait for an answer)."""
    return subprocess.run([sys.executable, "-m", "pkspy", *args], capture_output=True,
                          text=True, timeout=120, cwd=ROOT, stdin=subprocess.DEVNULL,
                          env=env if env is not None else dict(os.environ))


def _token(root: Path, name: str, keys: Path | None) -> dict:
    """A SoftHSM2 token store with one initialised token, and the key pair if given."""
    (root / name / "tokens").mkdir(parents=True)
    conf = root / name / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {root / name / 'tokens'}\n"
                    "objectstore.backend = file\n")
    env = dict(os.environ, SOFTHSM2_CONF=str(conf))

    def tool(*args: str) -> None:
        r = subprocess.run([TOOL, "--module", SOFTHSM, *args], env=env, capture_output=True,
                           timeout=60, stdin=subprocess.DEVNULL)
        assert r.returncode == 0, r.stderr.decode()

    tool("--init-token", "--slot-index", "0", "--label", f"replay-{name}", "--so-pin", SO_PIN)
    tool("--token-label", f"replay-{name}", "--login", "--login-type", "so", "--so-pin", SO_PIN,
         "--init-pin", "--new-pin", USER_PIN)
    if keys is not None:
        for kind, path in (("privkey", keys / "key.der"), ("pubkey", keys / "pub.der")):
            tool("--token-label", f"replay-{name}", "--login", "--pin", USER_PIN,
                 "--write-object", str(path), "--type", kind, "--id", "07", "--label", "replay")
    return env


@pytest.fixture(scope="module")
def tokens(tmp_path_factory):
    """Tokens A and B with the same RSA key pair, C without it, and a trace made on A:
    0 a PKCS#1 v1.5 signature, 1 a PyKCS11 listing, 2 and 3 an RSA-PSS signature and its
    verification (pkcs11-tool)."""
    assert SPY and SOFTHSM and TOOL and OPENSSL, "softhsm2/opensc/openssl not installed"
    root = tmp_path_factory.mktemp("replay")
    key = root / "key.pem"
    for argv in ([OPENSSL, "genrsa", "-out", key, "2048"],
                 [OPENSSL, "rsa", "-in", key, "-outform", "DER", "-out", root / "key.der"],
                 [OPENSSL, "rsa", "-in", key, "-pubout", "-outform", "DER",
                  "-out", root / "pub.der"]):
        subprocess.run(argv, check=True, capture_output=True, timeout=60)
    envs = {n: _token(root, n, root if n != "C" else None) for n in "ABC"}
    data = root / "data.bin"
    data.write_bytes(b"data the user signed on token A\n")
    trace = root / "user.log"
    spy_env = dict(envs["A"], PKCS11SPY=SOFTHSM, PKCS11SPY_OUTPUT=str(trace))
    sign = [TOOL, "--module", SPY, "--login", "--pin", USER_PIN, "--sign", "-m",
            "SHA256-RSA-PKCS", "--id", "07", "-i", str(data), "-o", str(root / "sig.bin")]
    pss = [TOOL, "--module", SPY, "--login", "--pin", USER_PIN, "-m", "SHA256-RSA-PKCS-PSS",
           "--id", "07", "-i", str(data)]
    for argv in (sign, [sys.executable, "-c", LISTER, SPY, USER_PIN],
                 [*pss, "--sign", "-o", str(root / "pss.sig")],
                 [*pss, "--verify", "--signature-file", str(root / "pss.sig")]):
        r = subprocess.run(argv, env=spy_env, capture_output=True, timeout=60,
                           stdin=subprocess.DEVNULL)
        assert r.returncode == 0, r.stderr.decode()
    return root, envs, trace


# The user's second program: PyKCS11 lists every object in one C_FindObjects (up to 10) and
# reads their attributes; tokens list objects in an order of their own.
LISTER = """
import sys, PyKCS11
lib = PyKCS11.PyKCS11Lib(); lib.load(sys.argv[1])
s = lib.openSession(lib.getSlotList(tokenPresent=True)[0]); s.login(sys.argv[2])
for o in s.findObjects():
    s.getAttributeValue(o, [PyKCS11.CKA_CLASS, PyKCS11.CKA_LABEL, PyKCS11.CKA_ID])
    s.getAttributeValue(o, [PyKCS11.CKA_MODULUS, PyKCS11.CKA_PUBLIC_EXPONENT])
s.logout(); s.closeSession()
"""


def replay(root: Path, env: dict, trace: Path, name: str, *more: str):
    out = root / f"{name}.log"
    r = run("replay", str(trace), "--module", SOFTHSM, "--pin-env", "REPLAY_PIN", "-o", str(out),
            *more, env=dict(env, REPLAY_PIN=USER_PIN))
    return r, out


def _calls(path: Path, process: int | None = None) -> list[Pkcs11Call]:
    return [e for e in open_events(str(path))[1] if isinstance(e, Pkcs11Call)
            and e.function not in LOADER and (process is None or e.process == process)]


def _rows(stdout: str) -> list[tuple[str, str]]:
    """(mark, function) of each table row."""
    return re.findall(r"^([=≠>\-·]) #\d+ (C_\w+)", stdout, re.M)


@needs_softhsm
def test_same_keys_give_the_same_results_call_by_call(tokens):
    root, envs, raw = tokens
    # what the maintainer holds: the user's trace as `pkspy redact` shares it
    trace = root / "shared.log"
    red = run("redact", str(raw), "-o", str(trace))
    assert red.returncode == 0, red.stderr
    assert not [f for f in secret_forms(USER_PIN) if f in trace.read_text()]
    r, out = replay(root, envs["B"], trace, "same")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "No divergence" in r.stdout
    recorded = _calls(trace, 0)
    replayed = _calls(out)
    # the replay made the user's calls, in the user's order, with the user's results
    assert [(c.function, c.rv) for c in replayed] == [(c.function, c.rv) for c in recorded]
    rows = _rows(r.stdout)
    assert [f for m, f in rows if m == "="] == [c.function for c in recorded]
    assert ("=", "C_Sign") in rows and ("=", "C_FindObjects") in rows
    # same key: the PKCS#1 v1.5 signature is byte for byte the user's
    sig = [c.arg("pSignature", "out").value for c in (recorded[-3], replayed[-3])
           if c.function == "C_Sign"]
    assert len(sig) == 2 and sig[0] == sig[1] and len(sig[0]) == 256
    text = r.stdout + r.stderr + out.read_text()
    assert not [f for f in secret_forms(USER_PIN) if f in text]
    # the replay's trace is a trace like any other for pkspy's other commands
    s = subprocess.run([sys.executable, "-m", "pkspy", "summary", "--json", str(out)],
                       capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert s.returncode == 0, s.stderr
    assert '"processes": 1' in s.stdout and '"unparsed_lines": 0' in s.stdout
    assert f"pkspy diff {trace} {out}" in r.stdout


@needs_softhsm
def test_slot_and_until(tokens):
    root, envs, trace = tokens
    r, out = replay(root, envs["B"], trace, "slot", "--slot", "12345", "--until", "5")
    assert r.returncode == 1, r.stdout + r.stderr
    recorded = [c for c in _calls(trace, 0) if c.seq is not None and c.seq <= 5]
    assert _rows(r.stdout)[-1] == (">", "C_GetSlotInfo")
    assert re.search(r"^First divergence: #\d+ C_GetSlotInfo .*: CKR_OK was recorded, the "
                     r"replay got CKR_SLOT_ID_INVALID", r.stdout, re.M), r.stdout
    # nothing after --until was made; the replay still finalized the module
    live = _calls(out)
    assert [c.function for c in live[:-1]] == [c.function for c in recorded]
    assert live[-1].function == "C_Finalize" and "C_Finalize" not in [c.function for c in recorded]
    slot = [c.arg("slotID").value for c in live if c.function == "C_GetSlotInfo"]
    assert slot == [12345]


@needs_softhsm
def test_attribute_reads_are_compared_call_by_call(tokens):
    root, envs, trace = tokens
    r, out = replay(root, envs["B"], trace, "listing", "--process", "1")
    assert r.returncode == 0, r.stdout + r.stderr
    rows = _rows(r.stdout)
    reads = [m for m, f in rows if f == "C_GetAttributeValue"]
    assert len(reads) == 8 and set(reads) == {"="}  # 2 objects x 2 templates x (size, read)
    assert ("=", "C_FindObjects") in rows
    # each recorded object was matched to the live one the trace describes (class, label,
    # id): one extra read per found object, which the replay trace shows
    live = _calls(out)
    recorded = _calls(trace, 1)
    assert len(live) == len(recorded) + 2
    assert [c.function for c in live if c.function != "C_GetAttributeValue"] == \
        [c.function for c in recorded if c.function != "C_GetAttributeValue"]
    modulus = [[a.value for a in c.arg("pTemplate", "out").value if a.name == "CKA_MODULUS"]
               for c in (recorded[-4], live[-4])]
    assert modulus[0] == modulus[1] and len(modulus[0][0]) == 256


@needs_softhsm
def test_a_token_without_the_key_diverges_at_the_empty_lookup(tokens):
    root, envs, trace = tokens
    r, out = replay(root, envs["C"], trace, "missing")
    assert r.returncode == 1, r.stdout + r.stderr
    rows = _rows(r.stdout)
    first = [i for i, (m, _f) in enumerate(rows) if m == ">"]
    assert len(first) == 1 and rows[first[0]][1] == "C_FindObjects"
    assert all(m in "=-" for m, _f in rows[:first[0]])  # everything before it matched
    m = re.search(r"^First divergence: #(\d+) C_FindObjects .*: the lookup found 0 objects "
                  r"\(1 object recorded\), template \{CKA_CLASS=CKO_PRIVATE_KEY, CKA_ID=07\}: "
                  r"no object on this token matches it\.$", r.stdout, re.M)
    assert m, r.stdout
    # the key it would have found is missing, so the signature is not attempted, and says why
    assert re.search(r"#\d+ C_SignInit: object 0x\w+ has no live counterpart: the lookup "
                     rf"#{m.group(1)} found 0 objects", r.stdout)
    empty = [c for c in _calls(out) if c.function == "C_FindObjects"]
    assert empty and empty[0].arg("ulObjectCount", "out").value == 0


def test_dry_run_prints_the_plan_and_touches_no_module(tmp_path):
    out = tmp_path / "never.log"
    r = run("replay", str(PYKCS11_TRACE), "--module", str(tmp_path / "no-such.so"),
            "--process", "1", "--dry-run", "-o", str(out))
    assert r.returncode == 0, r.stderr
    assert not out.exists()
    lines = r.stdout.splitlines()
    assert lines[0].startswith("Replay plan for process 1 of ")
    plan = {m.group(2): (m.group(1), m.group(3))
            for m in map(re.compile(r"^  (\w+)\s+#(\d+) \S+.*?(?:  — (.*))?$").match, lines) if m}
    assert plan["8"] == ("run", None)  # the right user login
    assert plan["7"][0] == "skip" and "recorded login failed (CKR_PIN_INCORRECT)" in plan["7"][1]
    assert plan["15"] == ("REFUSE", "creates a token object: refused without --allow-changes")
    assert plan["18"][0] == "skip" and "CKA_VALUE in pTemplate (key material)" in plan["18"][1]
    assert plan["60"][0] == "REFUSE"  # C_SetAttributeValue changes an object
    assert plan["0"][0] == "skip"  # C_GetFunctionList: the loader's
    assert "PIN needed for: CKU_USER" in r.stdout
    assert not [f for f in secret_forms("UsrPin-5417") if f in r.stdout]


def test_dry_run_until_stops_at_the_sequence_number():
    r = run("replay", str(PYKCS11_TRACE), "--module", "x.so", "--process", "1", "--until", "12",
            "--dry-run")
    assert r.returncode == 0, r.stderr
    seqs = [int(s) for s in re.findall(r"^  \w+\s+#(\d+) ", r.stdout, re.M)]
    assert seqs == list(range(0, 13))


def test_changes_need_a_terminal_confirmation(tmp_path):
    out = tmp_path / "never.log"
    r = run("replay", str(PYKCS11_TRACE), "--module", str(tmp_path / "no-such.so"),
            "--process", "1", "--allow-changes", "-o", str(out))
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        "pkspy: calls that change the token need a confirmation on a terminal; nothing was "
        "replayed"]
    assert not out.exists()


@pytest.mark.parametrize(("args", "message"), [
    (["fixtures/pcscd/pcscd-apdu.log"], "no PKCS#11 call in the trace"),
    ([str(PYKCS11_TRACE), "--process", "9"], "no process 9 in the trace; processes with calls:"),
    (["no-such-trace.log"], "no-such-trace.log"),
])
def test_bad_input_is_one_line_and_exit_2(args, message):
    r = run("replay", *args, "--module", "x.so", "--dry-run")
    assert r.returncode == 2
    assert len(r.stderr.strip().splitlines()) == 1 and message in r.stderr
    assert "Traceback" not in r.stderr


def on_terminal(argv: list[str], env: dict, answers: list[tuple[str, str]]) -> tuple[int, str]:
    """Run argv with a pseudo-terminal as its controlling terminal; answer each prompt
    (text to wait for, line to type); everything the terminal showed, and the exit code."""
    import fcntl
    import pty
    import select
    import termios

    parent, child = pty.openpty()

    def own_terminal() -> None:
        os.setsid()
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    p = subprocess.Popen(argv, stdin=child, stdout=child, stderr=child, env=env, cwd=ROOT,
                         preexec_fn=own_terminal)
    os.close(child)
    seen, pending = b"", list(answers)
    while True:
        ready, _, _ = select.select([parent], [], [], 60)
        if not ready:
            p.kill()
            raise AssertionError(f"no output for 60 s; so far: {seen.decode(errors='replace')}")
        try:
            chunk = os.read(parent, 4096)
        except OSError:  # the other side closed
            break
        if not chunk:
            break
        seen += chunk
        if pending and pending[0][0].encode() in seen.split(b"\n")[-1]:
            os.write(parent, pending.pop(0)[1].encode() + b"\n")
    os.close(parent)
    return p.wait(60), seen.decode(errors="replace")


@needs_softhsm
def test_the_pin_is_asked_on_the_terminal_without_echo(tokens):
    root, envs, trace = tokens
    out = root / "prompted.log"
    rc, shown = on_terminal(
        [sys.executable, "-m", "pkspy", "replay", str(trace), "--module", SOFTHSM,
         "-o", str(out)], envs["B"], [("User PIN for the replay: ", USER_PIN)])
    assert rc == 0, shown
    assert "No divergence" in shown
    assert not [f for f in secret_forms(USER_PIN) if f in shown + out.read_text()]
    assert [c.rv for c in _calls(out) if c.function == "C_Login"] == [0]


@needs_softhsm
def test_changes_run_only_after_a_yes_on_the_terminal(tokens, tmp_path):
    """The PyKCS11 fixture's key generations (token objects) made on a fresh token once
    confirmed: its lookups then find the generated keys, until the first one for an object
    made from redacted key material, which is never guessed."""
    env = _token(tmp_path, "D", None)
    argv = [sys.executable, "-m", "pkspy", "replay", str(PYKCS11_TRACE), "--process", "1",
            "--module", SOFTHSM, "--pin-env", "REPLAY_PIN", "-o", str(tmp_path / "d.log"),
            "--allow-changes", "--all"]
    env = dict(env, REPLAY_PIN=USER_PIN)
    rc, shown = on_terminal(argv, env, [("Go on? [y/N] ", "n")])
    assert rc == 2 and "nothing was replayed" in shown
    assert not (tmp_path / "d.log").exists()
    rc, shown = on_terminal(argv, env, [("Go on? [y/N] ", "y")])
    assert "#15 C_GenerateKeyPair: creates a token object" in shown  # what was asked
    rows = _rows(shown)
    made = [m for m, f in rows if f in ("C_GenerateKeyPair", "C_GenerateKey")]
    assert made == ["=", "=", "="]
    assert re.search(r"^First divergence: #34 C_FindObjects .*the lookup found 0 objects \(1 "
                     r"object recorded\), template \{CKA_CLASS=CKO_SECRET_KEY, "
                     r"CKA_LABEL='pkspy-known-aes'\}", shown, re.M), shown
    assert rc == 1


@needs_softhsm
def test_the_pykcs11_fixture_on_a_fresh_token(tokens):
    """Without changes allowed, nothing is generated: the first lookup that found the
    user's new keys diverges, operations on them are skipped with their reason, and what
    needs no key (a digest) gives the user's bytes."""
    root, envs, _trace = tokens
    r, out = replay(root, envs["C"], PYKCS11_TRACE, "fixture", "--process", "1", "--all")
    assert r.returncode == 1, r.stdout + r.stderr
    assert re.search(r"^First divergence: #22 C_FindObjects .*found 0 objects \(2 objects "
                     r"recorded\), template \{CKA_CLASS=CKO_PRIVATE_KEY\}", r.stdout, re.M)
    for seq, reason in ((7, "the recorded login failed (CKR_PIN_INCORRECT): pkspy does not "
                            "replay a wrong PIN"),
                        (15, "creates a token object: refused without --allow-changes"),
                        (18, "needs CKA_VALUE in pTemplate (key material), redacted"),
                        (66, "its #65 C_SignInit was not replayed"),
                        (81, "needs pData (plaintext), redacted in the trace"),
                        (100, "destroys an object: refused without --allow-changes")):
        assert re.search(rf"^  #{seq} C_\w+: {re.escape(reason)}", r.stdout, re.M), seq
    rows = dict((int(s), m) for m, s in re.findall(r"^([=≠>\-·]) #(\d+) ", r.stdout, re.M))
    assert rows[73] == rows[74] == "="  # the digest, compared byte for byte
    assert rows[99] == "="  # C_GenerateRandom: 16 bytes asked, 16 bytes given (by length)
    digests = [c.arg("pDigest", "out").value for c in _calls(PYKCS11_TRACE, 1) + _calls(out)
               if c.function == "C_Digest" and isinstance(c.arg("pDigest", "out").value, bytes)]
    assert len(digests) == 2 and digests[0] == digests[1]
    assert not [f for f in secret_forms(USER_PIN) if f in r.stdout + out.read_text()]


# A program that opens its session with a Notify callback (ctypes, straight at the spy's
# exported functions): the callback is the application's and cannot be replayed.
NOTIFY_PROGRAM = """
import ctypes, sys
lib = ctypes.CDLL(sys.argv[1])
notify = ctypes.CFUNCTYPE(ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_void_p)(
    lambda session, event, app: 0)
assert lib.C_Initialize(None) == 0
slots, count = (ctypes.c_ulong * 8)(), ctypes.c_ulong(8)
assert lib.C_GetSlotList(ctypes.c_ubyte(1), slots, ctypes.byref(count)) == 0
h = ctypes.c_ulong()
assert lib.C_OpenSession(ctypes.c_ulong(slots[0]), ctypes.c_ulong(4), None, notify,
                         ctypes.byref(h)) == 0
assert lib.C_CloseSession(h) == 0
assert lib.C_Finalize(None) == 0
"""


@needs_softhsm
def test_a_session_with_a_notify_callback_is_not_replayed(tokens):
    root, envs, _trace = tokens
    trace = root / "user-notify.log"
    r = subprocess.run([sys.executable, "-c", NOTIFY_PROGRAM, SPY], capture_output=True,
                       timeout=60, stdin=subprocess.DEVNULL,
                       env=dict(envs["A"], PKCS11SPY=SOFTHSM, PKCS11SPY_OUTPUT=str(trace)))
    assert r.returncode == 0, r.stderr.decode()
    r, _out = replay(root, envs["B"], trace, "notify", "--all")
    assert r.returncode == 0, r.stdout + r.stderr
    assert re.search(r"^  #\d+ C_OpenSession: the application passed a Notify callback, which "
                     r"pkspy cannot give$", r.stdout, re.M), r.stdout
    assert re.search(r"^  #\d+ C_CloseSession: session 0x\w+ was not opened in the replay$",
                     r.stdout, re.M)
    assert [f for m, f in _rows(r.stdout) if m == "="] == [
        "C_Initialize", "C_GetSlotList", "C_Finalize"]


@needs_softhsm
def test_rsa_pss_parameters_are_rebuilt_from_the_trace(tokens):
    root, envs, trace = tokens
    for process in ("2", "3"):
        r, out = replay(root, envs["B"], trace, f"pss{process}", "--process", process)
        assert r.returncode == 0, r.stdout + r.stderr
        rows = _rows(r.stdout)
        assert ("=", "C_SignInit" if process == "2" else "C_VerifyInit") in rows
        assert ("=", "C_Sign" if process == "2" else "C_Verify") in rows
        init = [c for c in _calls(out) if c.function in ("C_SignInit", "C_VerifyInit")]
        recorded = [c for c in _calls(trace, int(process)) if c.function == init[0].function]
        params = [[(p.name, p.value) for p in c.arg("pMechanism").value.params]
                  for c in (init[0], recorded[0])]
        assert params[0] == params[1] == [
            ("pMechanism->pParameter->hashAlg", "CKM_SHA256"),
            ("pMechanism->pParameter->mgf", "CKG_MGF1_SHA256"),
            ("pMechanism->pParameter->sLen", 32)]


# A module in front of SoftHSM2 whose C_FindObjects aborts the process: the fault follows
# the module, and the replay says at which call.
CRASHING_MODULE = r"""
#include <dlfcn.h>
#include <stdlib.h>
#include <p11-kit/pkcs11.h>
static CK_FUNCTION_LIST list;
static CK_RV find_aborts(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE_PTR o, CK_ULONG n,
                         CK_ULONG_PTR c) { abort(); }
CK_RV C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR out) {
    void *real = dlopen(getenv("CRASHING_MODULE_REAL"), RTLD_NOW);
    CK_C_GetFunctionList get = real ? (CK_C_GetFunctionList)dlsym(real, "C_GetFunctionList") : 0;
    CK_FUNCTION_LIST_PTR f;
    CK_RV rv = get ? get(&f) : CKR_GENERAL_ERROR;
    if (rv != CKR_OK) return rv;
    list = *f;
    list.C_FindObjects = find_aborts;
    *out = &list;
    return CKR_OK;
}
"""


@needs_softhsm
@pytest.mark.skipif(not shutil.which("gcc") or not Path("/usr/include/p11-kit-1").is_dir(),
                    reason="needs gcc and p11-kit's pkcs11.h (libp11-kit-dev)")
def test_a_module_that_crashes_is_named_at_the_call(tokens, tmp_path):
    _root, envs, trace = tokens
    src, module = tmp_path / "crash.c", tmp_path / "crashing-module.so"
    src.write_text(CRASHING_MODULE)
    subprocess.run(["gcc", "-shared", "-fPIC", "-I/usr/include/p11-kit-1", "-o", str(module),
                    str(src), "-ldl"], check=True, capture_output=True, timeout=120)
    out = tmp_path / "crash.log"
    r = run("replay", str(trace), "--module", str(module), "--pin-env", "REPLAY_PIN",
            "-o", str(out), env=dict(envs["B"], REPLAY_PIN=USER_PIN, CRASHING_MODULE_REAL=SOFTHSM))
    assert r.returncode == 1, r.stdout + r.stderr
    rows = _rows(r.stdout)
    assert rows[-1] == (">", "C_FindObjects") and all(m in "=-" for m, _f in rows[:-1])
    assert re.search(r"^First divergence: #\d+ C_FindObjects .*: CKR_OK was recorded; the replay "
                     r"program was killed by SIGABRT during this call\.$", r.stdout, re.M)
    # the replay trace ends before it: the spy's lines of a call that never returns stay
    # in its stdio buffer (it flushes on each result), lost with the process
    last = _calls(out)[-1]
    assert last.function == "C_FindObjectsInit" and last.rv == 0


@needs_softhsm
def test_the_so_login_takes_the_so_pin(tokens):
    """The PyKCS11 fixture's setup process: info, slot and mechanism queries, then an SO
    login with the SO PIN from --so-pin-env (C_InitToken and C_InitPIN need PINs the trace
    redacted, and are listed)."""
    root, envs, _trace = tokens
    out = root / "setup.log"
    r = run("replay", str(PYKCS11_TRACE), "--process", "0", "--module", SOFTHSM,
            "--so-pin-env", "REPLAY_SO_PIN", "-o", str(out),
            env=dict(envs["B"], REPLAY_SO_PIN=SO_PIN))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "No divergence" in r.stdout
    login = [c for c in _calls(out) if c.function == "C_Login"]
    assert [(c.arg("userType").value, c.rv) for c in login] == [("CKU_SO", 0)]
    assert ("=", "C_GetMechanismList") in _rows(r.stdout)
    assert re.search(r"^  #\d+ C_InitToken: needs the SO PIN, redacted in the trace$",
                     r.stdout, re.M)
    assert not [f for f in secret_forms(SO_PIN) if f in r.stdout + r.stderr + out.read_text()]


@pytest.mark.parametrize("version", ["0.24.0", "0.26.0", "0.27.1"])
def test_a_null_mechanism_parameter_of_newer_spies_is_no_parameter(version):
    """From 0.24 on the spy prints `pMechanism->pParameter = NULL`: the ECDSA signature of
    process 3 is replayed, not skipped as a parameter it cannot rebuild."""
    trace = SPY_DIR / f"pkcs11-spy-{version}-softhsm2.log"
    r = run("replay", str(trace), "--process", "3", "--module", "x.so", "--dry-run")
    assert r.returncode == 0, r.stderr
    assert re.search(r"^  run    #\d+ C_SignInit session=0x1 mech=CKM_ECDSA key=0x\w+$",
                     r.stdout, re.M), r.stdout
    assert re.search(r"^  run    #\d+ C_Sign session=0x1 pData\[12\]$", r.stdout, re.M)


OAEP_PROGRAM = """
import sys, PyKCS11
lib = PyKCS11.PyKCS11Lib(); lib.load(sys.argv[1])
s = lib.openSession(lib.getSlotList(tokenPresent=True)[0]); s.login(sys.argv[2])
key = s.findObjects([(PyKCS11.CKA_CLASS, PyKCS11.CKO_PRIVATE_KEY), (PyKCS11.CKA_ID, b"\\x07")])[0]
m = PyKCS11.RSAOAEPMechanism(PyKCS11.CKM_SHA_1, PyKCS11.CKG_MGF1_SHA1)
assert bytes(s.decrypt(key, open(sys.argv[3], "rb").read(), m)) == open(sys.argv[4], "rb").read()
s.logout(); s.closeSession()
"""


@needs_softhsm
def test_rsa_oaep_parameters_are_passed_as_recorded(tokens):
    """OAEP decryptions by pkcs11-tool 0.23 (source 0) and PyKCS11 (source
    CKZ_DATA_SPECIFIED), both with SHA-1, and by pkcs11-tool with SHA-256, which SoftHSM2
    2.6 refuses: each replay passes the recorded parameters as they were and gets the
    recorded result; the plaintext stays redacted on both sides."""
    root, envs, _trace = tokens
    data, cipher = root / "oaep.txt", root / "oaep.bin"
    data.write_bytes(b"OAEP plaintext 5521\n")
    subprocess.run([OPENSSL, "pkeyutl", "-encrypt", "-inkey", str(root / "key.pem"), "-in",
                    str(data), "-out", str(cipher), "-pkeyopt", "rsa_padding_mode:oaep"],
                   check=True, capture_output=True, timeout=60)
    trace = root / "user-oaep.log"
    spy_env = dict(envs["A"], PKCS11SPY=SOFTHSM, PKCS11SPY_OUTPUT=str(trace))
    tool = [TOOL, "--module", SPY, "--login", "--pin", USER_PIN, "--decrypt", "-m",
            "RSA-PKCS-OAEP", "--id", "07", "-i", str(cipher)]
    for argv, ok in (([*tool, "--hash-algorithm", "SHA-1", "--mgf", "MGF1-SHA1"], True),
                     ([sys.executable, "-c", OAEP_PROGRAM, SPY, USER_PIN, str(cipher),
                       str(data)], True),
                     ([*tool, "--hash-algorithm", "SHA256", "--mgf", "MGF1-SHA256"], False)):
        p = subprocess.run(argv, env=spy_env, capture_output=True, timeout=60,
                           stdin=subprocess.DEVNULL)
        assert (p.returncode == 0) == ok, p.stderr.decode()
    for process, source, rv in (("0", 0, "CKR_OK"), ("1", 1, "CKR_OK"),
                                ("2", 0, "CKR_ARGUMENTS_BAD")):
        r, out = replay(root, envs["B"], trace, f"oaep{process}", "--process", process)
        assert r.returncode == 0, r.stdout + r.stderr
        assert re.search(rf"^= #\d+ C_DecryptInit .* {rv} +\| {rv}$", r.stdout, re.M), r.stdout
        inits = [c for c in _calls(trace, int(process)) + _calls(out)
                 if c.function == "C_DecryptInit"]
        params = [[(p.name, p.value) for p in c.arg("pMechanism").value.params] for c in inits]
        assert len(params) == 2 and params[0] == params[1]
        assert ("pMechanism->pParameter->source", source) in params[0]
        if rv == "CKR_OK":
            assert "C_Decrypt" in [f for m, f in _rows(r.stdout) if m == "="]
        assert not [f for f in secret_forms("OAEP plaintext 5521") if f in
                    r.stdout + out.read_text()]


@needs_softhsm
def test_another_object_at_the_same_place_is_named(tokens):
    """OpenSC 0.27.1's trace: pkcs11-tool -O listed the user's EC keys one at a time; on
    token B the same lookup finds the RSA keys, and the first attribute read that tells
    objects apart says the object is not the user's."""
    root, envs, _trace = tokens
    trace = SPY_DIR / "pkcs11-spy-0.27.1-softhsm2.log"
    r, _out = replay(root, envs["B"], trace, "other-object", "--process", "4")
    assert r.returncode == 1, r.stdout + r.stderr
    assert re.search(r"^First divergence: #1[01] C_GetAttributeValue .*: CKA_(CLASS|KEY_TYPE): "
                     r"another value: not the object the user's lookup found at this place "
                     r"\(tokens list objects in their own order\)\.$", r.stdout, re.M), r.stdout
    assert all(m in "=-" for m, _f in _rows(r.stdout)[:-1])
