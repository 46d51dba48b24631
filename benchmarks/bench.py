"""Speed and memory of pkspy next to grep and wc on the same file.

    python benchmarks/bench.py [--size 100] [--size 1000] [--keep DIR]

Builds large traces from the real fixtures (a pkcs11-spy log and an OpenSC
debug log, repeated until the size in MB is reached, each repeat a new run),
then runs, on each: ``wc -l`` and ``grep -c`` (the baseline), ``pkspy summary
--json``, ``pkspy tail --no-follow`` to /dev/null, and measures how long a
record appended to a followed file takes to appear in ``pkspy tail``. Each
command's wall time, MB/s, ratio to grep and peak memory (its own maxrss,
from wait4) go into a table. Nothing is asserted: the numbers are for the
README and for whoever changes a parser.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
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


def build(source: Path, target: Path, megabytes: int) -> None:
    """Repeat a real trace until it reaches the size (each copy is a new run)."""
    chunk = source.read_bytes()
    want = megabytes * 1024 * 1024
    with open(target, "wb") as f:
        written = 0
        while written < want:
            f.write(chunk)
            written += len(chunk)


TIME = shutil.which("time", path="/usr/bin:/bin")  # GNU time: the command's own peak RSS


def run(cmd: list[str]) -> tuple[float, int]:
    """Wall seconds and peak memory (KiB) of one command.

    GNU time reports the command's own peak; without it, wait4's maxrss also
    counts the Python process the command was forked from (about 15 MB).
    """
    with tempfile.NamedTemporaryFile("r") as report:
        wrapped = [TIME, "-f", "%M", "-o", report.name, *cmd] if TIME else cmd
        start = time.perf_counter()
        proc = subprocess.Popen(wrapped, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                cwd=ROOT)
        _pid, _status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
        peak = int(report.read().split()[-1]) if TIME else usage.ru_maxrss
    return seconds, peak


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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, action="append", help="MB per trace (repeatable)")
    ap.add_argument("--keep", help="build the traces in this directory and keep them")
    args = ap.parse_args()
    sizes = args.size or [100]
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="pkspy-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"# {platform.node()}: {os.cpu_count()} cores, Python {platform.python_version()},"
          f" {platform.platform()}; peak memory from {'GNU time' if TIME else 'wait4'}")
    print(f"{'trace':<26} {'command':<24} {'seconds':>8} {'MB/s':>8} {'x grep':>7} {'peak MB':>8}")
    try:
        for fmt, source in SOURCES.items():
            for size in sizes:
                trace = work / f"{fmt}-{size}MB.log"
                if not trace.exists():
                    build(source, trace, size)
                mb = trace.stat().st_size / 1e6
                pattern = "^Returned:" if fmt == "pkcs11-spy" else "APDU ("
                rows = [("wc -l", ["wc", "-l", str(trace)]),
                        ("grep -c", ["grep", "-c", pattern, str(trace)]),
                        ("pkspy summary --json", [*PKSPY, "summary", "--json", str(trace)]),
                        ("pkspy tail --no-follow", [*PKSPY, "tail", "--no-follow", str(trace)])]
                grep = None
                for name, cmd in rows:
                    seconds, peak = run(cmd)
                    grep = seconds if name == "grep -c" else grep
                    ratio = f"{seconds / grep:7.1f}" if grep and name.startswith("pkspy") else ""
                    print(f"{trace.name:<26} {name:<24} {seconds:8.2f} {mb / seconds:8.1f} "
                          f"{ratio:>7} {peak / 1024:8.1f}", flush=True)
            if fmt == "pkcs11-spy":
                followed = work / "followed.log"
                shutil.copy(source, followed)
                record = (b"\n99: C_Finalize\n2026-11-27 14:46:05.994\n"
                          b"Returned:  0 CKR_OK\n")
                latency = follow_latency(followed, record)
                print(f"{'followed.log':<26} {'tail: appended record':<24} {latency:8.3f}")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
