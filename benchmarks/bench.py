"""Speed and memory of pkspy next to grep and wc on the same file.

    python benchmarks/bench.py [--size 100] [--size 1000] [--keep DIR] [--view-limit 600]
                               [--skip tail,view,follow]

Builds large traces from the real fixtures (a pkcs11-spy log and an OpenSC
debug log), repeated until the size in MB is reached, each repeat renumbered
as a new run: its times move on by the fixture's length, and in the OpenSC
log its process and thread ids are new (the spy numbers calls from 0 in every
run, as the real one does). Then it runs, on each: ``wc -l`` and ``grep -c``
(the baseline), ``pkspy summary --json``, ``pkspy tail --no-follow`` to
/dev/null and ``pkspy view`` headless (``pkspy.tui.bench``: the first decoded
screen and the complete index), and measures how long a record appended to a
followed file takes to appear in ``pkspy tail``. Each command's wall time,
MB/s, ratio to grep and peak memory (its own maxrss) go into a table. Nothing
is asserted: the numbers are for the README and for whoever changes a parser.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCES = {
    "pkcs11-spy": ROOT / "fixtures/pkcs11-spy/softhsm2-pkcs11-tool.log",
    "opensc-debug": ROOT / "fixtures/opensc-debug/pkcs11-tool-L-d9.log",
}
PKSPY = [sys.executable, "-m", "pkspy"]
# The fields a new run changes: a spy record's date and time; an OpenSC header's
# process id, thread id and time of day.
FIELDS = {
    "pkcs11-spy": re.compile(rb"^(?P<stamp>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3})",
                             re.MULTILINE),
    "opensc-debug": re.compile(rb"^P:(?P<pid>\d+); T:(?:0x)?(?P<tid>\d+) "
                               rb"(?P<clock>\d\d:\d\d:\d\d\.\d{3}) ", re.MULTILINE),
}
DAY_MS = 86_400_000


def _ms(kind: str, value: bytes) -> int:
    if kind == "stamp":
        t = datetime.datetime.strptime(value.decode(), "%Y-%m-%d %H:%M:%S.%f")
        return int(t.replace(tzinfo=datetime.timezone.utc).timestamp() * 1000)
    h, m, s = value.decode().split(":")
    return (int(h) * 3600 + int(m) * 60) * 1000 + round(float(s) * 1000)


def _format(kind: str, ms: int) -> bytes:
    if kind == "stamp":
        t = datetime.datetime.fromtimestamp(ms / 1000, datetime.timezone.utc)
        return t.strftime("%Y-%m-%d %H:%M:%S.").encode() + b"%03d" % (ms % 1000)
    ms %= DAY_MS  # the OpenSC header has no date: past midnight it starts again at 00:00
    return b"%02d:%02d:%02d.%03d" % (ms // 3_600_000, ms // 60_000 % 60, ms // 1000 % 60,
                                     ms % 1000)


class Renumber:
    """A trace split around the fields a new run changes, to write run after run."""

    def __init__(self, fmt: str, data: bytes) -> None:
        self.pieces: list[bytes | tuple[str, bytes]] = []
        at = 0
        for m in FIELDS[fmt].finditer(data):
            for kind, value in m.groupdict().items():
                if value is not None:
                    self.pieces += [data[at:m.start(kind)], (kind, value)]
                    at = m.end(kind)
        self.pieces.append(data[at:])
        times = [_ms(k, v) for p in self.pieces if isinstance(p, tuple)
                 for k, v in [p] if k in ("stamp", "clock")]
        self.period = (max(times) - min(times) + 1000) if times else 0  # a second between runs

    def run(self, n: int) -> bytes:
        """The trace as the n-th run (0: as it is)."""
        memo: dict[tuple[str, bytes], bytes] = {}
        out = []
        for p in self.pieces:
            if isinstance(p, bytes):
                out.append(p)
                continue
            new = memo.get(p)
            if new is None:
                kind, value = p
                if kind in ("pid", "tid"):
                    new = b"%d" % (int(value) + n)
                else:
                    new = _format(kind, _ms(kind, value) + n * self.period)
                memo[p] = new
            out.append(new)
        return b"".join(out)


def build(fmt: str, source: Path, target: Path, megabytes: int) -> None:
    """Repeat a real trace until it reaches the size, each copy renumbered as a new run."""
    runs = Renumber(fmt, source.read_bytes())
    want = megabytes * 1024 * 1024
    with open(target, "wb") as f:
        written = n = 0
        while written < want:
            chunk = runs.run(n)
            f.write(chunk)
            written += len(chunk)
            n += 1


TIME = shutil.which("time", path="/usr/bin:/bin")  # GNU time: the command's own peak RSS


def run(cmd: list[str], timeout: float | None = None) -> tuple[float, float, int, str]:
    """Wall seconds, CPU seconds, peak memory (KiB) and output of one command.

    GNU time reports the command's own peak; without it, wait4's maxrss also
    counts the Python process the command was forked from (about 15 MB).
    CPU seconds (user + system, its worker processes included) say what the
    command costs when other programs share the cores. A command still running
    after ``timeout`` seconds is stopped: (inf, 0, 0, "").
    """
    with tempfile.NamedTemporaryFile("r") as report, tempfile.TemporaryFile("w+") as out:
        wrapped = [TIME, "-f", "%M %U %S", "-o", report.name, *cmd] if TIME else cmd
        start = time.perf_counter()
        proc = subprocess.Popen(wrapped, stdout=out, stderr=subprocess.DEVNULL, cwd=ROOT)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            return float("inf"), 0.0, 0, ""
        seconds = time.perf_counter() - start
        peak, user, system = report.read().split()[-3:] if TIME else (0, 0, 0)
        out.seek(0)
        return seconds, float(user) + float(system), int(peak), out.read()


def follow_latency(trace: Path, record: bytes, tries: int = 9) -> float:
    """Median seconds from appending a record to seeing its line in pkspy tail."""
    proc = subprocess.Popen([*PKSPY, "tail", "-n", "0", str(trace)], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, cwd=ROOT)
    try:
        time.sleep(2.0)  # let it read to the end
        seen = []
        os.set_blocking(proc.stdout.fileno(), False)
        for _ in range(tries):
            with open(trace, "ab") as f:
                start = time.perf_counter()
                f.write(record)
            buf = b""
            while b"\n" not in buf and time.perf_counter() - start < 5:
                chunk = proc.stdout.read()
                if chunk:
                    buf += chunk
                else:
                    time.sleep(0.001)
            seen.append(time.perf_counter() - start)
            time.sleep(0.2 + random.random() * 0.05)  # not in step with tail's 50 ms poll
        return sorted(seen)[len(seen) // 2]
    finally:
        proc.terminate()
        proc.wait()


VIEW = re.compile(r"first screen +([0-9.]+) s.*full index +([0-9.]+) s", re.DOTALL)
FIRST = re.compile(r"first screen +([0-9.]+) s")


def row(trace: str, name: str, seconds: float, mb: float, grep: float | None,
        peak: int, cpu: float | None = None) -> None:
    if seconds == float("inf"):
        print(f"{trace:<26} {name:<28} {'stopped':>8}", flush=True)
        return
    ratio = f"{seconds / grep:7.1f}" if grep and name.startswith("pkspy") else ""
    rate = f"{mb / seconds:8.1f}" if seconds and mb else ""
    cpu_text = f"{cpu:8.2f}" if cpu is not None else ""
    print(f"{trace:<26} {name:<28} {seconds:8.2f} {rate:>8} {ratio:>7} {cpu_text:>8} "
          f"{peak / 1024:8.1f}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, action="append", help="MB per trace (repeatable)")
    ap.add_argument("--keep", help="build the traces in this directory and keep them")
    ap.add_argument("--skip", default="", help="leave out some of: tail,view,index,follow "
                    "(pkspy tail and view's full index take minutes on 1 GB; 'index' "
                    "keeps view's first screen)")
    ap.add_argument("--view-limit", type=float, default=600,
                    help="stop pkspy view's indexing after this many seconds")
    args = ap.parse_args()
    sizes = args.size or [100]
    skip = set(filter(None, args.skip.split(",")))
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="pkspy-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text()
                .splitlines() if line.startswith("model name")), platform.processor()) \
        if Path("/proc/cpuinfo").exists() else platform.processor()
    print(f"# {os.cpu_count()} cores ({cpu}), Python {platform.python_version()},"
          f" {platform.platform()}; peak memory from {'GNU time' if TIME else 'nothing'}")
    print(f"{'trace':<26} {'command':<28} {'seconds':>8} {'MB/s':>8} {'x grep':>7} "
          f"{'CPU s':>8} {'peak MB':>8}")
    try:
        for fmt, source in SOURCES.items():
            for size in sizes:
                trace = work / f"{fmt}-{size}MB.log"
                if not trace.exists():
                    build(fmt, source, trace, size)
                mb = trace.stat().st_size / 1e6
                pattern = "^Returned:" if fmt == "pkcs11-spy" else "APDU ("
                grep = None
                for name, cmd in [("wc -l", ["wc", "-l", str(trace)]),
                                  ("grep -c", ["grep", "-c", pattern, str(trace)]),
                                  ("pkspy summary --json", [*PKSPY, "summary", "--json",
                                                            str(trace)]),
                                  ("pkspy tail --no-follow", [*PKSPY, "tail", "--no-follow",
                                                              str(trace)])]:
                    if name.startswith("pkspy tail") and "tail" in skip:
                        continue
                    seconds, cpu, peak, _ = run(cmd)
                    grep = seconds if name == "grep -c" else grep
                    row(trace.name, name, seconds, mb, grep, peak, cpu)
                if "view" in skip:
                    continue
                view = [sys.executable, "-m", "pkspy.tui.bench", str(trace)]
                if "index" in skip:
                    view.append("--first-screen")
                seconds, cpu, peak, out = run(view, timeout=args.view_limit)
                m = VIEW.search(out)
                first = FIRST.search(out)
                if "index" in skip and first:
                    row(trace.name, "pkspy view: first screen", float(first.group(1)), 0, None,
                        peak)
                elif m:
                    row(trace.name, "pkspy view: first screen", float(m.group(1)), 0, None,
                        peak)
                    row(trace.name, "pkspy view: full index", float(m.group(2)), mb, grep,
                        peak, cpu)
                else:
                    print(f"{trace.name:<26} {'pkspy view':<28} "
                          f"{'stopped' if seconds == float('inf') else 'failed'}",
                          flush=True)
            if fmt == "pkcs11-spy" and "follow" not in skip:
                followed = work / "followed.log"
                shutil.copy(source, followed)
                record = (b"\n99: C_Finalize\n2026-11-27 14:46:05.994\n"
                          b"Returned:  0 CKR_OK\n")
                latency = follow_latency(followed, record)
                print(f"{'followed.log':<26} {'tail: appended record shown':<28} {latency:8.3f}",
                      flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
