"""End to end: a fresh trace from SoftHSM2 behind OpenSC's pkcs11-spy, made now.

pkcs11-tool drives the spy in front of a throw-away SoftHSM2 token; the test
knows what it asked for and checks that `pkspy summary --json` says so, and
that no PIN it used reaches any output.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import pkspy, secret_forms

from pkspy.model import Pkcs11Call
from pkspy.pipeline import open_events

LIBDIRS = ["/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/lib",
           "/usr/local/lib"]


def _find(*names: str) -> str | None:
    for d in LIBDIRS:
        for n in names:
            p = Path(d) / n
            if p.exists():
                return str(p)
    return None


SPY = _find("pkcs11-spy.so", "pkcs11/pkcs11-spy.so")
SOFTHSM = _find("softhsm/libsofthsm2.so", "libsofthsm2.so", "pkcs11/libsofthsm2.so")
TOOL = shutil.which("pkcs11-tool")

pytestmark = pytest.mark.skipif(
    os.environ.get("CI") is None and not (SPY and SOFTHSM and TOOL),
    reason="needs softhsm2, opensc-pkcs11 and opensc (scripts/test.sh installs them)")

SO_PIN, USER_PIN, WRONG_PIN = "SoE2e-3141", "UsrE2e-2718", "Wrong-e2e-0"
# print_print writes labels in 32-byte chunks and glues the hex of the next
# chunk onto the characters of the one before: 40 bytes shows the glue, 32 the
# extra blank line.
LONG_LABEL = "a label that is forty bytes long, yes!!!"
EXACT_LABEL = "exactly thirty-two bytes label!!"


def test_fresh_trace_summary_matches_what_the_test_did(tmp_path):
    assert SPY and SOFTHSM and TOOL, "softhsm2 / pkcs11-spy / pkcs11-tool not installed"
    (tmp_path / "tokens").mkdir()
    conf = tmp_path / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {tmp_path / 'tokens'}\nobjectstore.backend = file\n")
    trace = tmp_path / "spy.log"
    env = dict(os.environ, SOFTHSM2_CONF=str(conf), PKCS11SPY=SOFTHSM,
               PKCS11SPY_OUTPUT=str(trace))

    def tool(*args: str, ok: bool = True) -> None:
        r = subprocess.run([TOOL, "--module", SPY, *args], env=env, capture_output=True,
                           timeout=60)
        assert (r.returncode == 0) == ok, r.stderr.decode()

    tool("--init-token", "--slot-index", "0", "--label", "e2e", "--so-pin", SO_PIN)
    tool("--token-label", "e2e", "--login", "--login-type", "so", "--so-pin", SO_PIN,
         "--init-pin", "--new-pin", USER_PIN)
    tool("--token-label", "e2e", "--login", "--pin", WRONG_PIN, "-O", ok=False)
    tool("--token-label", "e2e", "--login", "--pin", USER_PIN, "--keypairgen",
         "--key-type", "EC:prime256v1", "--label", LONG_LABEL, "--id", "42")
    tool("--token-label", "e2e", "--login", "--pin", USER_PIN, "--keygen",
         "--key-type", "AES:16", "--label", EXACT_LABEL, "--id", "43")

    r = pkspy("summary", "--json", str(trace))
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)
    assert s["processes"] == 5
    assert s["incomplete_records"] == 0 and s["unparsed_lines"] == 0
    assert [(x["process"], x["user_type"], x["result"]) for x in s["logins"]] == [
        (1, "CKU_SO", "CKR_OK"), (2, "CKU_USER", "CKR_PIN_INCORRECT"), (3, "CKU_USER", "CKR_OK"),
        (4, "CKU_USER", "CKR_OK")]
    assert (2, "C_Login", "CKR_PIN_INCORRECT") in [
        (f["process"], f["function"], f["name"]) for f in s["failed_calls"]]
    for fn in ("C_InitToken", "C_InitPIN", "C_GenerateKeyPair", "C_GenerateKey"):
        assert s["calls_by_function"].get(fn) == 1, fn

    calls = {e.function: e for e in open_events(str(trace))[1] if isinstance(e, Pkcs11Call)}
    labels = {a.value for name in ("pPublicKeyTemplate", "pPrivateKeyTemplate")
              for a in calls["C_GenerateKeyPair"].arg(name).value if a.name == "CKA_LABEL"}
    assert labels == {LONG_LABEL.encode()}
    key = {a.name: a for a in calls["C_GenerateKey"].arg("pTemplate").value}
    assert key["CKA_LABEL"].value == EXACT_LABEL.encode()
    assert not calls["C_GenerateKey"].problems and not calls["C_GenerateKeyPair"].problems

    forms = [f for pin in (SO_PIN, USER_PIN, WRONG_PIN) for f in secret_forms(pin)]
    raw = trace.read_text(errors="replace")
    assert all(any(f in raw for f in secret_forms(p)) for p in (SO_PIN, USER_PIN, WRONG_PIN))
    for args in (["tail", "--no-follow"], ["tail", "--no-follow", "--json"], ["summary"]):
        out = pkspy(*args, str(trace)).stdout.decode()
        assert not [f for f in forms if f in out], args
