"""Exit codes, in one place: the README's "Exit codes" section lists the same table.

Scripts can tell apart what a user fixes differently: a path that cannot be
read (2, like click's own usage errors), a file that is not a trace (3), a
stopped reader (130 for Ctrl-C, 141 for a closed pipe, as a shell shows a
SIGINT/SIGPIPE death), and a bug in pkspy (70, EX_SOFTWARE of sysexits.h).
"""

from __future__ import annotations

import os
import sys
import traceback

OK = 0
NOT_FOUND = 1  # explain: no meaning known for a code
USAGE = 2  # a bad option or argument, or an input that cannot be read (missing,
# a directory, permission denied, a device), or an output pkspy will not write
NOT_A_TRACE = 3  # empty, or in no format pkspy knows (the message lists them)
INTERNAL = 70  # a bug: an exception pkspy did not expect (--debug shows the traceback)
INTERRUPTED = 130  # Ctrl-C (128 + SIGINT)
BROKEN_PIPE = 141  # the reader of stdout went away, e.g. `| head` (128 + SIGPIPE)

EXIT_CODES = {
    OK: "success",
    NOT_FOUND: "explain: a code with no known meaning",
    USAGE: "bad option or argument; input missing, a directory, unreadable or a device",
    NOT_A_TRACE: "input empty or not in a format pkspy knows (the message lists them)",
    INTERNAL: "a bug in pkspy (run again with --debug for the traceback)",
    INTERRUPTED: "interrupted with Ctrl-C",
    BROKEN_PIPE: "standard output closed by its reader (e.g. piped to head)",
}


def fail(message: str, code: int = USAGE) -> None:
    """One line on stderr, then exit with ``code``."""
    print(f"pkspy: {message}", file=sys.stderr, flush=True)
    sys.exit(code)


def interrupted() -> None:
    print("pkspy: interrupted", file=sys.stderr, flush=True)
    sys.exit(INTERRUPTED)


def broken_pipe() -> None:
    """Exit quietly like a process killed by SIGPIPE; stdout is pointed at /dev/null so
    the interpreter's last flush of the unread output raises nothing."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
    sys.exit(BROKEN_PIPE)


def internal(error: BaseException, debug: bool) -> None:
    if debug:
        traceback.print_exception(error)
    where = "" if debug else " (run again with --debug for the traceback)"
    fail(f"internal error: {type(error).__name__}: {error}{where}".replace("\n", " "), INTERNAL)
