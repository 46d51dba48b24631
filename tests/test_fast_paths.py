"""The parallel summary (pkspy/fastscan.py) gives what the sequential full decoder gives.

No timings here: the benchmark (benchmarks/bench.py) measures speed. These
tests cut real traces into many small chunks, so every cut, merge and check of
the parallel path runs on fixtures, and compare the result with the sequential
summary to the byte.
"""

from __future__ import annotations

import importlib.util
import io
import json
import re
from pathlib import Path

import pytest
from conftest import ROOT, SPY_TRACES, fixture_secret_forms
from hypothesis import given
from hypothesis import strategies as st

from pkspy import analysis, fastscan
from pkspy.analysis import Analysis
from pkspy.pipeline import open_events
from pkspy.report import summary

FIXTURES = sorted(p for p in (ROOT / "fixtures").glob("*/*")
                  if p.is_file() and p.suffix not in (".json", ".md", ".py"))
SPY_TOOL = ROOT / "fixtures/pkcs11-spy/softhsm2-pkcs11-tool.log"
SPY_THREADS = ROOT / "fixtures/pkcs11-spy/softhsm2-threads.log"
SPY_PYKCS11 = ROOT / "fixtures/pkcs11-spy/softhsm2-pykcs11.log"


def _bench():
    spec = importlib.util.spec_from_file_location("bench", ROOT / "benchmarks/bench.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def renumbered(sources: list[Path], runs: int, target: Path,
               fmt: str = "pkcs11-spy") -> Path:
    """Each source ``runs`` times, renumbered as new runs the way the benchmark does
    (OpenSC logs: each source and run a process id of its own)."""
    bench = _bench()
    with open(target, "wb") as f:
        for n in range(runs):
            for i, src in enumerate(sources):
                f.write(bench.Renumber(fmt, src.read_bytes()).run(n + 100 * i))
    return target


def chunks(trace: Path, pieces: int, fmt: str) -> list[tuple[int, int]]:
    """The byte ranges fastscan reads apart (OpenSC: no process in two of them)."""
    ranges = fastscan.cut(str(trace), trace.stat().st_size, pieces, fmt)
    if fmt == fastscan.DEBUG_FORMAT:
        counts = [fastscan.count(str(trace), a, b, fmt) for a, b in ranges]
        ranges, _ = fastscan.join_shared(ranges, counts)
    return ranges


def sequential(path: Path) -> str:
    return json.dumps(summary.summarize(str(path), parallel=False))


def parallel(path: Path, pieces: int, stats: dict | None = None) -> str:
    """The summary on two workers from ``pieces`` chunks (it must not fall back)."""
    fmt, events = open_events(str(path))
    events.close()
    result = fastscan.summarize(str(path), fmt, workers=2, pieces=pieces, stats=stats)
    assert result is not None, "fell back to the sequential path"
    return json.dumps(result)


