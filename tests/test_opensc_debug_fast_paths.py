"""The shortcuts the OpenSC debug parser takes for speed read every line as the
plain patterns would (what each event holds is checked by test_opensc_debug*.py,
test_fast_paths.py, test_merge.py and the fuzz tests):

* one match (LINE) instead of the header, then the frame on the rest of it: the
  two patterns below are the grammar of log.c's headers (formats.md §2.2), and
  LINE must give the same fields on every line, real or made up;
* that match in re.ASCII on ASCII lines;
* a message pattern runs only where the message holds the text it cannot match
  without: checked on strings hypothesis makes from each pattern itself;
* events built from positional values, not through the keyword ``__init__``.
"""

from __future__ import annotations

import re

from conftest import ROOT
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pkspy.formats import opensc_debug as od
from pkspy.formats._constructor import positional_constructor
from pkspy.formats._masked import MaskedBytes
from pkspy.model import DebugLine, Pkcs11Call, Redacted

HEADER = re.compile(
    r"^(?:P:(?P<pid>\d+); T:(?:0x)?(?P<tid>\d+) |0x(?P<hextid>[0-9a-fA-F]+) )?"
    r"(?:(?P<date>\d{4}-\d\d-\d\d) )?(?P<time>\d\d:\d\d:\d\d\.\d{3}) "
    r"\[(?P<app>[^\]]*)\] ?(?P<rest>.*)$")
FRAME = re.compile(
    r"^(?P<file>(?:[A-Za-z]:[\\/])?[^:]+):(?P<line>\d+):(?P<func>[A-Za-z_]\w*): ?(?P<msg>.*)$")
FIELDS = ("pid", "tid", "hextid", "date", "time", "app", "file", "line", "func", "msg", "rest")
SETTINGS = settings(max_examples=300, deadline=None, derandomize=True, database=None,
                    suppress_health_check=list(HealthCheck))


def header_then_frame(text: str) -> dict | None:
    h = HEADER.match(text)
    if h is None:
        return None
    f = FRAME.match(h["rest"])
    fields = {k: h[k] for k in FIELDS[:6]}
    fields.update({k: f[k] for k in FIELDS[6:10]} if f else {"rest": h["rest"]})
    return {k: fields.get(k) for k in FIELDS}


def one_match(text: str) -> dict | None:
    pattern = od.ASCII_LINE if text.isascii() else od.LINE
    m = pattern.match(text)
    got = None if m is None else {k: m[k] for k in FIELDS}
    if text.isascii():  # the ASCII twin is only a shortcut: the full pattern agrees
        m = od.LINE.match(text)
        assert got == (None if m is None else {k: m[k] for k in FIELDS}), text
    return got


# A 0.23 header, as test_opensc_debug_variants.py rewrites it to other versions' shapes.
HEAD = re.compile(r"(?m)^P:(\d+); T:0x(\d+) (\d\d:\d\d:\d\d\.\d{3}) \[([^\]]*)\] ([^:\n]+):")
SHAPES = [
    lambda m: f"0x{int(m[2]):x} {m[3]} [{m[4]}] {m[5]}:",  # <=0.19 Unix
    lambda m: f"P:{m[1]}; T:{m[2]} 2026-11-27 {m[3]} [{m[4]}] C:\\opensc\\src\\{m[5]}:",  # Windows
    lambda m: f"2026-11-27 {m[3]} [{m[4]}] ..\\..\\src\\{m[5]}:",  # <=0.17 Windows
]


def test_every_line_of_the_real_logs_and_their_other_shapes():
    texts = [path.read_bytes().decode("utf-8", "backslashreplace")
             for path in sorted(ROOT.glob("fixtures/*/*.log"))]
    debug = [t for t in texts if HEAD.search(t)]
    texts += [HEAD.sub(shape, t) for shape in SHAPES for t in debug]
    headers = 0
    for text in (line for t in texts for line in t.split("\n")):
        want = header_then_frame(text)
        assert one_match(text) == want, text
        headers += want is not None
    assert headers > 4 * 18_000


# Lines made of a header (each version's shape, and damaged ones) and a frame or pieces
# of one: blanks and colons where the frame may or may not start, drive letters, Unicode
# digits and letters (\d and \w take them without re.ASCII), newlines, the characters
# that are \s in Unicode only.
HEADS = st.tuples(
    st.sampled_from(["", "P:12; T:0x140 ", "P:12; T:140 ", "0x7f96e2 ", "0xAbC ", "P:1٣; T:0x1 ",
                     "P:1; T:0x1٣ ", "P:1; "]),
    st.sampled_from(["", "2026-11-27 ", "2026-11-2 "]),
    st.sampled_from(["13:39:07.332 ", "1٣:39:07.332 ", "13:39:07.33 "]),
    st.sampled_from(["[opensc-tool]", "[]", "[a]b", "[x"]),
).map("".join)
# file:line:func: message, each part right or wrong in one of the ways that matter
FRAMES = st.tuples(
    st.sampled_from(["", " ", "  ", "\t"]),
    st.sampled_from(["card.c", "C:\\opensc\\card.c", "../src/card.c", "d:/x.c", "é.c", " ",
                     "", "a\nb.c", "x:y.c", "C:"]),
    st.sampled_from([":12:", ":٣:", "::", ":1x:", ":12\n:", ":12"]),
    st.sampled_from(["sc_x", "_f", "9f", "é", "", "f g", "f\n"]),
    st.sampled_from([": ", ":", ":  ", "", ": :", ":\x1c", ":\t"]),
    st.sampled_from(["called", "", "a: b:1:f: c", "m\n", "\n", "é", "\x1c", "\r", "\t x"]),
).map("".join)
PIECES = st.lists(st.sampled_from([
    " ", "  ", ":", "::", "card.c", "C:\\opensc\\", "12", "٣", "f", "_g1", "é", "9",
    "called", ": ", "\n", "\r", "\t", "\x1c", "\x85", "\u00a0", "[a]", "card.c:12:sc_x: ",
]), max_size=10).map("".join)


