"""``pkspy probe``: a read-only look at a PKCS#11 module through PyKCS11, under the spy.

The probe itself runs as a program under ``pkspy run`` (this module's
``main``), so its every call is in a redacted pkcs11-spy trace beside the
report. It reads, never writes: library info, slots, tokens with their flags,
mechanisms with key sizes and flags, and objects by class, label, id and key
type (public ones; private ones too after a login). The PIN comes from an
environment variable or a prompt that does not echo, never from argv, and is
in neither the report nor the trace.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
import time
from dataclasses import dataclass

from pkspy import __version__

ATTRIBUTES = ("CKA_CLASS", "CKA_LABEL", "CKA_ID", "CKA_KEY_TYPE", "CKA_PRIVATE", "CKA_TOKEN")


@dataclass
class ProbeOptions:
    module: str
    slot: int | None = None
    login: bool = False
    pin_env: str | None = None
    output: str = "pkspy-probe.md"
    spy: str | None = None


def _text(value) -> str:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    text = str(value).strip().replace("|", "\\|").replace("\n", " ")
    return text or "–"


def _version(v) -> str:
    return ".".join(str(x) for x in v) if isinstance(v, (tuple, list)) else _text(v)


def _flags(names: list[str]) -> str:
    return ", ".join(n.replace("CKF_", "") for n in names) or "–"


def _value(PyKCS11, name: str, value) -> str:
    if value is None:
        return "–"
    if name == "CKA_CLASS":
        return PyKCS11.CKO.get(value, hex(value))
    if name == "CKA_KEY_TYPE":
        return PyKCS11.CKK.get(value, hex(value))
    if name == "CKA_LABEL":
        return _text(bytes(value)) if isinstance(value, (list, tuple)) else _text(value)
    if name == "CKA_ID":
        return (bytes(value).hex() if isinstance(value, (list, tuple, bytes)) else str(value)) \
            or "–"
    return _text(value)


def _objects(PyKCS11, session) -> list[list[str]]:
    rows = []
    types = [getattr(PyKCS11, n) for n in ATTRIBUTES]
    for obj in session.findObjects():
        values = session.getAttributeValue(obj, types)
        handle = obj.value() if hasattr(obj, "value") else int(obj)
        rows.append([f"0x{handle:x}", *(_value(PyKCS11, n, v) for n, v in
                                            zip(ATTRIBUTES, values, strict=False))])
    return rows


def _table(head: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return out


def report(opts: argparse.Namespace) -> str:
    """The Markdown report of one probe (runs PyKCS11 against ``opts.module``)."""
    import PyKCS11

    lib = PyKCS11.PyKCS11Lib()
    lib.load(opts.module)
    info = lib.getInfo()
    md = [f"# PKCS#11 probe: {_text(info.libraryDescription)}", "",
          f"- module: `{opts.shown}`, through pkcs11-spy (redacted trace: `{opts.trace}`)",
          f"- library: {_text(info.manufacturerID)} / {_text(info.libraryDescription)} "
          f"{_version(info.libraryVersion)}, Cryptoki {_version(info.cryptokiVersion)}",
          f"- probed by pkspy {__version__} on {time.strftime('%Y-%m-%d %H:%M:%S %z')}, "
          "read-only" + (", with a user login" if opts.login else ", no login"), ""]
    slots = lib.getSlotList(tokenPresent=False)
    if opts.slot is not None:
        slots = [s for s in slots if s == opts.slot]
        if not slots:
            md.append(f"No slot {opts.slot} (0x{opts.slot:x}).")
            return "\n".join(md) + "\n"
    md.append(f"{len(slots)} slot(s).")
    state: dict[str, str | None] = {"pin": None}
    for slot in slots:
        try:
            _slot(PyKCS11, lib, slot, opts, md, state)
        except PyKCS11.PyKCS11Error as e:
            md += ["", f"The probe of this slot stopped: {e}"]
    return "\n".join(md) + "\n"


def _slot(PyKCS11, lib, slot: int, opts, md: list[str], state: dict) -> None:
    si = lib.getSlotInfo(slot)
    md += ["", f"## Slot {slot} (0x{slot:x}): {_text(si.slotDescription)}", "",
           f"- manufacturer: {_text(si.manufacturerID)}, hardware "
           f"{_version(si.hardwareVersion)}, firmware {_version(si.firmwareVersion)}",
           f"- flags: {_flags(si.flags2text())}"]
    if "CKF_TOKEN_PRESENT" not in si.flags2text():
        md.append("- no token")
        return
    ti = lib.getTokenInfo(slot)
    md += ["", f"### Token {_text(ti.label)}", "",
           f"- manufacturer: {_text(ti.manufacturerID)}, model {_text(ti.model)}, "
           f"hardware {_version(ti.hardwareVersion)}, firmware {_version(ti.firmwareVersion)}",
           f"- PIN length: {ti.ulMinPinLen}..{ti.ulMaxPinLen}",
           f"- flags: {_flags(ti.flags2text())}"]
    rows = []
    for m in lib.getMechanismList(slot):
        try:
            mi = lib.getMechanismInfo(slot, m)
            rows.append([str(m), str(mi.ulMinKeySize), str(mi.ulMaxKeySize),
                         _flags(mi.flags2text())])
        except PyKCS11.PyKCS11Error as e:
            rows.append([str(m), "–", "–", f"({e})"])
    md += ["", f"#### Mechanisms ({len(rows)})", "",
           *_table(["mechanism", "min key", "max key", "flags"], rows)]
    if "CKF_TOKEN_INITIALIZED" not in ti.flags2text():
        md += ["", "The token is not initialized: no session opened."]
        return
    session = lib.openSession(slot)  # read-only
    try:
        head = ["handle", "class", "label", "id", "key type", "private", "token"]
        public = _objects(PyKCS11, session)
        md += ["", f"#### Objects without login ({len(public)})", "", *_table(head, public)]
        if not opts.login:
            return
        if state["pin"] is None:
            state["pin"] = os.environ.get(opts.pin_env, "") if opts.pin_env else \
                getpass.getpass(f"User PIN for {_text(ti.label)}: ")
        try:
            session.login(state["pin"])
        except PyKCS11.PyKCS11Error as e:
            md += ["", f"Login failed: {e}"]
            return
        seen = {r[0] for r in public}
        more = [r for r in _objects(PyKCS11, session) if r[0] not in seen]
        md += ["", f"#### Objects seen only after login ({len(more)})", "", *_table(head, more)]
        session.logout()
    finally:
        session.closeSession()


def main(argv: list[str] | None = None) -> int:
    """The probe program pkspy runs under the spy: writes the report to --report."""
    parser = argparse.ArgumentParser(prog="pkspy-probe")
    parser.add_argument("--module", required=True)
    parser.add_argument("--slot", type=int)
    parser.add_argument("--login", action="store_true")
    parser.add_argument("--pin-env")
    parser.add_argument("--report", required=True)
    opts = parser.parse_args(argv)
    # named in the environment: an argument equal to the module path would become the spy's
    opts.shown = os.environ.get("PKSPY_PROBE_MODULE", opts.module)
    opts.trace = os.environ.get("PKSPY_PROBE_TRACE", "?")
    try:
        text = report(opts)
    except Exception as e:  # a module that fails: the report says how
        text = f"# PKCS#11 probe\n\n- module: `{opts.shown}`\n\nThe probe failed: {e}\n"
        status = 1
    else:
        status = 0
    from pkspy.capture.streams import open_private

    with open_private(opts.report) as f:
        f.write(text)
    return status


def probe(opts: ProbeOptions, err=None):
    """Run the probe under pkcs11-spy: the report at ``opts.output``, the redacted trace
    beside it (``<report stem>.pkcs11-spy.log``)."""
    from pkspy.capture import run as capture

    stem = opts.output[:-3] if opts.output.endswith(".md") else opts.output
    trace = f"{stem}.pkcs11-spy.log"
    command = [sys.executable, "-m", "pkspy.capture.probe", "--module", opts.module,
               "--report", os.path.abspath(opts.output)]
    if opts.slot is not None:
        command += ["--slot", str(opts.slot)]
    if opts.login:
        command.append("--login")
    if opts.pin_env:
        command += ["--pin-env", opts.pin_env]
    run_opts = capture.RunOptions(command=command, module=opts.module, spy=opts.spy,
                                  output=trace, quiet=True,
                                  env={"PKSPY_PROBE_MODULE": opts.module,
                                       "PKSPY_PROBE_TRACE": os.path.basename(trace)})
    outcome = capture.run(run_opts, err=err)
    if os.path.exists(trace) and os.path.exists(opts.output):
        with open(opts.output, "a", encoding="utf-8") as f:
            f.write(trace_section(trace))
    return outcome, trace


def trace_section(trace: str) -> str:
    """What the spy saw go wrong during the probe, for the end of the report."""
    from pkspy.report.summary import summarize
    from pkspy.sources import SourceError

    try:
        s = summarize(trace)
    except SourceError as e:
        return f"\n## Trace\n\n{e}\n"
    out = ["", "## Trace", "", f"{s['calls']} calls in `{os.path.basename(trace)}` "
           f"(pkcs11-spy, PINs redacted); {len(s['failed_calls'])} failed:", ""]
    rows = [[f"#{f['seq']}", f"line {f['line']}", f["function"], f["name"]]
            for f in s["failed_calls"]]
    if rows:
        out += _table(["call", "where", "function", "result"], rows)
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    sys.exit(main())
