"""``pkspy summary`` of a large pkcs11-spy log on every core, with the same result.

A pkcs11-spy log is a series of runs, each opened by a banner line; the spy
parser resets at a banner (process index + 1, no record open, object classes
and torn-call counts cleared) and every piece of per-process state in
``Analysis`` is keyed by the process index. So the file is cut at banner lines
into chunks, each chunk is parsed by the full decoder in a worker process with
its first process index and line number set, and the partial analyses are
merged in file order.

Two things cross a cut, and both are checked, not assumed:

* The parser's process index: each worker reports the index the *next*
  chunk's banner gets (it feeds that banner line too, which also ends a record
  the banner interrupts, as the sequential parse does); a chunk that was given
  another base makes the whole summary fall back to the sequential path.
* The redactor's memory of secrets: a later copy of a PIN is masked only if
  the PIN was learned earlier in the file. Chunk 0 is read first; the others
  start from what it learned (in the same order, which fixes the sweep
  pattern). A chunk whose predecessors learned anything else is read again
  with exactly what they learned.

Anything else (another format, a small file, a pipe, a merge that is not
exact) takes the sequential path, ``summary.summarize``.
"""

from __future__ import annotations

import itertools
import mmap
import multiprocessing
import os
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, fields

from pkspy import analysis
from pkspy.analysis import Analysis, Listed
from pkspy.formats.spy import BANNER, SpyParser
from pkspy.redact import Redactor
from pkspy.sources import decode, read_lines

FORMAT = SpyParser.format
MIN_PARALLEL = 16 << 20  # smaller files: starting workers costs more than it saves
FIRST_CHUNK = 2 << 20  # read alone first, to learn the secrets the others start from
CHUNKS_PER_WORKER = 4  # more chunks than workers: an even finish without knowing run sizes
# A banner line at the start of a line (the parser's BANNER checks the decoded line).
BANNER_BYTES = re.compile(rb"^\*{5,} OpenSC PKCS#11 spy \*{5,}", re.MULTILINE)
# Lists the reducer keeps without duplicates; every other list is appended to.
UNIQUE_LISTS = {"readers", "atr"}


class NotMergeable(Exception):
    """Partial analyses that would not add up to the sequential one."""


class _LearningRedactor(Redactor):
    """A redactor that keeps the order in which it learned its secrets."""

    def __init__(self, seed: list[bytes]) -> None:
        super().__init__()
        self.learned: list[bytes] = []
        for secret in seed:
            self._learn(secret)

    def _learn(self, secret: bytes) -> None:
        before = len(self._known)
        super()._learn(secret)
        if len(self._known) > before:
            self.learned.append(secret)


@dataclass
class Chunk:
    start: int
    end: int
    first_line: int = 1  # line number of its first line
    process: int = -1  # the parser's process index before its first line


@dataclass
class Partial:
    analysis: Analysis
    seed: list[bytes]  # the secrets it started from
    learned: list[bytes]  # the secrets known at its end, in the order learned
    next_process: int | None  # the index the next chunk's banner got (None: last chunk)


def _lines(path: str, start: int, end: int) -> Iterator[tuple[str, int]]:
    """The lines of bytes start..end, as ``sources.read_lines`` gives them."""
    with open(path, "rb") as f:
        f.seek(start)
        for text, offset in read_lines(f, start):  # a 1 GB line is cut there too
            if offset >= end:
                return
            yield text, offset


def read_chunk(path: str, chunk: Chunk, seed: list[bytes], last: bool) -> Partial:
    """The full decoder over one chunk (with the next chunk's banner, when there is one)."""
    parser = SpyParser()
    parser.process = chunk.process
    redact = _LearningRedactor(seed)
    analysis = Analysis(format=FORMAT)
    lineno = chunk.first_line - 1
    for text, offset in _lines(path, chunk.start, chunk.end):
        lineno += 1
        for event in parser.feed(text, lineno, offset):
            analysis.add(redact(event))
    next_process = None
    if last:
        for event in parser.close():
            analysis.add(redact(event))
    else:
        # The banner that opens the next chunk ends what it interrupts here; the
        # run it opens (held until its first call) is the next chunk's.
        banner = next(_lines(path, chunk.end, chunk.end + 1))
        for event in parser.feed(banner[0], lineno + 1, banner[1]):
            analysis.add(redact(event))
        next_process = parser.process
    return Partial(analysis, list(seed), redact.learned, next_process)


def _count(path: str, start: int, end: int) -> tuple[int, int]:
    """Newlines and banner lines in bytes start..end."""
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        newlines = banners = 0
        step = 16 << 20
        for at in range(start, end, step):
            newlines += mm[at:min(at + step, end)].count(b"\n")
        banners = sum(1 for _ in BANNER_BYTES.finditer(mm, start, end))
    return newlines, banners


def _banner_at(mm: mmap.mmap, pos: int) -> int | None:
    """Where the first line at or after pos that the parser takes for a banner starts."""
    for m in BANNER_BYTES.finditer(mm, pos):
        end = mm.find(b"\n", m.start())
        if BANNER.match(decode(mm[m.start():end if end >= 0 else len(mm)])):
            return m.start()
    return None


