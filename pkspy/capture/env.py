"""``pkspy env``: what to export to run a program under pkcs11-spy by hand.

For services pkspy cannot start itself. The spy writes every PIN in clear
to PKCS11SPY_OUTPUT; the only safe target is a FIFO that ``pkspy tail``
reads (it redacts before it prints), which is what the printed recipe sets up:
``pkspy tail --no-follow - 0<> FIFO`` (stdin opened read-write on the FIFO, so
it never reads EOF between the processes that open it).
"""

from __future__ import annotations

import os
import shlex

from pkspy.capture import locate


def exports(module: str, spy: str | None = None, output: str | None = None,
            shell: str = "sh") -> tuple[str, str]:
    """(what to evaluate, the warning and recipe for stderr)."""
    spy_path = locate.find_spy(spy)
    real = os.path.abspath(module) if os.path.exists(module) else module
    fifo = output or os.path.join(os.environ.get("XDG_RUNTIME_DIR") or "/tmp",
                                  f"pkcs11-spy-{os.getuid()}.fifo")
    values = {"PKCS11SPY": real, "PKCS11SPY_OUTPUT": fifo}
    if shell == "fish":
        lines = [f"set -gx {k} {shlex.quote(v)};" for k, v in values.items()]
    else:
        lines = [f"export {k}={shlex.quote(v)}" for k, v in values.items()]
    lines.insert(0, f"# give the program this module instead of {real}: {spy_path}")
    warning = (
        "pkspy: warning: pkcs11-spy writes every PIN and key it sees in clear to "
        "PKCS11SPY_OUTPUT. Make it a FIFO that pkspy reads, never a file:\n"
        f"  mkfifo -m 600 {shlex.quote(fifo)}\n"
        f"  pkspy tail --no-follow - 0<> {shlex.quote(fifo)}   # redacted and decoded, "
        "until Ctrl-C\n"
        "(opening the FIFO read-write, as 0<> does on Linux, keeps it open between the "
        "processes that write to it)\n"
        "then start the program with the variables above and the spy as its module. "
        "Where pkspy can start the program itself, `pkspy run --module REAL.so -- COMMAND` "
        "does all this and writes a redacted trace.")
    return "\n".join(lines) + "\n", warning
