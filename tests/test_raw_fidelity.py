"""Every event keeps the exact source lines it came from, each at its line number,
and every non-blank line of a trace lands in some event: views can jump back to
the text, and `pkspy redact` can write the trace back in its own format."""

from __future__ import annotations

from collections import Counter

import pytest
from conftest import ROOT

from pkspy.pipeline import open_events
from pkspy.sources import decode

TRACES = sorted(p for d in ("pkcs11-spy", "opensc-debug", "pcsc-spy", "pcscd",
                                  "p11-kit", "pkcs11-logger")
                for p in (ROOT / "fixtures" / d).glob("*")
                if p.suffix in (".log", ".raw", ".txt") and p.name != "README.md")


@pytest.mark.parametrize("trace", TRACES, ids=lambda p: p.name)
def test_raw_lines_are_source_lines(trace):
    try:
        events = open_events(str(trace), reveal=True)[1]
    except Exception as e:  # a format not read yet is not this test's business
        pytest.skip(str(e))
    source = [decode(line) for line in trace.read_bytes().splitlines(keepends=True)]
    seen: Counter[int] = Counter()
    for event in events:
        numbers = event.source_lines()
        assert len(numbers) == len(event.raw), event
        for n, text in zip(numbers, event.raw, strict=True):
            assert source[n - 1] == text, (n, text)
            seen[n] += 1
    missing = [n for n, text in enumerate(source, 1) if text.strip() and not seen[n]]
    assert not missing, missing[:10]
    assert not [n for n, c in seen.items() if c > 1]
