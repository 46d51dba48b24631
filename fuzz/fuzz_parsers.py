"""Coverage-guided fuzzing of every parser with atheris (pip install atheris), for
longer runs than CI gives the hypothesis tests (tests/test_fuzz_parsers.py).

The first byte picks the parser, the rest is the trace. Each input goes through the
real line reader, the parser, the redactor and the one-line view, and must keep the
invariants the tests check: no exception, every non-blank line in exactly one event.

    python3 fuzz/seed_corpus.py fuzz/corpus
    python3 fuzz/fuzz_parsers.py fuzz/corpus -max_total_time=600

A crash leaves crash-<sha1> here; replay it with ``python3 fuzz/fuzz_parsers.py FILE``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import atheris

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

with atheris.instrument_imports(include=["pkspy", "decoders"]):
    from pkspy import formats

from test_fuzz_parsers import check_every_line_once, parse_bytes, shown  # noqa: E402

NAMES = formats.names()


def one_input(data: bytes) -> None:
    if not data:
        return
    fmt, trace = NAMES[data[0] % len(NAMES)], data[1:]
    events = parse_bytes(trace, fmt)
    check_every_line_once(trace, events)
    for event in events:
        shown(event)


def main() -> None:
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
