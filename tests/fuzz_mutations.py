"""Ways real traces get damaged, as hypothesis strategies over a window of a real fixture.

Shared by tests/test_fuzz_parsers.py and fuzz/seed_corpus.py. A trace is a list
of byte lines (each with its line ending); a window of a fixture starts
anywhere (a cut before) and ends anywhere (a cut after). Each mutation says
which line of the window it first changed, so a test can check that what came
before it parses as it did, and whether it kept every record whole (then the
records themselves must also parse and redact as they did).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from hypothesis import strategies as st

from pkspy import formats
from pkspy.sources import decode

ROOT = Path(__file__).resolve().parent.parent
WINDOW = 160  # lines: enough for several records of every format, small enough to be quick


def fixture_traces() -> dict[Path, str | None]:
    """Every real trace under fixtures/ and the format detection gives it (None: no parser
    knows it yet; it is still fed to every parser as foreign input)."""
    out = {}
    for p in sorted(ROOT.glob("fixtures/*/*")):
        if p.suffix in (".log", ".raw", ".txt"):
            head = [decode(raw) for raw in split_lines(p.read_bytes())[:200]]
            out[p] = formats.detect(head)
    return out


def split_lines(data: bytes) -> list[bytes]:
    """Lines as the reader splits them: at \\n only (bytes.splitlines also splits at \\r)."""
    parts = data.split(b"\n")
    last = parts.pop()
    return [p + b"\n" for p in parts] + ([last] if last else [])


TRACES = fixture_traces()
_LINES: dict[Path, list[bytes]] = {}


def lines_of(path: Path) -> list[bytes]:
    if path not in _LINES:
        _LINES[path] = split_lines(path.read_bytes())
    return _LINES[path]


@dataclass
class Mutated:
    name: str
    lines: list[bytes]
    first: int  # 0-based index of the first line the mutation changed or moved
    whole_records: bool = False  # records moved or added whole, none cut or torn


def _garbage_line() -> st.SearchStrategy[bytes]:
    return st.one_of(
        st.binary(max_size=200).map(lambda b: b.replace(b"\n", b"") + b"\n"),
        st.text(max_size=120).map(lambda t: t.replace("\n", " ").encode() + b"\n"),
        st.sampled_from([b"\x00" * 64 + b"\n", b"\x1b[31m\x1b[0m\n", b"\xef\xbb\xbf\n",
                         b"\r\n", b"Returned:  0 CKR_OK\n", b"1: C_Login\n", b"\xff\xfe\n"]),
    )


@st.composite
def window(draw, path: Path) -> list[bytes]:
    lines = lines_of(path)
    start = draw(st.integers(0, max(0, len(lines) - 1)))
    return lines[start:start + draw(st.integers(1, WINDOW))]


@st.composite
def mutation(draw, lines: list[bytes], blocks: list[tuple[int, int]]) -> Mutated:
    """One damage applied to ``lines``; ``blocks`` are (start, end) line ranges of the
    records the undamaged window parsed into, for record-level damage."""
    n = len(lines)
    kind = draw(st.sampled_from(["cut", "garbage", "crlf", "bad-bytes", "long-line", "opensc-4k",
                                 "chat-paste", "dup", "swap", "interleave", "two-writers"]))
    at = draw(st.integers(0, n))
    if kind == "cut":  # a crash: the file ends anywhere, even inside a UTF-8 sequence
        data = b"".join(lines)
        pos = draw(st.integers(0, len(data)))
        cut = split_lines(data[:pos])
        return Mutated(kind, cut, max(0, len(cut) - 1))
    if kind == "garbage":
        junk = draw(st.lists(_garbage_line(), min_size=1, max_size=4))
        edges = [s for s, _ in blocks] + [n]
        if blocks and draw(st.booleans()):  # between two records
            at = draw(st.sampled_from(edges))
            return Mutated(kind, lines[:at] + junk + lines[at:], at, whole_records=True)
        return Mutated(kind, lines[:at] + junk + lines[at:], at)
    if kind == "crlf":  # Windows: every line from here on ends in \r\n
        out = [x[:-1] + b"\r\n" if x.endswith(b"\n") and not x.endswith(b"\r\n") else x
               for x in lines[at:]]
        return Mutated(kind, lines[:at] + out, at, whole_records=True)  # offsets move
    if kind == "bad-bytes":  # a card's label in Latin-1, a terminal's control codes
        if not lines:
            return Mutated(kind, lines, 0)
        i = min(at, n - 1)
        line = lines[i]
        pos = draw(st.integers(0, len(line)))
        bad = draw(st.sampled_from([b"\xff", b"\xc3", b"\xe2\x82", b"\x00", b"\x1b[1m", b"\x7f",
                                    b"\x08", b"\xed\xa0\x80", b"\r", b"\x0c", b"\xc0\xaf"]))
        return Mutated(kind, [*lines[:i], line[:pos] + bad + line[pos:], *lines[i + 1:]], i)
    if kind == "long-line":  # huge hex dumps and messages, below the reader's 1 MiB cut
        size = draw(st.integers(4_000, 120_000))
        unit = draw(st.sampled_from([b"00 ", b"A", b"F", b" ", b"[", b"0x", b"31 32 ", b"\t"]))
        prefix = draw(st.sampled_from([b"", b"    00000000  ", b"[in] pTemplate[2]: ",
                                       b"Outgoing APDU (9 bytes):", b"00000001@"]))
        long_line = prefix + unit * (size // len(unit)) + b"\n"
        return Mutated(kind, [*lines[:at], long_line, *lines[at:]], at)
    if kind == "opensc-4k":  # OpenSC before 0.22 cut each message at 4 KiB
        limit = draw(st.integers(16, 4096))
        out = [x if len(x) <= limit else x[:limit - 1] + b"\n" for x in lines]
        first = next((i for i, (a, b) in enumerate(zip(lines, out, strict=True)) if a != b), n)
        return Mutated(kind, out, first)
    if kind == "chat-paste":  # tabs, quoting, trailing blanks lost, non-breaking spaces
        style = draw(st.sampled_from(["quote", "strip", "nbsp", "tabs"]))
        change = {"quote": lambda x: b"> " + x,
                  "strip": lambda x: x.rstrip() + b"\n",
                  "nbsp": lambda x: x.replace(b"  ", "\u00a0 ".encode()),
                  "tabs": lambda x: x.replace(b"    ", b"\t")}[style]
        out = lines[:at] + [change(x) for x in lines[at:]]
        first = next((i for i, (a, b) in enumerate(zip(lines, out, strict=True)) if a != b), n)
        return Mutated(kind, out, first)
    if kind == "two-writers":  # two processes append to one file, in runs of lines
        other = draw(window(draw(st.sampled_from(sorted(TRACES)))))
        out, i, j = list(lines[:at]), at, 0
        while i < n or j < len(other):
            k = draw(st.integers(1, 12))
            out += other[j:j + k]
            j += k
            out += lines[i:i + k]
            i += k
        return Mutated(kind, out, at)
    if len(blocks) < 2:
        return Mutated("none", list(lines), n, whole_records=True)
    b = draw(st.integers(0, len(blocks) - 2))
    (s1, e1), (s2, e2) = blocks[b], blocks[b + 1]
    first_rec, second_rec = lines[s1:e1], lines[s2:e2]
    if kind == "dup":  # a record written twice
        return Mutated(kind, lines[:e1] + first_rec + lines[e1:], e1, whole_records=True)
    if kind == "swap":  # two records in the other order
        return Mutated(kind, lines[:s1] + second_rec + lines[e1:s2] + first_rec + lines[e2:], s1,
                       whole_records=True)
    # threads: the lines of two records interleaved
    mixed, a, c = [], 0, 0
    while a < len(first_rec) or c < len(second_rec):
        if a < len(first_rec) and (c >= len(second_rec) or draw(st.booleans())):
            mixed.append(first_rec[a])
            a += 1
        else:
            mixed.append(second_rec[c])
            c += 1
    return Mutated("interleave", lines[:s1] + mixed + lines[e1:s2] + lines[e2:], s1)
