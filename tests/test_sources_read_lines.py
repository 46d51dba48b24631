"""sources.read_lines (a block at a time) gives the lines raw_lines + decode give one
at a time: the parser and the redacted copy (report/redacted_copy.py) read the same
lines with the same offsets, whatever the bytes, the line ends and the read sizes.
"""

from __future__ import annotations

import io
import os
import threading
from unittest import mock

from hypothesis import given, settings
from hypothesis import strategies as st

from pkspy import sources
from pkspy.sources import decode, raw_lines, read_lines

# Pieces that matter to a line reader: newlines, CR, UTF-8 cut or whole, bytes that
# are not UTF-8, and the backslash backslashreplace writes.
PIECES = st.sampled_from([b"a", b"Returned:  0 CKR_OK", b" ", b"\n", b"\r", b"\r\n", b"\n\n",
                          b"\xe2\x80\xa6", b"\xe2", b"\x80", b"\xff", b"\xc3\xa9", b"\\"])
DATA = st.lists(st.tuples(PIECES, st.integers(1, 12)), max_size=40).map(
    lambda parts: b"".join(p * n for p, n in parts))


class ShortReads(io.RawIOBase):
    """A pipe-like stream: each read returns at most a few bytes; read1 only if asked."""

    def __init__(self, data: bytes, sizes: list[int], has_read1: bool) -> None:
        self.data, self.sizes, self.pos = data, sizes or [1], 0
        if has_read1:
            self.read1 = self.read

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        k = min(n, self.sizes[self.pos % len(self.sizes)])
        out = self.data[self.pos:self.pos + k]
        self.pos += len(out)
        return out


def one_at_a_time(data: bytes, offset: int) -> list[tuple[str, int]]:
    out = []
    for raw, size in raw_lines(io.BytesIO(data)):
        out.append((decode(raw), offset))
        offset += size
    return out


@settings(max_examples=400, deadline=None, derandomize=True)
@given(DATA, st.sampled_from([4, 9, 16, 1 << 20]), st.integers(1, 16),
       st.lists(st.integers(1, 7), max_size=5), st.booleans(), st.sampled_from([0, 77]))
def test_block_reader_gives_the_lines_of_the_line_reader(data, max_line, chunk, sizes,
                                                           has_read1, offset):
    with mock.patch.object(sources, "MAX_LINE", max_line), \
            mock.patch.object(sources, "CHUNK", min(chunk, max_line)):
        want = one_at_a_time(data, offset)
        assert list(read_lines(io.BytesIO(data), offset)) == want
        assert list(read_lines(io.BufferedReader(io.BytesIO(data), 8), offset)) == want
        assert list(read_lines(ShortReads(data, sizes, has_read1), offset)) == want


def test_long_lines_at_the_real_limit():
    m = sources.MAX_LINE
    for n in (m - 1, m, m + 1, 2 * m + 3):
        for end in (b"\n", b"\r\n", b"", b"\xe2\n"):
            data = b"x\r\n" + b"\xc3\xa9" * (n // 2) + b"a" * (n % 2) + end + b"tail\n"
            got = list(read_lines(io.BufferedReader(io.BytesIO(data)), 5))
            assert got == one_at_a_time(data, 5)
            line = data[3:].split(b"\n")[0]  # "\r" included: the reader counts it too
            assert got[1][0].endswith(sources.CUT_MARK) == (len(line) > m)


def test_a_line_from_a_live_pipe_comes_before_the_writer_closes():
    r, w = os.pipe()
    got: list[tuple[str, int]] = []
    arrived = threading.Event()

    def reader() -> None:
        with os.fdopen(r, "rb") as f:
            for item in read_lines(f):
                got.append(item)
                arrived.set()

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    os.write(w, b"1: C_Login\r\nP:1; T:0x2")  # a line, then the start of the next
    came = arrived.wait(30)  # a reader waiting for a full block would still be waiting
    os.write(w, b" 2026-11-27 14:16:11.872\n")
    os.close(w)
    t.join(30)
    assert came
    assert got == [("1: C_Login", 0), ("P:1; T:0x2 2026-11-27 14:16:11.872", 12)]