@SETTINGS
@given(HEADS, FRAMES)
def test_made_up_lines(head, frame):
    text = head + frame
    assert one_match(text) == header_then_frame(text)


@SETTINGS
@given(HEADS, PIECES)
def test_made_up_lines_of_pieces(head, pieces):
    text = head + pieces
    assert one_match(text) == header_then_frame(text)


@SETTINGS
@given(st.from_regex(HEADER))
def test_lines_of_the_header_grammar(text):
    assert one_match(text) == header_then_frame(text)


# (pattern, how it runs, what the parser looks for first) as in OpenscDebugParser
NEEDS = [
    (od.RETURNING, str.startswith, "returning with: "),
    (od.PCSC_RESULT, str.__contains__, "SCard"),
    (od.PKCS11_RESULT, str.startswith, "C_"),
    (od.CHECK, str.__contains__, ": -1"),
    (od.APDU_SUMMARY, str.startswith, "CLA:"),
    (od.CARD_ATR, str.startswith, "ATR"),
    (od.NULL_LABEL_DUMP, str.__contains__, " byte"),
    *[(pattern, str.__contains__, needle) for needle, pattern, _ in od.PIN_LINES],
]


@SETTINGS
@given(st.data())
def test_a_pattern_never_matches_without_what_is_looked_for_first(data):
    pattern, holds, needle = data.draw(st.sampled_from(NEEDS))
    text = data.draw(st.from_regex(pattern))
    if pattern.search(text):  # from_regex may add around what matches
        assert holds(text, needle), text


def test_the_parser_looks_for_exactly_these():
    """The shortcuts of NEEDS are the ones the parser's code holds."""
    import inspect

    code = inspect.getsource(od.OpenscDebugParser)
    for _, holds, needle in NEEDS[:-2]:
        shown = (f'.startswith("{needle}")' if holds is str.startswith else f'"{needle}" in ')
        assert shown in code, needle
    assert "needle in event.message" in code
    assert """if "'" in event.message:""" in code  # before any PIN line's needle
    assert all("'" in needle for needle, _, _ in od.PIN_LINES)


VALUES = st.one_of(st.none(), st.integers(), st.text(max_size=5), st.lists(st.text(max_size=3)))


@SETTINGS
@given(st.lists(VALUES, min_size=13, max_size=13))
def test_positional_debug_line_is_the_keyword_one(values):
    names = ("line", "end_line", "offset", "raw", "pid", "tid", "module", "time", "process",
             "file", "src_line", "function", "message")
    fast = od._debug_line(*values)
    slow = DebugLine(**dict(zip(names, values, strict=True)))
    assert type(fast) is DebugLine and fast == slow and repr(fast) == repr(slow)
    assert all(getattr(fast, s) is getattr(slow, s) or getattr(fast, s) == getattr(slow, s)
               for s in DebugLine.__slots__)
    assert fast.raw is values[3] and fast.raw_lines is None and fast.what == "message"


def test_fields_with_a_factory_get_their_own_value():
    build = positional_constructor(Pkcs11Call, ("line", "end_line", "offset", "function"))
    a, b = build(1, 1, 0, "C_Login"), build(2, 2, 9, "C_Logout")
    assert a == Pkcs11Call(line=1, end_line=1, offset=0, function="C_Login")
    assert a.args == [] and a.args is not b.args and a.raw is not b.raw


def test_a_frozen_class_is_built_through_its_init():
    build = positional_constructor(Redacted, ("what", "length"))
    assert build("PIN", 4) == Redacted("PIN", 4) and str(build("PIN", 4)) == str(Redacted("PIN", 4))


def test_dump_bytes_keep_their_mask():
    """A redacted copy's dump still reads as its readable prefix and a masked length."""
    parser = od.OpenscDebugParser()
    out = []
    for n, text in enumerate([
            "P:1; T:0x2 10:00:00.000 [t] sm.c:1:f: ", "Data (4 bytes):",
            "31 32 ** **", "P:1; T:0x2 10:00:00.001 [t] sm.c:2:f: called"], 1):
        out += parser.feed(text, n, 0)
    (dump,) = out
    assert isinstance(dump.data, MaskedBytes) and dump.data == b"12" and dump.data.masked == 2
