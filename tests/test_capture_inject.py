"""How `pkspy run` puts the tracers in a program's path, and writes what they said:
command lines, generated configs, the order and masking of the written lines. No
program is run here (test_capture.py runs the real ones)."""

from __future__ import annotations

import io
import os
import subprocess
from pathlib import Path

import pytest

from pkspy.capture import inject
from pkspy.capture.run import output_paths
from pkspy.capture.streams import TraceWriter, redacted_copy
from pkspy.model import Arg, Pkcs11Call, Unparsed
from pkspy.redact import Redactor

SPY = "/opt/spy/pkcs11-spy.so"


@pytest.fixture
def real(tmp_path) -> str:
    module = tmp_path / "libreal.so"
    module.write_bytes(b"")
    return str(module)


def place(argv, real, tmp_path, module=None, environ=None):
    return inject.place_pkcs11_spy(argv, module, SPY, tmp_path, environ or {"HOME": "/none"})


def test_pkcs11_tool_module_in_both_forms(real, tmp_path):
    plan = place(["pkcs11-tool", "--module", real, "-L"], real, tmp_path)
    assert plan.argv == ["pkcs11-tool", "--module", SPY, "-L"]
    assert plan.env["PKCS11SPY"] == real and plan.real == real
    plan = place(["pkcs11-tool", f"--module={real}", "-O"], real, tmp_path)
    assert plan.argv == ["pkcs11-tool", f"--module={SPY}", "-O"]


def test_a_module_given_to_pkspy_is_added_or_must_agree(real, tmp_path):
    plan = place(["p11tool", "--list-tokens"], real, tmp_path, module=real)
    assert plan.argv == ["p11tool", "--provider", SPY, "--list-tokens"]
    with pytest.raises(inject.CannotPlace, match="drop one of them"):
        place(["pkcs11-tool", "--module", "/usr/lib/other.so"], real, tmp_path, module=real)


def test_ssh_provider_in_every_form_and_not_in_the_remote_command(real, tmp_path):
    for argv, want in [
        (["ssh", "-I", real, "host"], ["ssh", "-I", SPY, "host"]),
        (["ssh", f"-I{real}", "host"], ["ssh", f"-I{SPY}", "host"]),
        (["ssh", "-v", "-o", f"PKCS11Provider={real}", "host"],
         ["ssh", "-v", "-o", f"PKCS11Provider={SPY}", "host"]),
        (["ssh", f"-oPKCS11Provider {real}", "host"], ["ssh", f"-oPKCS11Provider {SPY}", "host"]),
        (["ssh", "host", "-I", real, "ls", "-I", real],
         ["ssh", "host", "-I", SPY, "ls", "-I", real]),
        (["ssh", "-p", "22", "-I", real, "host"], ["ssh", "-p", "22", "-I", SPY, "host"]),
    ]:
        assert place(argv, real, tmp_path).argv == want, argv
    assert place(["ssh-keygen", "-D", real], real, tmp_path).argv == ["ssh-keygen", "-D", SPY]
    with pytest.raises(inject.CannotPlace, match="ssh-agent"):
        place(["ssh-add", "-s", real], real, tmp_path)


def test_ssh_with_a_module_but_none_named_gets_one(real, tmp_path):
    plan = place(["ssh", "-o", "PKCS11Provider=none", "host"], real, tmp_path, module=real)
    assert plan.argv[:3] == ["ssh", "-I", SPY]


def test_any_argument_that_is_the_module(real, tmp_path):
    plan = place(["python3", "drive.py", real], real, tmp_path, module=real)
    assert plan.argv == ["python3", "drive.py", SPY]
    plan = place(["tool", f"--lib={real}", f"pkcs11:token=x?module-path={real}&pin-source=f"],
                 real, tmp_path, module=real)
    assert plan.argv == ["tool", f"--lib={SPY}", f"pkcs11:token=x?module-path={SPY}&pin-source=f"]


