"""``pkspy summary`` of a large trace on every core, with the same result.

A pkcs11-spy log is a series of runs, each opened by a banner line; the spy
parser resets at a banner (process index + 1, no record open, object classes
and torn-call counts cleared). An OpenSC debug log of processes that ran one
after the other has the same shape: the parser keeps its state per process id
(threads, call stacks, clocks) and numbers processes in the order they appear.
Every piece of per-process state in ``Analysis`` is keyed by the process index.
So the file is cut where a run or a process starts, each chunk is read by the
full decoder in a worker process with its first process index and line number
set, and the partial analyses are merged in file order.

What crosses a cut is checked, not assumed:

* Process numbering: a spy worker reports the index the *next* chunk's banner
  gets (it feeds that banner line too, which also ends a record the banner
  interrupts, as the sequential parse does); an OpenSC worker reports the
  process ids it read, which must be as many as the byte scan counted and in
  no other chunk. Otherwise the summary takes the sequential path.
* The redactor's memory of secrets: a later copy of a PIN is masked only if
  the PIN was learned earlier in the file. Chunk 0 is read first; the others
  start from what it learned (in the same order, which fixes the sweep
  pattern). A chunk whose predecessors learned anything else is read again
  with exactly what they learned.
* OpenSC commands never answered are emitted at the end of the file: each
  worker hands them over, and they are counted after the last chunk.

A spy chunk is read by ``record_memo``: a record whose text was read before is
copied, not parsed again. A spy log too small to cut, or with one run, is read
whole that way in this process. Anything else (another format, a pipe, OpenSC
processes side by side, a merge that is not exact) takes the sequential path,
``summary.summarize``.
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
import re
import stat
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from typing import BinaryIO

from pkspy import analysis
from pkspy.analysis import Analysis, Listed
from pkspy.formats.opensc_debug import OpenscDebugParser
from pkspy.formats.spy import BANNER, SpyParser
from pkspy.model import Event
from pkspy.record_memo import MemoReader
from pkspy.redact import Redactor
from pkspy.sources import decode, read_lines

FORMAT = SpyParser.format
DEBUG_FORMAT = OpenscDebugParser.format
MIN_PARALLEL = 16 << 20  # smaller files: starting workers costs more than it saves
FIRST_CHUNK = 2 << 20  # read alone first, to learn the secrets the others start from
CHUNKS_PER_WORKER = 4  # more chunks than workers: an even finish without knowing run sizes
# An OpenSC header line of 0.20 and later, and its process id.
PID_LINE = re.compile(rb"^P:(\d+); ", re.MULTILINE)
CUT_SEARCH = 64 << 20  # bytes looked through for one cut
BLOCK = 1 << 20  # bytes read at a time: a few copies of it is the memory a scan takes
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
    next_process: int | None  # spy: the index the next chunk's banner got (None: last chunk)
    pids: list[int | None] = field(default_factory=list)  # OpenSC: the processes read
    unanswered: list[Event] = field(default_factory=list)  # OpenSC: left for the end


def _lines(path: str, start: int, end: int) -> Iterator[tuple[str, int]]:
    """The lines of bytes start..end, as ``sources.read_lines`` gives them."""
    with open(path, "rb") as f:
        f.seek(start)
        for text, offset in read_lines(f, start):  # a 1 GB line is cut there too
            if offset >= end:
                return
            yield text, offset


def _read_chunk(args: tuple) -> Partial:
    return read_chunk(*args)


def read_chunk(path: str, chunk: Chunk, seed: list[bytes], last: bool,
               fmt: str = FORMAT) -> Partial:
    """The full decoder over one chunk, and the first line of the next one."""
    debug = fmt == DEBUG_FORMAT
    parser = OpenscDebugParser() if debug else SpyParser()
    if debug:  # the processes of the chunks before take the first indexes
        parser._processes = {("before", i): i for i in range(chunk.process)}
    else:
        parser.process = chunk.process
    redact = _LearningRedactor(seed)
    analysis = Analysis(format=fmt)
    if debug:
        lineno = chunk.first_line - 1
        for text, offset in _lines(path, chunk.start, chunk.end):
            lineno += 1
            for event in parser.feed(text, lineno, offset):
                analysis.add(redact(event))
    else:  # records read before are copied, not parsed again
        with open(path, "rb") as f:
            reader = MemoReader(parser, redact, raw=False)
            for event in reader.events(f, chunk.start, chunk.end, chunk.first_line):
                analysis.add(event)
            lineno = reader.next_line - 1
    partial = Partial(analysis, list(seed), redact.learned, None)
    if debug:
        partial.pids = [pid for pid in parser._processes if not isinstance(pid, tuple)]
    if last and not debug:
        for event in parser.close():
            analysis.add(redact(event))
        return partial
    if not last:
        # The next chunk's first line ends what it interrupts here: a spy record
        # cut short by a banner, an OpenSC message; what it opens is the next chunk's.
        text, offset = next(_lines(path, chunk.end, chunk.end + 1))
        for event in parser.feed(text, lineno + 1, offset):
            analysis.add(redact(event))
        partial.next_process = parser.process if not debug else None
    if debug:
        if last:  # OpenscDebugParser.close(): the last message, then unanswered APDUs
            out: list[Event] = []
            parser._flush(out)
            for event in out:
                analysis.add(redact(event))
        # Commands never answered are emitted at the end of the file, after every
        # chunk: they wait here (in the order of their threads) for the merge.
        for thread in parser._threads.values():
            if thread.outgoing is not None:
                thread.outgoing.incomplete = True
                partial.unanswered.append(thread.outgoing)
    return partial


def _blocks(f: BinaryIO, start: int, end: int) -> Iterator[tuple[int, bytes]]:
    """(offset, bytes) of whole lines from ``start`` (a line start) to ``end``, about
    BLOCK bytes at a time: read, not mapped, so memory stays flat on any size. Of a
    line longer than BLOCK only its first BLOCK bytes come (its header, if any)."""
    f.seek(start)
    base, buf, skipping = start, b"", False
    while base + len(buf) < end:
        more = f.read(min(BLOCK, end - base - len(buf)))
        if not more:
            break
        if skipping:  # the rest of a line too long to hold, up to its newline
            at = more.find(b"\n")
            base += len(more) if at < 0 else at
            if at < 0:
                continue
            more, skipping = more[at:], False
        buf += more
        cut = len(buf) if base + len(buf) >= end else buf.rfind(b"\n") + 1
        if not cut and len(buf) >= BLOCK:
            yield base, buf
            base, buf, skipping = base + len(buf), b"", True
        elif cut:
            yield base, buf[:cut]
            base, buf = base + cut, buf[cut:]
    if buf:
        yield base, buf


def _line_start(f: BinaryIO, pos: int) -> int:
    """The start of the first line at or after pos."""
    if pos == 0:
        return 0
    f.seek(pos - 1)
    while chunk := f.read(1 << 16):
        at = chunk.find(b"\n")
        if at >= 0:
            return f.tell() - len(chunk) + at + 1
    return f.tell()


def count(path: str, start: int, end: int, fmt: str = FORMAT) -> tuple[int, int, set[bytes]]:
    """Newlines in bytes start..end, its banner lines (spy) and process ids (OpenSC)."""
    newlines = banners = 0
    pids: set[bytes] = set()
    with open(path, "rb") as f:
        for _, block in _blocks(f, start, end):
            newlines += block.count(b"\n")
            if fmt == DEBUG_FORMAT:
                pids |= _pids(block)
            else:
                banners += _banners(block)
    return newlines, banners, pids


# A regex anchored at every line start tries every byte (about 100 MB/s): these
# find a literal first (GB/s) and use the pattern only where it may match.
SPY_MARK = b"OpenSC PKCS#11 spy"


def _banners(block: bytes) -> int:
    """How many lines of ``block`` (whole lines) BANNER_BYTES matches."""
    n, at = 0, block.find(SPY_MARK)
    while at >= 0:
        if BANNER_BYTES.match(block, block.rfind(b"\n", 0, at) + 1):
            n += 1
        end = block.find(b"\n", at)
        at = block.find(SPY_MARK, end) if end >= 0 else -1
    return n


def _pids(block: bytes) -> set[bytes]:
    """The process ids PID_LINE finds in ``block`` (whole lines). Processes that ran one
    after the other are stretches of lines of one id: from each stretch's first line,
    the next "P:" line with another id is searched for (a literal first, so fast);
    processes side by side make many short stretches, and every line is matched."""
    pids: set[bytes] = set()
    pos = 0 if block.startswith(b"P:") else block.find(b"\nP:") + 1 or -1
    while pos >= 0:
        m = PID_LINE.match(block, pos)
        if m is None or len(pids) > 64:
            return set(PID_LINE.findall(block))
        pids.add(m.group(1))
        other = re.compile(rb"\nP:(?!" + m.group(1) + rb"; )").search(block, pos)
        pos = other.start() + 1 if other else -1
    return pids


def join_shared(ranges: list[tuple[int, int]],
                 counts: list[tuple[int, int, set[bytes]]]) -> tuple[list, list]:
    """Neighbouring OpenSC chunks joined until no process id is in two of them."""
    last_seen: dict[bytes, int] = {}
    for i, (_, _, pids) in enumerate(counts):
        for pid in pids:
            last_seen[pid] = i
    out_ranges, out_counts = [], []
    reach = -1  # the last chunk the current group must take in
    for i, (r, c) in enumerate(zip(ranges, counts, strict=True)):
        if i > reach:  # a new group
            out_ranges.append(r)
            out_counts.append((c[0], c[1], set(c[2])))
        else:
            out_ranges[-1] = (out_ranges[-1][0], r[1])
            lines, banners, pids = out_counts[-1]
            out_counts[-1] = (lines + c[0], banners + c[1], pids | c[2])
        reach = max(reach, *(last_seen[pid] for pid in c[2]), i) if c[2] else max(reach, i)
    return out_ranges, out_counts


def _banner_at(path: str, f: BinaryIO, pos: int, size: int) -> int | None:
    """Where the first line at or after pos that the parser takes for a banner starts
    (None past CUT_SEARCH bytes: a run that long is not cut)."""
    start = _line_start(f, pos)
    for base, block in _blocks(f, start, min(size, start + CUT_SEARCH)):
        for m in BANNER_BYTES.finditer(block):
            end = block.find(b"\n", m.start())
            if BANNER.match(decode(block[m.start():end if end >= 0 else len(block)])):
                return base + m.start()
    return None


def _new_process_at(path: str, f: BinaryIO, pos: int, size: int) -> int | None:
    """Where, at or after pos, the process id changes from one OpenSC line to the next.
    Chunks that share a process are joined again once counted (``join_shared``)."""
    prev = None
    start = _line_start(f, pos)
    for base, block in _blocks(f, start, min(size, start + CUT_SEARCH)):
        for m in PID_LINE.finditer(block):
            pid = m.group(1)
            if prev is not None and pid != prev:
                return base + m.start()
            prev = pid
    return None


def cut(path: str, size: int, pieces: int, fmt: str = FORMAT) -> list[tuple[int, int]]:
    """Byte ranges (the first at 0, small) that start where a process starts."""
    find = _new_process_at if fmt == DEBUG_FORMAT else _banner_at
    bounds = [0]
    targets = [min(FIRST_CHUNK, size // (pieces + 1))]
    targets += [targets[0] + (size - targets[0]) * i // pieces for i in range(1, pieces)]
    with open(path, "rb") as f:
        for target in targets:
            if target <= bounds[-1]:
                continue
            at = find(path, f, target, size)
            if at is not None and at > bounds[-1]:
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
        merge_into(total, part)
    return total


def merge_into(total: Analysis, part: Analysis) -> None:
    """Adds the analysis of the chunk that follows those already in ``total``."""
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
        elif isinstance(mine, bool):
            setattr(total, name, mine or theirs)
        elif not isinstance(mine, (int, set, Counter, list, dict)):
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
                    total.objects_unlisted = True  # as Analysis._object leaves it out
                else:
                    mine[key] = value


def _whole(path: str, size: int, fmt: str) -> dict | None:
    """A spy log that is not cut, read in this process (copying records read before)."""
    if fmt != FORMAT:
        return None
    return read_chunk(path, Chunk(0, size), [], True, fmt).analysis.summary()


def summarize(path: str, fmt: str, workers: int | None = None,
              pieces: int | None = None, stats: dict | None = None) -> dict | None:
    """The summary, read on several cores; None when only the sequential path is exact.

    ``stats`` is given the number of chunks and of chunks read again.
    """
    if fmt not in (FORMAT, DEBUG_FORMAT) or path == "-":
        return None
    try:
        st = os.stat(path)
    except OSError:
        return None
    if not stat.S_ISREG(st.st_mode):
        return None  # a FIFO is read once, in order
    size = st.st_size
    workers = workers or os.cpu_count() or 1
    if pieces is None:
        if size < MIN_PARALLEL or workers < 2:
            return _whole(path, size, fmt)
        pieces = workers * CHUNKS_PER_WORKER
    ranges = cut(path, size, pieces, fmt)
    if len(ranges) < 2:
        return _whole(path, size, fmt)
    debug = fmt == DEBUG_FORMAT
    with multiprocessing.get_context().Pool(workers) as pool:
        counts = pool.starmap(count, [(path, a, b, fmt) for a, b in ranges])
        if debug:
            ranges, counts = join_shared(ranges, counts)
            if len(ranges) < 2:
                return None  # processes side by side all along
        chunks = [Chunk(ranges[0][0], ranges[0][1], 1, 0 if debug else -1)]
        for (a, b), (lines, banners, pids) in zip(ranges[1:], counts[:-1], strict=True):
            prev = chunks[-1]
            chunks.append(Chunk(a, b, prev.first_line + lines,
                                prev.process + (len(pids) if debug else banners)))
        last = len(chunks) - 1
        first = read_chunk(path, chunks[0], [], last == 0, fmt)
        if not debug:  # chunk 1 starts where chunk 0's last banner took the index
            shift = first.next_process - 1 - chunks[1].process
            for c in chunks[1:]:
                c.process += shift
        results = pool.imap(_read_chunk, [(path, c, first.learned, i == last, fmt)
                                          for i, c in enumerate(chunks[1:], 1)])
        # In file order, as they come: each checked, merged, then let go.
        total = Analysis(format=fmt)
        unanswered: list[Event] = []
        seen: set[int | None] = set()
        again = 0
        before = first
        for i, part in enumerate(itertools.chain([first], results)):
            if debug and (len(part.pids) != len(counts[i][2]) or seen & set(part.pids)):
                return None  # a process in two chunks, or one the byte scan did not count
            seen.update(part.pids)
            if i and not debug and before.next_process != chunks[i].process + 1:
                return None  # a banner the byte scan and the parser counted differently
            if i and part.seed != before.learned:
                part = read_chunk(path, chunks[i], before.learned, i == last, fmt)
                again += 1
            try:
                merge_into(total, part.analysis)
            except NotMergeable:
                return None
            unanswered += part.unanswered
            part.analysis = None
            before = part
    if stats is not None:
        stats.update(chunks=len(chunks), read_again=again)
    redact = _LearningRedactor(before.learned)  # what it knows at the end of the file
    for event in unanswered:
        total.add(redact(event))
    return total.summary()
