"""``pkspy run``: a program under pkcs11-spy / OPENSC_DEBUG / libpcscspy, read through FIFOs.

Each tracer writes into a FIFO in a private 0700 temporary directory, so what
it prints (every PIN in clear) lives only in a pipe and in pkspy's memory:
pkspy parses and redacts it there, shows a decoded line per call, and writes
only the redacted trace (mode 0600). FIFOs hold no data on disk.

The program runs in pkspy's process group, so it keeps the terminal (a PIN
prompt works) and gets Ctrl-C from the terminal itself; signals sent to pkspy
by other processes (``kill``) are passed on to it. pkspy waits for it, passes
its exit status on (re-raising the signal that killed it, core dumps off, as
``timeout(1)`` does), and leaves nothing behind: on Linux it is the subreaper
of everything the program starts, and stops what is still running a moment
after the program ended; the temporary directory is removed in every case but
a SIGKILL of pkspy itself (and even then it holds only empty FIFOs).
"""

from __future__ import annotations

import contextlib
import os
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from pkspy.capture import inject, locate
from pkspy.capture.streams import Stream, TraceWriter, open_private
from pkspy.model import Event
from pkspy.redact import Redactor
from pkspy.report.lines import format_event, is_failure, is_shown

FORWARDED = (signal.SIGHUP, signal.SIGINT, signal.SIGQUIT, signal.SIGTERM, signal.SIGUSR1,
             signal.SIGUSR2)
GRACE = 2.0  # seconds the program's leftovers get after it ended, before they are stopped
STOP_WAIT = 2.0  # seconds between SIGTERM and SIGKILL for them
POLL = 0.05
READ_SIZE = 1 << 16
PR_SET_PDEATHSIG, PR_SET_CHILD_SUBREAPER = 1, 36
SI_KERNEL = 0x80  # si_code of a signal the terminal (the kernel) sent

RED, RESET = "\x1b[31m", "\x1b[0m"


# Linux has sigtimedwait, which says who sent a signal; elsewhere (macOS) handlers note
# the signals and the terminal's foreground process group tells where they came from.
HAVE_SIGTIMEDWAIT = hasattr(signal, "sigtimedwait")
_caught: list[int] = []


def _note_signal(signo: int, _frame) -> None:
    _caught.append(signo)


def _in_foreground() -> bool:
    try:
        fd = os.open("/dev/tty", os.O_RDONLY | os.O_NOCTTY)
    except OSError:
        return False
    try:
        return os.tcgetpgrp(fd) == os.getpgrp()
    except OSError:
        return False
    finally:
        os.close(fd)


class CaptureError(Exception):
    """Something that stops a capture before it starts: a one-line message, exit status 2."""


@dataclass
class RunOptions:
    command: list[str]
    module: str | None = None
    spy: str | None = None
    opensc_debug: int | None = None
    pcsc: bool = False
    output: str | None = None
    quiet: bool = False
    env: dict[str, str] = field(default_factory=dict)  # more for the program's environment


@dataclass
class _Capture:
    name: str  # the format
    label: str  # what the user reads
    fifo: str
    stream: Stream
    reader: int = -1
    keeper: int = -1  # our own write end: no EOF before the program has ended
    path: str | None = None  # the redacted trace
    eof: bool = False


@dataclass
class Outcome:
    status: int  # waitpid status of the program
    traces: dict[str, str] = field(default_factory=dict)


def _prctl(option: int, value: int) -> None:
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(option, value, 0, 0, 0)