def test_nothing_to_place_and_programs_without_a_module(real, tmp_path):
    assert place(["sh", "-c", "true"], real, tmp_path) is None
    assert place(["opensc-tool", "-a"], real, tmp_path) is None
    with pytest.raises(inject.CannotPlace, match="opensc-debug"):
        place(["opensc-tool", "-a"], real, tmp_path, module=real)
    with pytest.raises(inject.CannotPlace, match="no such module"):
        place(["pkcs11-tool", "--module", "/nonexistent/x.so"], real, tmp_path)
    with pytest.raises(inject.CannotPlace, match="pkcs11-spy itself"):
        inject.place_pkcs11_spy(["pkcs11-tool", "--module", real], None, real, tmp_path, {})


def test_a_program_that_does_not_name_its_module(real, tmp_path):
    plan = place(["someprogram", "--flag"], real, tmp_path, module=real)
    assert plan.argv == ["someprogram", "--flag"] and not plan.certain
    assert plan.env["PKCS11_PROVIDER_MODULE"] == SPY and plan.env["PKCS11_MODULE_PATH"] == SPY
    assert any("does not name" in n for n in plan.notes)
    if os.geteuid() == 0:
        assert any("skips user configuration for root" in n for n in plan.notes)


def test_p11kit_user_config_replaces_the_module_config(real, tmp_path, monkeypatch):
    config = tmp_path / "real-config"
    (config / "pkcs11" / "modules").mkdir(parents=True)
    (config / "pkcs11" / "modules" / "mine.module").write_text(f"module: {real}\npriority: 3\n")
    (config / "other-app").mkdir()
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    monkeypatch.setattr(os, "getuid", lambda: 1000)
    note = inject.p11kit_config(real, SPY, tmp_path, {"XDG_CONFIG_HOME": str(config)})
    assert "mine.module" in note
    made = tmp_path / "config"
    assert (made / "other-app").is_symlink()
    text = (made / "pkcs11" / "modules" / "mine.module").read_text()
    assert text.startswith(f"module: {SPY}\n") and "priority: 3" in text
    assert (config / "pkcs11" / "modules" / "mine.module").read_text().startswith("module: /")


def test_openssl_provider_engine_and_config(real, tmp_path):
    conf = tmp_path / "openssl.cnf"
    conf.write_text(f"openssl_conf = init\n[init]\nproviders = prov\n[prov]\npkcs11 = p11\n"
                    f"[p11]\npkcs11-module-path = {real}\n")
    plan = inject.place_pkcs11_spy(["openssl", "list", "-providers"], None, SPY, tmp_path,
                                   {"OPENSSL_CONF": str(conf)})
    assert plan.real == real
    assert plan.env["PKCS11_PROVIDER_MODULE"] == SPY and plan.env["PKCS11_MODULE_PATH"] == SPY
    made = Path(plan.env["OPENSSL_CONF"]).read_text()
    assert made.splitlines() == [f".include {conf}", "[p11]", f"pkcs11-module-path = {SPY}"]


