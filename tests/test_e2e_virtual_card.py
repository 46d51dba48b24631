"""End to end with a card: opensc-tool talks to the virtual card (pcscd + vpcd +
vicc, started here) with OPENSC_DEBUG on and, in a second run, through
libpcscspy; pkspy must see the exchanges the card's own journal recorded, and
print none of the PINs sent."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, pkspy, secret_forms

sys.path.insert(0, str(ROOT / "fixtures" / "card"))
from virtual_card import PACKAGES, VirtualCard, VirtualCardUnavailable

PIN, WRONG = "605518", "447120"
APDUS = [
    "00 A4 00 0C 02 3F 00",  # SELECT MF
    "00 20 00 81",  # VERIFY: tries left
    f"00 20 00 81 06 {WRONG.encode().hex(' ')}",  # wrong PIN: 63Cx
    f"00 20 00 81 06 {PIN.encode().hex(' ')}",  # right PIN: 9000
    "00 A4 04 00 05 A0 00 00 00 01",  # SELECT of an AID the card has not: 6A82
]


@pytest.fixture(scope="module")
def card():
    try:
        with VirtualCard(pin=PIN) as c:
            yield c
    except VirtualCardUnavailable as e:
        if os.environ.get("CI"):
            raise  # CI installs every package: not having the card is a failure there
        pytest.skip(f"{e} (install: {PACKAGES})")


def _opensc_tool(card, env: dict) -> None:
    args = ["opensc-tool", "-r", "Virtual PCD 00 00"]
    for apdu in APDUS:
        args += ["-s", apdu]
    r = subprocess.run(args, env=card.env(env), capture_output=True, timeout=120)
    assert r.returncode == 0, r.stderr.decode()[-500:]


def _check(trace: Path, want: list[tuple[str, str]]) -> dict:
    r = pkspy("summary", "--json", str(trace))
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)
    assert s["apdus"] == len(want)
    sws: dict[str, int] = {}
    for _, sw in want:
        sws[sw] = sws.get(sw, 0) + 1
    assert s["status_words"] == sws
    forms = [f for pin in (PIN, WRONG) for f in secret_forms(pin)]
    assert any(f in trace.read_text(errors="replace") for f in forms)
    for args in (("tail", "--no-follow"), ("tail", "--no-follow", "--json"), ("summary",)):
        out = pkspy(*args, str(trace)).stdout.decode()
        assert not [f for f in forms if f in out], args
    return s


def _journal(card, since: int) -> list[tuple[str, str]]:
    return [(x["command"].upper(), x["response"][-4:].upper()) for x in card.exchanges(since)]


def test_opensc_debug_log_of_a_live_card(card, tmp_path):
    conf = tmp_path / "opensc.conf"
    log = tmp_path / "debug.log"
    conf.write_text(f'app default {{ debug = 3; debug_file = "{log}"; }}\n')
    since = len(card.exchanges())
    _opensc_tool(card, {"OPENSC_CONF": str(conf)})
    want = _journal(card, since)
    assert {sw for _, sw in want} >= {"9000", "6A82"} and any(sw.startswith("63C")
                                                              for _, sw in want)
    s = _check(log, want)
    assert s["format"] == "opensc-debug" and "Virtual PCD 00 00" in s["readers"]


def test_pcsc_spy_raw_stream_of_a_live_card(card, tmp_path):
    spy = next((p for p in ("/usr/lib/x86_64-linux-gnu/libpcscspy.so.0",
                            "/usr/lib/aarch64-linux-gnu/libpcscspy.so.0",
                            "/usr/lib64/libpcscspy.so.0", "/usr/lib/libpcscspy.so.0")
                if Path(p).exists()), None)
    real = next((p for p in (Path(spy).parent / "libpcsclite.so.1",) if p.exists()), None) \
        if spy else None
    if not (spy and real):
        if os.environ.get("CI"):
            pytest.fail("libpcscspy.so.0 not found (package libpcsclite-dev)")
        pytest.skip("libpcscspy.so.0 not found (package libpcsclite-dev)")
    # The spy stands in for libpcsclite.so.1 in a private directory and loads the
    # real library under the names pcsc-lite 1.9.9 and 2.x look for; it writes to
    # $HOME/pcsc-spy, which must exist: a plain file works (written from offset 0).
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "libpcsclite.so.1").symlink_to(spy)
    for name in ("libpcsclite_nospy.so.1", "libpcsclite_real.so.1"):
        (lib / name).symlink_to(real.resolve())
    home = tmp_path / "home"
    home.mkdir()
    (home / "pcsc-spy").write_bytes(b"")
    since = len(card.exchanges())
    _opensc_tool(card, {"LD_LIBRARY_PATH": str(lib), "HOME": str(home),
                        "LIBPCSCLITE_SPY_DELEGATE": str(real.resolve())})
    want = _journal(card, since)
    s = _check(home / "pcsc-spy", want)
    assert s["format"] == "pcsc-spy-raw"
    assert s["pcsc_calls_by_function"]["SCardTransmit"] >= len(want)