def _child_setup() -> None:
    """In the child, before exec: signals as a shell would leave them, and die with pkspy."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, FORWARDED)
    if sys.platform.startswith("linux"):
        _prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def output_paths(output: str, names: list[str]) -> dict[str, str]:
    """Where each stream's redacted trace goes: OUTPUT itself for one stream; for several,
    OUTPUT with the format before its extension (or FORMAT.log inside a directory)."""
    if os.path.isdir(output):
        return {n: os.path.join(output, f"{n}.log") for n in names}
    if len(names) == 1:
        return {names[0]: output}
    stem, ext = os.path.splitext(output)
    return {n: f"{stem}.{n}{ext or '.log'}" for n in names}


def _descendants() -> list[int]:
    """Live processes below this one (Linux /proc), deepest last."""
    me = os.getpid()
    parents: dict[int, int] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return []
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            stat = Path("/proc", entry, "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2:].split()
        if fields and fields[0] != "Z":
            parents[int(entry)] = int(fields[1])
    out = []
    for pid in parents:
        p, seen = pid, 0
        while p in parents and seen < 64:
            p = parents[p]
            seen += 1
            if p == me:
                out.append(pid)
                break
    return out


def _name(pid: int) -> str:
    try:
        return Path("/proc", str(pid), "comm").read_text().strip()
    except OSError:
        return "?"


class _Runner:
    def __init__(self, opts: RunOptions, err: TextIO) -> None:
        self.opts = opts
        self.err = err
        self.colour = err.isatty() and not os.environ.get("NO_COLOR")
        self.captures: list[_Capture] = []
        self.redact = Redactor()
        self.child: subprocess.Popen | None = None
        self.status: int | None = None
        self.ended = 0.0  # when the program ended (monotonic)
        self.impatient = False  # a signal came after it ended: stop waiting for leftovers
        self.files: list = []

    # -- messages ------------------------------------------------------------------------

    def say(self, message: str) -> None:
        with contextlib.suppress(OSError, ValueError):
            self.err.write(f"pkspy: {message}\n")
            self.err.flush()

    def _show(self, label: str, event: Event) -> None:
        if self.opts.quiet or not is_shown(event):
            return
        line = format_event(event)
        if len(self.captures) > 1:
            line = f"[{label}] {line}"
        if self.colour and is_failure(event):
            line = RED + line + RESET
        try:
            self.err.write(line + "\n")
            self.err.flush()
        except (OSError, ValueError):
            self.opts.quiet = True  # nobody reads the tail any more: keep capturing

    # -- setting up ------------------------------------------------------------------------

    def prepare(self, tmp: Path) -> tuple[list[str], dict[str, str]]:
        opts = self.opts
        argv = list(opts.command)
        env = dict(os.environ, **opts.env)
        changes: dict[str, str | None] = {}
        notes: list[str] = []
        wanted: list[tuple[str, str, str]] = []  # (format, label, fifo path)

        try:
            spy: str | None = locate.find_spy(opts.spy)
            missing = None
        except locate.NotFound as e:
            spy, missing = None, str(e)
        try:
            plan = inject.place_pkcs11_spy(argv, opts.module, spy or "pkcs11-spy.so", tmp, env)
        except inject.CannotPlace as e:
            raise CaptureError(f"cannot put pkcs11-spy in the path of {argv[0]}: {e}") from None
        if plan is not None:
            if missing:
                raise CaptureError(missing)
            argv = plan.argv
            fifo = str(tmp / "pkcs11-spy")
            changes.update(plan.env)
            changes["PKCS11SPY_OUTPUT"] = fifo
            notes += plan.notes
            wanted.append(("pkcs11-spy", "spy", fifo))
        if opts.opensc_debug is not None:
            fifo = str(tmp / "opensc-debug")
            path, note = inject.opensc_conf(opts.opensc_debug, fifo, tmp)
            changes["OPENSC_CONF"] = path
            notes.append(note)
            wanted.append(("opensc-debug", "opensc", fifo))
        if opts.pcsc:
            try:
                pcsc_env, fifo, note = inject.pcsc_spy(tmp, env)
            except locate.NotFound as e:
                raise CaptureError(str(e)) from None
            changes.update(pcsc_env)
            notes.append(note)
            wanted.append(("pcsc-spy-raw", "pcsc", fifo))
        if not wanted:
            raise CaptureError(
                f"nothing to capture: pkspy does not see which PKCS#11 module "
                f"{os.path.basename(argv[0])} loads; give --module REAL.so, or trace OpenSC "
                "with --opensc-debug LEVEL or PC/SC with --pcsc")

        paths = output_paths(opts.output, [w[0] for w in wanted]) if opts.output else {}
        for fmt, label, fifo in wanted:
            writer = None
            if fmt in paths:
                try:
                    out = open_private(paths[fmt])
                except OSError as e:
                    raise CaptureError(f"{paths[fmt]}: {e.strerror}") from None
                self.files.append(out)
                writer = TraceWriter(out, self.redact)
            os.mkfifo(fifo, 0o600)
            # Our reader first (non-blocking, so it does not wait for a writer), then a
            # writer of our own that keeps the FIFO from reading EOF between processes.
            reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
            keeper = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
            stream = Stream(fmt, self.redact, writer,
                            on_event=lambda e, label=label: self._show(label, e))
            self.captures.append(_Capture(name=fmt, label=label, fifo=fifo, stream=stream,
                                          reader=reader, keeper=keeper, path=paths.get(fmt)))
        for key, value in changes.items():
            if value is None:
                env.pop(key, None)
            else:
                env[key] = value
        if not opts.quiet:
            for note in notes:
                self.say(note)
        return argv, env

    # -- running -----------------------------------------------------------------------------

    def start(self, argv: list[str], env: dict[str, str]) -> None:
        if sys.platform.startswith("linux"):
            _prctl(PR_SET_CHILD_SUBREAPER, 1)
        try:
            self.child = subprocess.Popen(argv, env=env, preexec_fn=_child_setup)
        except FileNotFoundError:
            raise CaptureError(f"{argv[0]}: command not found") from None
        except PermissionError:
            raise CaptureError(f"{argv[0]}: permission denied") from None
        except OSError as e:
            raise CaptureError(f"{argv[0]}: {e.strerror}") from None

    def _read(self, capture: _Capture, sel: selectors.BaseSelector) -> None:
        for _ in range(16):  # then let the others and the signals have a turn
            try:
                data = os.read(capture.reader, READ_SIZE)
            except BlockingIOError:
                return
            if not data:
                self._end(capture, sel)
                return
            capture.stream.feed(data)

    def _end(self, capture: _Capture, sel: selectors.BaseSelector) -> None:
        if capture.eof:
            return
        capture.eof = True
        with contextlib.suppress(KeyError, ValueError):
            sel.unregister(capture.reader)
        capture.stream.close()

    def _signals(self) -> None:
        if not HAVE_SIGTIMEDWAIT:
            while _caught:
                signo = _caught.pop(0)
                # No siginfo here: Ctrl-C and Ctrl-\\ count as the terminal's when pkspy
                # (and so the program) is in the terminal's foreground process group.
                terminal = signo in (signal.SIGINT, signal.SIGQUIT) and _in_foreground()
                self._forward(signo, SI_KERNEL if terminal else 0, 0)
            return
        while True:
            try:
                info = signal.sigtimedwait(FORWARDED, 0)
            except InterruptedError:
                continue
            if info is None:
                return
            self._forward(info.si_signo, info.si_code, info.si_pid)

    def _forward(self, signo: int, code: int, sender: int) -> None:
        child = self.child
        if self.status is not None:
            self.impatient = True  # the program ended: a signal cuts the wait short
            return
        if child is None or sender == child.pid:
            return
        if code == SI_KERNEL:
            return  # from the terminal: the program, in our process group, has it too
        with contextlib.suppress(ProcessLookupError):
            os.kill(child.pid, signo)

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if self.child is not None and pid == self.child.pid:
                self.status = status
                self.child.returncode = os.waitstatus_to_exitcode(status)
                self.ended = time.monotonic()
                for c in self.captures:  # from now on, EOF once the program's writers close
                    if c.keeper >= 0:
                        os.close(c.keeper)
                        c.keeper = -1

    def loop(self) -> None:
        sel = selectors.DefaultSelector()
        for c in self.captures:
            sel.register(c.reader, selectors.EVENT_READ, c)
        stopping: float | None = None
        killed = False
        while True:
            for key, _ in sel.select(POLL):
                self._read(key.data, sel)
            self._signals()
            self._reap()
            if self.status is None:
                continue
            left = _descendants()
            if all(c.eof for c in self.captures) and not left:
                return
            now = time.monotonic()
            waited = now - self.ended
            if left and stopping is None and (waited > GRACE or self.impatient):
                self.say(f"stopping {len(left)} process(es) the program left running: "
                         + ", ".join(f"{pid} ({_name(pid)})" for pid in left))
                for pid in left:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGTERM)
                stopping = now
            elif left and stopping is not None and not killed and now - stopping > STOP_WAIT:
                for pid in left:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                killed = True
            elif not left and (waited > GRACE or self.impatient):
                # A process that is not ours still holds a FIFO open: stop reading it.
                for c in self.captures:
                    if not c.eof:
                        self.say(f"{c.label}: a process pkspy did not start still holds the "
                                 "trace open; what it writes now is not read")
                        self._end(c, sel)
                return

    def stop_child(self) -> None:
        """After an error of pkspy's own: the program must not outlive it."""
        child = self.child
        if child is None or self.status is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            child.terminate()
        try:
            child.wait(STOP_WAIT)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
        self.status = 0

    def close(self) -> None:
        for c in self.captures:
            for fd in (c.reader, c.keeper):
                if fd >= 0:
                    with contextlib.suppress(OSError):
                        os.close(fd)
            c.reader = c.keeper = -1
            if not c.eof:
                c.eof = True
                with contextlib.suppress(Exception):
                    c.stream.close()
        for f in self.files:
            with contextlib.suppress(OSError):
                f.close()

    def report(self) -> dict[str, str]:
        traces = {}
        for c in self.captures:
            s = c.stream
            if s.bytes == 0:
                why = {"pkcs11-spy": "the program never loaded the spy: it stopped before, "
                                     "or it loads its module where pkspy could not put the "
                                     "spy",
                       "opensc-debug": "the program did not use OpenSC (or logged nothing)",
                       "pcsc-spy-raw": "the program made no PC/SC call through libpcsclite"}
                self.say(f"{c.label}: no trace came ({why[c.name]})")
                if c.path:
                    with contextlib.suppress(OSError):
                        os.unlink(c.path)  # the empty file pkspy made for it
                continue
            if c.path:
                writer = s.writer
                lost = f", {len(writer.lost)} line(s) no event returned left out" \
                    if writer and writer.lost else ""
                self.say(f"wrote {c.path} ({c.name}, {writer.written if writer else 0} lines, "
                         f"redacted{lost})")
                traces[c.name] = c.path
        return traces