def cut(path: str, size: int, pieces: int) -> list[tuple[int, int]]:
    """Byte ranges that start at banner lines (the first at 0): chunk 0 small."""
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        bounds = [0]
        targets = [min(FIRST_CHUNK, size // (pieces + 1))]
        targets += [targets[0] + (size - targets[0]) * i // pieces for i in range(1, pieces)]
        for target in targets:
            if target <= bounds[-1]:
                continue
            at = _banner_at(mm, target)
            if at is None:
                break
            if at > bounds[-1]:
                bounds.append(at)
    bounds.append(size)
    return list(itertools.pairwise(bounds))


def _add_stat(mine: dict, theirs: dict, name: str) -> None:
    """One statistic (count, failed, total and max milliseconds) added to another."""
    for key, value in theirs.items():
        if key not in mine:
            mine[key] = value
        elif key in ("count", "failed"):
            mine[key] += value
        elif key.endswith("total_ms"):  # the reducer rounds its running total the same way
            mine[key] = round(mine[key] + value, 3)
        elif key.endswith("max_ms"):
            mine[key] = max(mine[key], value)
        else:
            raise NotMergeable(f"{name}: no merge rule for {key}")


def merge(parts: list[Analysis]) -> Analysis:
    """Partial analyses of consecutive chunks with no process in common, in order."""
    total = Analysis(format=parts[0].format)
    for part in parts:
        if part.format != total.format:
            raise NotMergeable("formats differ")
        for f in fields(Analysis):
            name = f.name
            mine, theirs = getattr(total, name), getattr(part, name)
            if name == "format":
                continue
            if name == "first_time":
                total.first_time = mine or theirs
            elif name == "last_time":
                total.last_time = theirs or mine
            elif isinstance(mine, bool) or not isinstance(mine, (int, set, Counter, list, dict)):
                raise NotMergeable(f"no merge rule for {name}")
            elif isinstance(mine, int):
                setattr(total, name, mine + theirs)
            elif isinstance(mine, set):
                mine |= theirs
            elif isinstance(mine, Counter):
                mine.update(theirs)
            elif isinstance(mine, list) and name in UNIQUE_LISTS:
                mine += [x for x in theirs if x not in mine]
            elif isinstance(mine, Listed):  # the first analysis.LISTED of all, the others counted
                for x in theirs:
                    mine.append(x)
                mine.unlisted += theirs.unlisted
            elif isinstance(mine, list):
                mine += theirs
            elif all(isinstance(k, str) for k in theirs):  # statistics by name
                for key, stat in theirs.items():
                    _add_stat(mine.setdefault(key, {}), stat, name)
            else:  # keyed by process (and handle): a key in two chunks is not per process
                if mine.keys() & theirs.keys():
                    raise NotMergeable(f"{name}: the same key in two chunks")
                for key, value in theirs.items():
                    if name == "objects" and len(mine) >= analysis.LISTED:
                        total._unlisted_objects.add(key)  # as Analysis._object leaves it out
                    else:
                        mine[key] = value
    return total


def summarize(path: str, fmt: str, workers: int | None = None,
              pieces: int | None = None, stats: dict | None = None) -> dict | None:
    """The summary, read on several cores; None when only the sequential path is exact.

    ``stats`` is given the number of chunks and of chunks read again.
    """
    if fmt != FORMAT or path == "-":
        return None
    try:
        size = os.stat(path).st_size
    except OSError:
        return None
    workers = workers or os.cpu_count() or 1
    if pieces is None:
        if size < MIN_PARALLEL or workers < 2:
            return None
        pieces = workers * CHUNKS_PER_WORKER
    ranges = cut(path, size, pieces)
    if len(ranges) < 2:
        return None
    with multiprocessing.get_context().Pool(workers) as pool:
        counts = pool.starmap(_count, [(path, a, b) for a, b in ranges])
        chunks = [Chunk(ranges[0][0], ranges[0][1])]
        for (a, b), (lines, banners) in zip(ranges[1:], counts[:-1], strict=True):
            prev = chunks[-1]
            chunks.append(Chunk(a, b, prev.first_line + lines, prev.process + banners))
        # chunk 1 starts where chunk 0's last banner took the index; the rest follow
        last = len(chunks) - 1
        first = read_chunk(path, chunks[0], [], last == 0)
        shift = first.next_process - 1 - chunks[1].process
        for c in chunks[1:]:
            c.process += shift
        rest = pool.starmap(read_chunk, [(path, c, first.learned, i == last)
                                         for i, c in enumerate(chunks[1:], 1)])
    partials = [first, *rest]
    again = 0
    for i in range(1, len(partials)):
        before = partials[i - 1]
        if before.next_process != chunks[i].process + 1:
            return None  # a banner the byte scan and the parser counted differently
        if partials[i].seed != before.learned:
            partials[i] = read_chunk(path, chunks[i], before.learned, i == last)
            again += 1
    if stats is not None:
        stats.update(chunks=len(chunks), read_again=again)
    try:
        return merge([p.analysis for p in partials]).summary()
    except NotMergeable:
        return None
