"""pkspy card replay: recorded APDUs sent again to the virtual card (pcscd + vpcd + vicc).

The trace is fixtures/pcsc-spy/pyscard.txt, pcsc-lite's spy in front of
drive_pyscard.py talking to the same virtual card; the replay goes to a fresh
card with the same PIN (what matches, and where the skipped PIN changes make
the runs part) and to a card without its files (the first SELECT of a file).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
from conftest import ROOT, secret_forms

sys.path.insert(0, str(ROOT / "fixtures" / "card"))
from apdus import CARD_PIN
from virtual_card import PACKAGES, VirtualCard, VirtualCardUnavailable

TRACE = ROOT / "fixtures" / "pcsc-spy" / "pyscard.txt"


def card_replay(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pkspy", "card", "replay", *args],
                          capture_output=True, text=True, timeout=120, cwd=ROOT,
                          stdin=subprocess.DEVNULL, env=env)


def _rows(stdout: str) -> dict[int, str]:
    """Exchange number -> its mark (= same, > first divergence, - not sent, + no record)."""
    return {int(n): m for m, n in re.findall(r"^([=≠>\-+]) (\d+)\. ", stdout, re.M)}


def _run_on(card, tmp_path, *more: str):
    out = tmp_path / "replay.txt"
    env = card.env(dict(os.environ, CARD_PIN_VAR=CARD_PIN))
    r = card_replay(str(TRACE), "-r", card.reader, "--pin-env", "CARD_PIN_VAR", "-o", str(out),
                    "--all", *more, env=env)
    return r, out


def test_recorded_apdus_replayed_on_the_virtual_card(tmp_path):
    try:
        with VirtualCard(pin=CARD_PIN) as card:
            r, out = _run_on(card, tmp_path)
            seen = card.exchanges()
    except VirtualCardUnavailable as e:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"{e} (install: {PACKAGES})")
    assert r.returncode == 1, r.stdout + r.stderr
    rows = _rows(r.stdout)
    # the file system part and the PIN checks the card can answer alike
    assert all(rows[n] == "=" for n in [*range(1, 15), 16, 18, 19, 20]), r.stdout
    # the right PIN was rebuilt from --pin-env and really sent; the wrong one was not
    sent = [e["command"] for e in seen]
    assert "0020000004" + CARD_PIN.encode().hex().upper() in sent
    assert not [c for c in sent if c.startswith("0020000006")]
    assert rows[17] == "-" and "17. VERIFY: the recorded PIN was refused (63C2 2 tries " \
        "left): pkspy does not send a wrong PIN" in r.stdout
    assert rows[21] == "-" and "carries the old and new PIN, redacted in the trace" in r.stdout
    assert rows[15] == "-" and "writes to the card: refused without --allow-changes" in r.stdout
    # the user's PIN reset was not replayed, so the card still has the PIN verified there
    assert rows[26] == ">"
    assert re.search(r"^First divergence: exchange 26, VERIFY \(line \d+ of .*pyscard.txt\): "
                     r"63C3 3 tries left was recorded, the card answered 9000 success\.$",
                     r.stdout, re.M)
    assert rows[28] == "+"  # recorded without a response: sent, nothing to compare
    # the replay's own record: the same commands, the PIN masked
    text = out.read_text()
    assert text.count("\n> ") + text.startswith("> ") == len(seen)
    assert "> 00 20 00 00 04 ** ** ** **" in text
    assert not [f for f in secret_forms(CARD_PIN) if len(f) > 4 and f in r.stdout + text]


def test_a_card_without_the_files_diverges_at_the_first_select(tmp_path):
    try:
        with VirtualCard(pin=CARD_PIN, files=False) as card:
            r, _out = _run_on(card, tmp_path)
    except VirtualCardUnavailable as e:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"{e} (install: {PACKAGES})")
    assert r.returncode == 1, r.stdout + r.stderr
    rows = _rows(r.stdout)
    first = min(n for n, m in rows.items() if m == ">")
    assert all(rows[n] == "=" for n in range(1, first))
    m = re.search(r"^First divergence: exchange (\d+), SELECT .*: 9000 success was recorded, "
                  r"the card answered 6A82", r.stdout, re.M)
    assert m and int(m.group(1)) == first


def test_dry_run_plans_without_a_reader(tmp_path):
    out = tmp_path / "never.txt"
    r = card_replay(str(TRACE), "--dry-run", "-o", str(out))
    assert r.returncode == 0, r.stderr
    assert not out.exists()
    plan = {n: what for what, n in re.findall(r"^  (send|skip) (\d+)\. ", r.stdout, re.M)}
    assert len(plan) == 28
    assert plan["1"] == "send" and plan["18"] == "skip"  # no --pin-env: the PIN is not sent
    assert "18. VERIFY 00 20 00 00 ‹PIN redacted, 4 bytes› -> 9000 success  — carries the " \
        "PIN: give --pin-env VAR" in r.stdout


@pytest.mark.parametrize(("args", "message"), [
    ([str(ROOT / "fixtures" / "pkcs11-spy" / "softhsm2-pykcs11.log")], "no APDU exchange"),
    ([str(TRACE), "--pin-env", "PKSPY_TEST_UNSET_VAR"], "PKSPY_TEST_UNSET_VAR is not set"),
])
def test_bad_input_is_one_line_and_exit_2(args, message):
    env = {k: v for k, v in os.environ.items() if k != "PKSPY_TEST_UNSET_VAR"}
    r = card_replay(*args, "--dry-run", env=env)
    assert r.returncode == 2
    assert len(r.stderr.strip().splitlines()) == 1 and message in r.stderr


def test_writes_are_sent_only_after_a_yes_on_the_terminal(tmp_path):
    """Exchange 15 (INS E8, TERMINATE EF in ISO 7816-9) counts as a write: refused, then
    sent once confirmed (the virtual card does not know it: 6D00, as recorded)."""
    from test_replay import on_terminal

    try:
        with VirtualCard(pin=CARD_PIN) as card:
            argv = [sys.executable, "-m", "pkspy", "card", "replay", str(TRACE), "-r",
                    card.reader, "--allow-changes", "--all", "-o", str(tmp_path / "w.txt")]
            rc_no, shown_no = on_terminal(argv, card.env(), [("Go on? [y/N] ", "n")])
            sent_after_no = len(card.exchanges())
            rc_yes, shown_yes = on_terminal(argv, card.env(), [("Go on? [y/N] ", "y")])
            sent = [e["command"] for e in card.exchanges()]
    except VirtualCardUnavailable as e:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"{e} (install: {PACKAGES})")
    assert rc_no == 2 and "nothing was sent" in shown_no and sent_after_no == 0
    assert re.search(r"line \d+: TERMINATE EF 00 E8 00 00 \+1", shown_yes)
    assert "00E8000000" in sent
    assert _rows(shown_yes)[15] == "=" and rc_yes == 1
