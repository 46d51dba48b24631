"""``pkspy replay``: plan, ask what must be asked, run the replay under the spy, compare.

The replay program (``pkspy.replay.pkcs11``) runs under ``pkspy.capture.run``
like any other program: pkcs11-spy writes into a FIFO, pkspy redacts and
writes the replay's trace (mode 0600), so the live calls are compared from a
redacted trace and the PIN is never on disk. PINs come from environment
variables or a no-echo prompt, never from the trace (where they are redacted).
"""

from __future__ import annotations

import getpass
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from typing import TextIO

from pkspy.model import Pkcs11Call
from pkspy.pipeline import open_events
from pkspy.replay import plan as planning
from pkspy.replay import report
from pkspy.replay.compare import compare, first_divergence
from pkspy.replay.pkcs11 import read_results

USER_PROMPTS = {"CKU_USER": ("pin_env", "PKSPY_REPLAY_PIN", "User PIN"),
                "CKU_CONTEXT_SPECIFIC": ("pin_env", "PKSPY_REPLAY_PIN", "User PIN"),
                "CKU_SO": ("so_pin_env", "PKSPY_REPLAY_SO_PIN", "SO PIN")}


class ReplayError(Exception):
    """Stops a replay before it starts: a one-line message, exit status 2."""


@dataclass
class ReplayOptions:
    trace: str
    module: str
    slot: int | None = None
    process: int | None = None
    until: int | None = None
    pin_env: str | None = None
    so_pin_env: str | None = None
    dry_run: bool = False
    allow_changes: bool = False
    output: str = "pkspy-replay.log"
    spy: str | None = None
    all_rows: bool = False


def _interactive() -> bool:
    return sys.stdin.isatty()


def _confirm(changes: list[planning.Step], err: TextIO) -> bool:
    if not _interactive():
        return False
    err.write(f"pkspy: this replay makes {len(changes)} call(s) that change the token:\n")
    for s in changes:
        err.write(f"  {s.label}: {s.change}\n")
    err.write("Go on? [y/N] ")
    err.flush()
    return sys.stdin.readline().strip().lower() in ("y", "yes")


def _pins(the_plan: planning.Plan, opts: ReplayOptions) -> dict[str, str]:
    """The PINs the plan's logins need, by the variable the replay program reads."""
    env: dict[str, str] = {}
    for user in sorted(the_plan.logins()):
        attr, var, prompt = USER_PROMPTS.get(user, USER_PROMPTS["CKU_USER"])
        if var in env:
            continue
        source = getattr(opts, attr)
        if source:
            if source not in os.environ:
                raise ReplayError(f"{source} is not set (--{attr.replace('_', '-')})")
            env[var] = os.environ[source]
        elif _interactive():
            env[var] = getpass.getpass(f"{prompt} for the replay: ")
        # else: no PIN, the logins are skipped and listed
    return env


def _ended(status: int) -> str:
    if os.WIFSIGNALED(status):
        import signal

        return f"was killed by {signal.Signals(os.WTERMSIG(status)).name}"
    return f"exited with status {os.waitstatus_to_exitcode(status)}"


def replay(opts: ReplayOptions, out: TextIO, err: TextIO) -> int:
    """0: no divergence, 1: a divergence, 2: the replay could not run."""
    _fmt, events = open_events(opts.trace)
    the_plan = planning.build(list(events), opts.process, opts.until, opts.allow_changes)
    if opts.dry_run:
        out.write(report.dry_run(the_plan, opts.trace) + "\n")
        return 0
    if opts.allow_changes and the_plan.changes() and not _confirm(the_plan.changes(), err):
        raise ReplayError("calls that change the token need a confirmation on a terminal; "
                          "nothing was replayed")
    env = _pins(the_plan, opts)
    from pkspy.capture import run as capture

    tmp = tempfile.mkdtemp(prefix="pkspy-replay-")
    try:
        results_path = os.path.join(tmp, "results.json")
        command = [sys.executable, "-m", "pkspy.replay.pkcs11", "--module", opts.module,
                   "--trace", os.path.abspath(opts.trace), "--results", results_path,
                   "--process", str(the_plan.process)]
        for flag, value in (("--until", opts.until), ("--slot", opts.slot)):
            if value is not None:
                command += [flag, str(value)]
        if opts.allow_changes:
            command.append("--allow-changes")
        run_opts = capture.RunOptions(command=command, module=opts.module, spy=opts.spy,
                                      output=opts.output, quiet=True, env=env)
        outcome = capture.run(run_opts, err=err)
        try:
            results = read_results(results_path)
        except (OSError, ValueError, KeyError):
            raise ReplayError(f"the replay program {_ended(outcome.status)} before it made "
                              f"a call; see {opts.output}") from None
        if results.get("crashed") is not None:
            results["ended"] = _ended(outcome.status)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if "error" in results:
        raise ReplayError(f"the replay failed: {results['error']}")
    live: list[Pkcs11Call] = []
    if os.path.exists(opts.output):
        live = [e for e in open_events(opts.output)[1] if isinstance(e, Pkcs11Call)]
    rows = compare(the_plan, results, live)
    out.write(report.table(rows, stop_at_divergence=not opts.all_rows) + "\n")
    out.write(report.verdict(rows, opts.trace,
                             opts.output if os.path.exists(opts.output) else None) + "\n")
    return 1 if first_divergence(rows) else 0