@pytest.mark.parametrize("trace", FIXTURES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_fixture_summary_is_the_full_decoders(trace: Path) -> None:
    """pkcs11-spy logs with two runs or more, OpenSC logs of processes one after
    the other, are cut; a spy log of one run is read whole with record_memo; every
    other trace is left to the sequential decoder."""
    fmt, events = open_events(str(trace))
    events.close()
    fast = fastscan.summarize(str(trace), fmt, workers=2, pieces=64)
    if fmt == fastscan.FORMAT or (fmt == fastscan.DEBUG_FORMAT
                                  and len(chunks(trace, 64, fmt)) >= 2):
        assert fast is not None
        assert json.dumps(fast) == sequential(trace)
    else:
        assert fast is None  # the sequential decoder's result, not a partial one


@pytest.fixture(scope="module")
def every_spy_fixture(tmp_path_factory) -> tuple[Path, str]:
    trace = renumbered(SPY_TRACES, 2, tmp_path_factory.mktemp("fast") / "all.log")
    return trace, sequential(trace)


@pytest.mark.parametrize("pieces", [3, 17, 1000])
def test_renumbered_concatenation_of_every_spy_fixture(every_spy_fixture, pieces: int) -> None:
    trace, expected = every_spy_fixture
    assert len(fastscan.cut(str(trace), trace.stat().st_size, pieces)) > 2
    assert parallel(trace, pieces) == expected


@pytest.mark.parametrize("pieces", [3, 17, 200])
def test_renumbered_concatenation_of_every_opensc_fixture(tmp_path: Path, pieces: int) -> None:
    """Processes one after the other, with other PINs: cut where one ends; what an
    APDU left unanswered at the end of a chunk is counted at the end of the file."""
    sources = sorted((ROOT / "fixtures/opensc-debug").glob("*.log"))
    trace = renumbered(sources, 2, tmp_path / "debug.log", fmt="opensc-debug")
    assert len(chunks(trace, pieces, "opensc-debug")) > 2
    out = parallel(trace, pieces)
    assert out == sequential(trace)
    for src in sources:
        for form in fixture_secret_forms(src):
            assert form not in out


def test_opensc_processes_side_by_side_are_read_whole(tmp_path: Path) -> None:
    """Two processes whose lines alternate: no cut, the sequential decoder reads it."""
    source = ROOT / "fixtures/opensc-debug/pkcs11-tool-L-d3.log"
    bench = _bench()
    a = bench.Renumber("opensc-debug", source.read_bytes()).run(1).splitlines(keepends=True)
    b = bench.Renumber("opensc-debug", source.read_bytes()).run(2).splitlines(keepends=True)
    trace = tmp_path / "side.log"
    trace.write_bytes(b"".join(x + y for x, y in zip(a, b, strict=False)))
    assert len(fastscan.cut(str(trace), trace.stat().st_size, 50, "opensc-debug")) > 2
    assert chunks(trace, 50, "opensc-debug") == [(0, trace.stat().st_size)]
    assert fastscan.summarize(str(trace), "opensc-debug", workers=2, pieces=50) is None


@given(st.lists(st.tuples(st.sampled_from([b"P:1; ", b"", b"zz"]), st.integers(0, 300)),
                max_size=30), st.integers(0, 300))
def test_blocks_keep_every_newline_and_line_start(lines, tail: int) -> None:
    """Counting reads whole lines a block at a time; of a line longer than a block
    only its start: newlines and headers at line starts are all counted."""
    data = b"".join(head + b"x" * n + b"\n" for head, n in lines) + b"y" * tail
    header = re.compile(rb"^P:1; ", re.MULTILINE)
    saved, fastscan.BLOCK = fastscan.BLOCK, 64
    try:
        blocks = list(fastscan._blocks(io.BytesIO(data), 0, len(data)))
    finally:
        fastscan.BLOCK = saved
    assert all(data[at:at + len(b)] == b for at, b in blocks)
    assert sum(b.count(b"\n") for _, b in blocks) == data.count(b"\n")
    assert sum(len(header.findall(b)) for _, b in blocks) == len(header.findall(data))


BANNER = b"*************** OpenSC PKCS#11 spy *****************"


@given(st.lists(st.sampled_from([b"P:1; a", b"P:12; b", b"P:2; c", b"P:x; d", b"P:", b"xP:1; ",
                                 b"  hex", BANNER, b"x" + BANNER, BANNER + b" " + BANNER,
                                 b"**** OpenSC PKCS#11 spy ****", b""]), max_size=60),
       st.integers(1, 5))
def test_literal_first_counts_equal_the_line_patterns(lines, stretch) -> None:
    """Banners and process ids found from a literal are those the anchored patterns find,
    in stretches of one process and in lines of processes side by side."""
    block = b"".join(line + b"\n" for line in lines for _ in range(stretch))
    assert fastscan._banners(block) == len(fastscan.BANNER_BYTES.findall(block))
    assert fastscan._pids(block) == set(fastscan.PID_LINE.findall(block))


def test_chunks_that_share_a_process_are_joined() -> None:
    ranges = [(0, 10), (10, 20), (20, 30), (30, 40)]
    counts = [(1, 0, {b"7"}), (2, 0, {b"8"}), (3, 0, {b"7", b"9"}), (4, 0, {b"10"})]
    assert fastscan.join_shared(ranges, counts) == (
        [(0, 30), (30, 40)], [(6, 0, {b"7", b"8", b"9"}), (4, 0, {b"10"})])


def test_secrets_learned_in_a_later_run_are_read_again(tmp_path: Path,
                                                       monkeypatch) -> None:
    """Runs with other PINs after the first chunk: the chunks after them are read
    again with what was learned before them, and no PIN shows in any form."""
    trace = renumbered([SPY_PYKCS11, SPY_TOOL, SPY_THREADS], 2, tmp_path / "mixed.log")
    monkeypatch.setattr(fastscan, "FIRST_CHUNK", 1)  # chunk 0 is the first run only
    stats: dict = {}
    out = parallel(trace, 40, stats)
    assert out == sequential(trace)
    assert stats["read_again"] > 0
    for src in (SPY_PYKCS11, SPY_TOOL, SPY_THREADS):
        for form in fixture_secret_forms(src):
            assert form not in out


def test_long_lists_keep_their_first_entries(every_spy_fixture, monkeypatch) -> None:
    """Past analysis.LISTED entries a list only counts: the same in both paths, and
    what is listed plus what is counted is everything."""
    trace, expected = every_spy_fixture
    full = json.loads(expected)
    monkeypatch.setattr(analysis, "LISTED", 7)
    out = parallel(trace, 17)
    assert out == sequential(trace)
    capped = json.loads(out)
    for name in ("failed_calls", "sessions", "logins", "finds", "modules", "objects"):
        assert len(full[name]) > 7
        assert capped[name] == full[name][:7]
        # objects: that some were left out, not how many (that would take memory)
        left_out = None if name == "objects" else len(full[name]) - 7
        assert capped["unlisted"][name] == left_out


def test_calls_before_the_first_banner(tmp_path: Path) -> None:
    """A log whose first run lost its banner: the parser numbers that run 0 and
    the next banner 1, which the byte count of banners alone would not say."""
    data = renumbered([SPY_TOOL], 3, tmp_path / "x.log").read_bytes()
    first = fastscan.BANNER_BYTES.search(data)
    trace = tmp_path / "headless.log"
    trace.write_bytes(data[:first.start()] + data[data.index(b"\n", first.start()) + 1:])
    assert parallel(trace, 50) == sequential(trace)


def test_a_record_cut_short_by_the_next_run(tmp_path: Path) -> None:
    """A run that ends inside a call record: the next run's banner ends the record
    as torn, and that banner is where the chunk is cut."""
    one = SPY_TOOL.read_bytes()
    cut_at = one.index(b"Returned:", len(one) // 2)
    trace = tmp_path / "cut.log"
    trace.write_bytes(one[:cut_at] + one + one[:cut_at] + one)
    out = json.loads(parallel(trace, 1000))
    assert out["incomplete_records"] >= 2
    assert json.dumps(out) == sequential(trace)


def test_a_process_in_two_chunks_is_not_merged() -> None:
    a, b = Analysis(format="pkcs11-spy"), Analysis(format="pkcs11-spy")
    a.objects[(3, 1)] = {"handle": "0x1"}
    b.objects[(3, 1)] = {"handle": "0x1"}
    with pytest.raises(fastscan.NotMergeable):
        fastscan.merge([a, b])


def test_statistics_add_up() -> None:
    a, b = Analysis(format="opensc-debug"), Analysis(format="opensc-debug")
    a.apdu_stats["SELECT"] = {"count": 2, "failed": 1, "total_ms": 3.5, "max_ms": 2.0}
    b.apdu_stats["SELECT"] = {"count": 1, "failed": 0, "total_ms": 4.25, "max_ms": 4.25}
    assert fastscan.merge([a, b]).apdu_stats["SELECT"] == {
        "count": 3, "failed": 1, "total_ms": 7.75, "max_ms": 4.25}