def run(opts: RunOptions, err: TextIO | None = None) -> Outcome:
    """Run the command under the tracers; raise CaptureError before it starts."""
    err = err if err is not None else sys.stderr
    if not opts.command:
        raise CaptureError("no command to run (pkspy run [OPTIONS] -- COMMAND [ARGS...])")
    if opts.output:
        parent = os.path.dirname(os.path.abspath(opts.output))
        if not os.path.isdir(parent):
            raise CaptureError(f"{opts.output}: no such directory {parent}")
    runner = _Runner(opts, err)
    # From here on a signal that comes while pkspy sets up waits for the program.
    old_handlers = {}
    if HAVE_SIGTIMEDWAIT:
        old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, FORWARDED)
    else:
        old_handlers = {s: signal.signal(s, _note_signal) for s in FORWARDED}
    tmp = Path(tempfile.mkdtemp(prefix="pkspy-run-"))
    try:
        argv, env = runner.prepare(tmp)
        runner.start(argv, env)
        runner.loop()
        traces = runner.report()
    finally:
        runner.stop_child()
        runner.close()
        shutil.rmtree(tmp, ignore_errors=True)
        if sys.platform.startswith("linux"):
            _prctl(PR_SET_CHILD_SUBREAPER, 0)
        # signals that came while the program was ending: nothing left to forward them to
        if HAVE_SIGTIMEDWAIT:
            for signo in signal.sigpending() & set(FORWARDED):
                with contextlib.suppress(Exception):
                    signal.sigtimedwait({signo}, 0)
            signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
        else:
            _caught.clear()
            for signo, handler in old_handlers.items():
                signal.signal(signo, handler)
    assert runner.status is not None
    return Outcome(status=runner.status, traces=traces)


def exit_like(status: int, err: TextIO | None = None) -> int:
    """The exit code for a waitpid status; for a signal, pkspy dies of the same signal
    (core dumps off), as timeout(1) does, so its caller sees what the program did."""
    if os.WIFEXITED(status):
        return os.WEXITSTATUS(status)
    signo = os.WTERMSIG(status)
    name = signal.Signals(signo).name if signo in signal.Signals._value2member_map_ else signo
    with contextlib.suppress(OSError, ValueError):
        (err or sys.stderr).write(f"pkspy: the program was killed by {name}\n")
        (err or sys.stderr).flush()
    with contextlib.suppress(Exception):
        import resource

        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if signo not in (signal.SIGKILL, signal.SIGSTOP):  # these two have no handler to reset
        with contextlib.suppress(Exception):
            signal.signal(signo, signal.SIG_DFL)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signo})
    with contextlib.suppress(Exception):
        sys.stdout.flush()
        os.kill(os.getpid(), signo)
        time.sleep(1)
    return 128 + signo