def test_openssl_config_set_again_wins(tmp_path):
    """What the generated config relies on: a key set again after .include wins."""
    openssl = __import__("shutil").which("openssl")
    if openssl is None:
        pytest.skip("openssl not installed")
    base = tmp_path / "base.cnf"
    base.write_text("[req]\nprompt = no\ndistinguished_name = dn\n[dn]\nCN = first\n")
    over = tmp_path / "over.cnf"
    over.write_text(f".include {base}\n[dn]\nCN = second\n")
    key = tmp_path / "k.pem"
    subprocess.run([openssl, "genpkey", "-algorithm", "EC", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-out", str(key)], check=True, capture_output=True)
    csr = subprocess.run([openssl, "req", "-new", "-key", str(key), "-config", str(over)],
                         check=True, capture_output=True).stdout
    subject = subprocess.run([openssl, "req", "-noout", "-subject"], input=csr, check=True,
                             capture_output=True).stdout
    assert b"second" in subject and b"first" not in subject


def test_opensc_conf_puts_the_debug_settings_first_in_every_app_block(tmp_path, monkeypatch):
    source = tmp_path / "system.conf"
    source.write_text("# app commented { }\napp default {\n\tdebug = 0;\n}\n"
                      "app opensc-pkcs11 {\n\tdebug_file = /var/log/x;\n}\n")
    monkeypatch.setenv("OPENSC_CONF", str(source))
    path, note = inject.opensc_conf(9, "/tmp/fifo", tmp_path)
    text = Path(path).read_text()
    assert text.count('debug_file = "/tmp/fifo";') == 2 and text.count("debug = 9;") == 2
    for block in ("app default {", "app opensc-pkcs11 {"):
        after = text.split(block, 1)[1]
        assert after.lstrip().startswith("debug = 9;")  # OpenSC reads the first value of a key
    assert "# app commented { }" in text and "system.conf" in note
    source.write_text("app onepin-opensc-pkcs11 {\n}\n")
    text = Path(inject.opensc_conf(3, "/tmp/fifo", tmp_path)[0]).read_text()
    assert text.startswith("app default {") and text.count("debug = 3;") == 2


def test_output_paths(tmp_path):
    assert output_paths(str(tmp_path / "t.log"), ["pkcs11-spy"]) == {
        "pkcs11-spy": str(tmp_path / "t.log")}
    assert output_paths(str(tmp_path / "t.log"), ["opensc-debug", "pcsc-spy-raw"]) == {
        "opensc-debug": str(tmp_path / "t.opensc-debug.log"),
        "pcsc-spy-raw": str(tmp_path / "t.pcsc-spy-raw.log")}
    assert output_paths(str(tmp_path), ["pkcs11-spy"]) == {
        "pkcs11-spy": str(tmp_path / "pkcs11-spy.log")}


def _event(lines: dict[int, str]) -> Unparsed:
    numbers = sorted(lines)
    return Unparsed(line=numbers[0], end_line=numbers[-1], offset=0,
                    raw=[lines[n] for n in numbers], raw_lines=numbers)


def test_lines_are_written_in_source_order():
    out = io.StringIO()
    w = TraceWriter(out, hold=0)
    w.event(_event({2: "two"}))
    assert out.getvalue() == ""  # line 1 has not come yet
    w.blank(3, "  ")
    w.event(_event({1: "one", 4: "four"}))  # an exchange paired from lines 1 and 4
    assert out.getvalue() == "one\ntwo\n  \nfour\n"
    w.event(_event({6: "six"}))
    w.close()
    assert out.getvalue().endswith("four\nsix\n") and w.lost == [5]


def test_held_lines_are_swept_for_secrets_learned_after_them():
    """A PIN's copy that came before the record naming it is masked in the file."""
    redact = Redactor()
    out = io.StringIO()
    w = TraceWriter(out, redact, hold=10)
    w.event(_event({1: "early copy: 31 32 33 34 35 36"}))
    redact(Pkcs11Call(line=2, end_line=2, offset=0, function="C_Login", args=[
        Arg(name="pPin", value=b"123456", kind="buffer", length=6, secret="PIN")]))
    w.close()
    assert out.getvalue() == "early copy: ** ** ** ** ** **\n"


def test_redacted_copy_of_a_spy_fixture_masks_in_place():
    fixture = Path(__file__).parent.parent / "fixtures" / "pkcs11-spy" / "softhsm2-pkcs11-tool.log"
    lines = fixture.read_text().splitlines()
    out = io.StringIO()
    redacted_copy(lines, "pkcs11-spy", out)
    copy = out.getvalue().splitlines()
    assert len(copy) == len(lines)
    changed = [(a, b) for a, b in zip(lines, copy, strict=True) if a != b]
    assert changed and all(len(a) == len(b) for a, b in changed)
    assert all(x == y or y == "*" for a, b in changed for x, y in zip(a, b, strict=True))
    assert "UsrPin-5417" not in out.getvalue()


TID = "7F73F03D6740@"
VERIFY_RECORD = [">|1795787271|758823|SCardTransmit", "0x5A5A0001", "0x00000002", "0x00000010",
                 "0x0000000B", "00 20 00 81 06 31 32 33 34 35 36 ", "0x00000002", "0x00000010",
                 "0x00000002", "90 00 ",
                 "<|1795787271|758846|SCardTransmit|Command successful.|0x00000000"]


def _pcsc_copy(record: list[str]) -> str:
    out = io.StringIO()
    redacted_copy([TID + x for x in record], "pcsc-spy-raw", out)
    return out.getvalue()


def test_a_transmit_record_in_step_has_its_pin_masked():
    assert "00 20 00 81 06 ** ** ** ** ** ** " in _pcsc_copy(VERIFY_RECORD)


@pytest.mark.parametrize("record", [
    VERIFY_RECORD[:2] + VERIFY_RECORD[3:],  # the send protocol line lost
    [*VERIFY_RECORD[:5], "0x00000001", *VERIFY_RECORD[5:]],  # a stray value line
], ids=["lost-line", "extra-line"])
def test_a_transmit_record_out_of_step_keeps_its_pin(record):
    assert "31 32 33 34 35 36" not in _pcsc_copy(record)


def _captured_fixtures() -> list[Path]:
    from pkspy import formats

    root = Path(__file__).parent.parent / "fixtures"
    out = []
    for path in sorted(root.glob("*/*")):
        if path.suffix in (".json", ".md") or not Path(f"{path}.expected.json").exists():
            continue
        head = path.read_text(errors="replace").splitlines()[:200]
        if formats.detect(head) in ("pkcs11-spy", "opensc-debug", "pcsc-spy-raw"):
            out.append(path)
    return out


@pytest.mark.parametrize("fixture", _captured_fixtures(), ids=lambda p: p.name)
def test_what_run_writes_of_each_fixture_is_the_fixture_masked_in_place(fixture, tmp_path):
    """For every real trace of a format `pkspy run` captures: the redacted copy has the
    same lines, each as long as before, differing only by '*'; none of the fixture's
    secrets is in it; and pkspy reads it back to the same summary."""
    import json

    from conftest import secret_forms

    from pkspy import formats
    from pkspy.report.summary import summarize
    from pkspy.sources import decode

    lines = [decode(x) for x in fixture.read_bytes().splitlines(keepends=True)]
    fmt = formats.detect(lines[:200])
    copy = tmp_path / "copy.log"
    with copy.open("w", encoding="utf-8", errors="surrogateescape") as f:
        redacted_copy(lines, fmt, f)
    masked = copy.read_text(encoding="utf-8", errors="surrogateescape").split("\n")[:-1]
    assert len(masked) == len(lines)
    for a, b in zip(lines, masked, strict=True):
        assert len(a) == len(b) and all(x == y or y == "*" for x, y in zip(a, b, strict=True))
    facts = json.loads(Path(f"{fixture}.expected.json").read_text())
    weak = set(facts.get("weak_secrets", []))  # 4 digits also found by chance (line numbers)
    secrets = [v for k, v in facts["secrets"].items() if k not in weak and isinstance(v, str)]
    secrets += [v for v in facts["secrets"].get("key_values_hex", [])]
    text = copy.read_text(errors="replace")
    assert not [f for s in secrets for f in secret_forms(s) if f in text]
    keys = ("format", "calls", "failed_calls", "logins", "sessions", "apdus", "status_words",
            "unparsed_lines", "incomplete_records")
    before, after = summarize(str(fixture)), summarize(str(copy))
    assert {k: after.get(k) for k in keys} == {k: before.get(k) for k in keys}
