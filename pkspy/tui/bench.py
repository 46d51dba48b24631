"""How fast ``pkspy view`` opens a trace: a headless measurement, not a test.

    python -m pkspy.tui.bench FILE [WIDTHxHEIGHT] [--first-screen]

prints the time from start (imports included) to the first screen with rows,
to the full index, the rows, and the peak resident memory of the process;
with --first-screen it stops at the first screen (a 1 GB index takes minutes)
and prints the CPU time the process used until then too (the interpreter's own
start included): on a loaded machine it varies less than the elapsed time.
"""

from __future__ import annotations

import time

START = time.perf_counter()

import asyncio  # noqa: E402
import os  # noqa: E402
import resource  # noqa: E402
import sys  # noqa: E402


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__.strip())
        return 2
    first_only = "--first-screen" in argv
    argv = [a for a in argv if a != "--first-screen"]
    path = argv[0]
    width, height = (int(n) for n in (argv[1] if len(argv) > 1 else "120x40").split("x"))
    from pkspy.tui.app import ViewerApp
    from pkspy.tui.index import open_traces

    async def go() -> None:
        traces = open_traces([path])
        made = time.perf_counter() - START
        app = ViewerApp(traces)  # app.indexed_at counts from here
        async with app.run_test(size=(width, height)) as pilot:
            while app.timeline.painted_at is None:  # not pilot.pause: it waits for idle
                await asyncio.sleep(0.005)
            first = made + app.timeline.painted_at - app.started
            if first_only:
                cpu = time.process_time()
                peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
                print(f"first screen  {first:.2f} s")
                print(f"cpu time      {cpu:.2f} s (to about the first screen)")
                print(f"peak memory   {peak:.0f} MB (resident)")
                return
            while not app.indexed:
                await pilot.pause(0.5)  # seldom: the indexer shares the GIL with this loop
            full = made + app.indexed_at
        size = os.path.getsize(path) / 1e6
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"{path}: {size:.1f} MB, {app.rows.n:,} rows")
        print(f"first screen  {first:.2f} s")
        print(f"full index    {full:.2f} s ({size / full:.1f} MB/s)")
        print(f"peak memory   {peak:.0f} MB (resident)")

    asyncio.run(go())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
