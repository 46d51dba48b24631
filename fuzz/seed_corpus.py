"""Seed corpus for fuzz/fuzz_parsers.py, from the real fixtures.

Each seed is one byte that picks the parser (its index in pkspy.formats.names())
and then a window of a fixture cut at line boundaries: the fuzzer starts from
real records of every format and mutates from there.

    python3 fuzz/seed_corpus.py fuzz/corpus
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from fuzz_mutations import TRACES, lines_of  # noqa: E402

from pkspy import formats  # noqa: E402

WINDOW_LINES = 120
PER_TRACE = 12  # windows of each fixture, spread over it


def seeds() -> list[bytes]:
    names = formats.names()
    out = []
    for path, fmt in sorted(TRACES.items()):
        lines = lines_of(path)
        step = max(1, len(lines) // PER_TRACE)
        for start in range(0, len(lines), step):
            data = b"".join(lines[start:start + WINDOW_LINES])
            # its own parser (every parser, for a format none detects yet)
            for name in [fmt] if fmt else names:
                out.append(bytes([names.index(name)]) + data)
            if fmt and start == 0:  # and a window of CRLF text, as Windows writes it
                out.append(bytes([names.index(fmt)]) + data.replace(b"\n", b"\r\n"))
    return out


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[-1].strip(), file=sys.stderr)
        return 2
    corpus = Path(argv[1])
    corpus.mkdir(parents=True, exist_ok=True)
    made = seeds()
    for seed in made:
        (corpus / hashlib.sha1(seed).hexdigest()).write_bytes(seed)
    print(f"{len(made)} seeds in {corpus}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
