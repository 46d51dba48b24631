"""What pcsc-lite's ``pcsc-spy`` prints (src/spy/pcsc-spy), pcsc-lite 1.9.9 to 2.x.

pcsc-spy reads libpcscspy's raw stream (see ``pcsc_spy``) and renders each
call as a block::

    SCardTransmit                                      function name (blue)
     i hCard: 0x6CB499CE                               " i " in values (green)
     i bSendBuffer
     i  0000 00 20 00 00 04 31 32 33 34                . ...1234    hexdump rows
     o bRecvBuffer                                     " o " out values (magenta)
     o  0000 90 00                                           ..
     => Command successful. (SCARD_S_SUCCESS [0x00000000])  [0.043909]     <= 2.1
     => SCARD_S_SUCCESS [0x00000000]  [0.043909]                           2.2+

Each reading thread of pcsc-spy prints its own calls, indented by four more
spaces per thread (and with ``-t`` prefixed `` (tN) ``); their lines
interleave, so the lines are demultiplexed by that prefix or indentation and a
call is emitted at its result line. With ``-d`` handles print as ``0x????``
and times as ``[??.??]``. ``SCardControl`` prints as ``SCarControl`` (a typo
kept in every version); SCardCancel's context prints as ``hCard``.

The events are those of the raw parser for the same run (same functions,
argument names and values, results, durations, exchanges), without the epoch
time and the thread id that only the raw stream has: ``tid`` is ``t0``,
``t1``... in the order pcsc-spy numbered its threads.

Lines that belong to no call are kept as events too: the statistics at the end
(``Thread 1/2``, ``total time: …``, one row per function) as DebugLine
``what="stats"``, ``Garbage:`` and ``Unknown function:`` lines (the stream was
out of step), the decoded SCardControl results pcsc-spy prints without
indentation (``what="control"``), and the Python tracebacks of a pcsc-spy
thread that died on an unexpected value (``what="traceback"``; its call stays
incomplete). pcsc-spy prints the statistics only after all its threads ended,
so a call still open there never got its result (the program crashed inside
the call, or the stream ended): it is emitted incomplete.
"""

from __future__ import annotations

import re

from decoders import iso7816
from pkspy.formats._colour import uncoloured
from pkspy.model import ApduExchange, Arg, DebugLine, Event, PcscCall, Unparsed

THREAD_PREFIX = re.compile(r"^ *\(t(\d+)\) (.*)$")
# A second thread's line glued to the end of another (Python threads printing at once).
GLUED = re.compile(r" +\(t\d+\) ")
FUNCTION = re.compile(r"^(SCard\w+|SCarControl)\s*$")
FIELD = re.compile(r"^([A-Za-z][\w.]*)(:?)(?: (.*))?$")
RESULT = re.compile(
    r"^=> (?:(?P<text>.*) \()?(?P<name>[A-Z_][A-Z0-9_]*) \[(?P<rv>0x[0-9A-Fa-f]+)\]\)? +"
    r"\[(?P<time>\d+\.\d+|\?\?\.\?\?)\]\s*$")
# Blanks as bytes.fromhex skips them (\s would let \x1c in, which fromhex refuses).
HEX_LINE = re.compile(r"^(?:[0-9A-Fa-f]{2}(?: |$))*[ \t]*$")
PAREN_HEX = re.compile(r"\((0x[0-9A-Fa-f]+)\)\s*$")

STATS = re.compile(r"^(?:Thread \d+/\d+|Results sorted by total execution time|"
                   r"total time: [\d.]+ sec)$")
STATS_THREAD = re.compile(r"^Thread (\d+)/\d+$")
STATS_ROW = re.compile(r"^[\d.]+ sec \(\s*\d+ calls\)\s+[\d.]+% (\w+)$")
GARBAGE = re.compile(r"^Garbage:  ?(.*)$")
ERRORS = re.compile(r"^(?:Unknown function: .*|Wrong format!|"
                    r"First line Should start with a '>' but got:)$")
MESSAGES = re.compile(r"^(?:fifo .* already present\. Reusing it\.|Ctrl-C, exiting\.)$")
CONTROL_EXTRA = re.compile(r"^ {2,3}\S")
TB_START = re.compile(r"^(?:Exception in thread (?P<thread>.*):|"
                      r"Traceback \(most recent call last\):)$")
TB_FILE = re.compile(r'^  File ".*", line \d+')
TB_CHAIN = re.compile(r"^(?:During handling of the above exception, another exception occurred:|"
                      r"The above exception was the direct cause of the following exception:)$")
TB_END = re.compile(r"^[A-Za-z_][\w.]*(?::.*)?$")
WORKER = re.compile(r"^Thread-(\d+)(?: \(worker\))?$")

# How each printed field becomes an argument of the raw parser's layout (pcsc_spy.LAYOUTS):
# "paren" (the hex value in the trailing parentheses), "int" (a leading 0x value), "dec",
# "text", "ptr" (the pointer as printed), "dump" (hexdump rows follow), "hex" (one line
# of hex), "nstr" (the length line of a multi-string), "item" (one of its strings), "skip"
# (a length the raw layout does not keep).
FIELDS = {
    "dwScope": "paren", "dwShareMode": "paren", "dwDisposition": "paren", "dwAttrId": "paren",
    "dwControlCode": "paren", "dwActiveProtocol": "paren", "dwCurrentState": "paren",
    "dwEventState": "paren",
    "hContext": "int", "hCard": "int", "dwTimeout": "int", "phCard": "int",
    "pdwActiveProtocol": "int", "dwInitialization": "int", "pcchReaderLen": "int",
    "pcbAtrLen": "int", "dwState": "int", "dwProtocol": "int", "dwPreferredProtocols": "int",
    "cReaders": "dec",
    "szReader": "text",
    "pvMem": "ptr",
    "bSendBuffer": "dump", "bRecvBuffer": "dump", "bAttr": "dump",
    "Atr": "hex", "bAtr": "hex",
    "pcchReaders": "nstr", "cchReaderLen": "nstr",
    "mszReaders": "item", "mszReaderName": "item",
    "bSendLength": "skip", "bRecvLength": "skip", "bAttrLen": "skip", "bAtrLen": "skip",
    "Atr length": "skip",
    "pioSendPci.dwProtocol": "skip", "pioSendPci.cbPciLength": "skip",
    "pioRecvPci.dwProtocol": "skip", "pioRecvPci.cbPciLength": "skip",
}
# The multi-string each length line announces, by the raw layout's name.
NSTR_NAMES = {"pcchReaders": "mszReaders", "cchReaderLen": "szReaderName",
              "pcchGroups": "mszGroups"}
ITEM_NAMES = {"mszReaders": "mszReaders", "mszReaderName": "szReaderName",
              "mszGroups": "mszGroups"}
RENAMED = {"Atr": "bAtr"}
# Buffer lengths pcsc-spy prints before a dump, checked against the dump.
DECLARED = {"bSendLength": "bSendBuffer", "bRecvLength": "bRecvBuffer", "bAttrLen": "bAttr",
            "bAtrLen": "bAtr"}


class _Call:
    __slots__ = ("args", "declared", "function", "last", "line", "lines", "offset", "problems",
                 "raw", "rows", "thread")

    def __init__(self, function: str, thread: int, line: int, offset: int,
                 raw: str | None) -> None:
        self.function = function
        self.thread = thread
        self.line = line
        self.last = line
        self.offset = offset
        self.raw: list[str] = []
        self.lines: list[int] = []  # the source line of each raw line: threads interleave
        self.add(raw, line)
        self.args: list[Arg] = []
        self.problems: list[str] = []
        self.declared: dict[str, int] = {}  # buffer name -> the length printed before it
        self.rows: dict[str, list[int]] = {}  # buffer name -> raw indexes of its dump rows

    def add(self, raw: str | None, line: int) -> int | None:
        """Keep a source line; its index in ``raw`` (None: a part of a line kept elsewhere)."""
        self.last = line
        if raw is None:
            return None
        self.raw.append(raw)
        self.lines.append(line)
        return len(self.raw) - 1


class _Traceback:
    """A Python traceback pcsc-spy (or one of its threads) printed on stderr."""

    __slots__ = ("files", "line", "lines", "offset", "raw", "thread")

    def __init__(self, thread: int | None, line: int, offset: int, raw: str | None) -> None:
        self.thread = thread
        self.line = line
        self.offset = offset
        self.raw = [] if raw is None else [raw]
        self.lines = [] if raw is None else [line]
        self.files = 0


def _int(text: str) -> int | str:
    token = text.split(" ", 1)[0] if text else text
    if token.startswith("0x"):
        try:
            return int(token, 16)
        except ValueError:
            return token
    return token


def _paren(text: str) -> int | str:
    m = PAREN_HEX.search(text)
    return int(m.group(1), 16) if m else _int(text)


def _hex(text: str) -> bytes | None:
    text = text.strip()
    if not HEX_LINE.match(text):
        return None
    return bytes.fromhex(text)


def _row(content: str) -> tuple[int, bytes] | None:
    """A hexdump row ``" 0000 00 A4 …  ascii"`` (content after " i "/" o ")."""
    if len(content) < 8 or content[0] != " " or content[5] != " ":
        return None
    try:
        offset = int(content[1:5], 16)
    except ValueError:
        return None
    hex_part = content[6:53]
    if not HEX_LINE.match(hex_part):
        return None
    return offset, bytes.fromhex(hex_part)


class PcscSpyTextParser:
    format = "pcsc-spy"

    def __init__(self) -> None:
        self._open: dict[int, _Call] = {}  # per pcsc-spy thread
        self._readers: dict[int, str] = {}  # hCard -> reader, from successful SCardConnect
        self._last_reader: dict[int, str] = {}  # per thread, for handles printed as 0x????
        self._dead: dict[int, str] = {}  # thread -> the exception that stopped it
        self._tb: _Traceback | None = None
        self._after_control = False  # the last finished call was an SCardControl
        self._wrong_format = False  # the next line is the one pcsc-spy refused
        self._stats_thread: int | None = None  # whose statistics are being printed

    # -- driving -------------------------------------------------------

    def feed(self, text: str, lineno: int, offset: int) -> list[Event]:
        out: list[Event] = []
        clean = uncoloured(text)
        if self._tb is not None and self._traceback_line(clean, text, lineno, out):
            return out
        if not clean.strip():
            return out
        for i, part in enumerate(self._split(clean)):
            # a line cut in parts is kept whole, once: in the event of its first part
            self._line(part, text if i == 0 else None, lineno, offset, out)
        return out

    def close(self) -> list[Event]:
        out: list[Event] = []
        self._end_traceback(out)
        for thread in sorted(self._open):
            out.append(self._finish(thread, None, None, "the trace ended before its result"))
        return out

    @staticmethod
    def _split(clean: str) -> list[str]:
        """Lines of several ``-t`` threads glued into one, cut apart again."""
        if THREAD_PREFIX.match(clean):
            starts = [m.start() for m in GLUED.finditer(clean) if m.start() > 0]
            if starts:
                ends = [*starts, len(clean)]
                parts = [clean[a:b] for a, b in zip([0, *starts], ends, strict=True)]
                return [p.rstrip() for p in parts[:-1]] + parts[-1:]
        for marker in ("Exception in thread ", "Traceback (most recent call last):"):
            at = clean.find(marker)
            if at > 0:  # stderr written into the middle of a buffered stdout line
                return [clean[:at], clean[at:]]
        return [clean]

    def _line(self, clean: str, text: str | None, lineno: int, offset: int,
              out: list[Event]) -> None:
        if self._wrong_format:
            self._wrong_format = False
            out.append(self._debug(clean, text, lineno, offset, "error"))
            return
        m = THREAD_PREFIX.match(clean)
        if m:
            thread, content = int(m.group(1)), m.group(2)
        else:
            content = clean.lstrip(" ")
            indent = len(clean) - len(content)
            thread = -1
            if FUNCTION.match(content) and indent % 4 == 0:
                thread = indent // 4
            elif content[:2] in ("i ", "o ", "=>") and indent % 4 == 1:
                thread, content = (indent - 1) // 4, " " + content
        if thread >= 0:
            f = FUNCTION.match(content)
            if f:
                self._start(thread, f.group(1), text, lineno, offset, out)
                return
            if content.startswith((" i ", " o ")):
                self._value(thread, content[1], content[3:], text, lineno, offset, out)
                return
            if content.startswith(" => "):
                self._result(thread, content[1:], text, lineno, offset, out)
                return
        self._other(clean, text, lineno, offset, out)

    # -- a call --------------------------------------------------------

    def _start(self, thread: int, function: str, text: str | None, lineno: int, offset: int,
               out: list[Event]) -> None:
        if thread in self._open:
            out.append(self._finish(thread, None, None, "no result line: another call began"))
        if function == "SCarControl":
            function = "SCardControl"
        self._open[thread] = _Call(function, thread, lineno, offset, text)
        self._after_control = False

    def _value(self, thread: int, direction: str, content: str, text: str | None,
               lineno: int, offset: int, out: list[Event]) -> None:
        call = self._open.get(thread)
        if call is None:
            out.append(self._unparsed("a pcsc-spy value line outside any call", content, text,
                                      lineno, offset, f"t{thread}"))
            return
        index = call.add(text, lineno)
        way = "in" if direction == "i" else "out"
        if content.startswith(" "):
            self._sub_value(call, way, content, index)
            return
        f = FIELD.match(content)
        if not f:
            call.problems.append(f"line {lineno}: not a field: {content[:60]!r}")
            return
        self._field(call, way, f.group(1), f.group(3) or "", f.group(3) is not None)

    def _sub_value(self, call: _Call, way: str, content: str, index: int | None) -> None:
        """A dump row, `` NULL``, or a reader state's own fields (``  dwEventState: …``)."""
        last = call.args[-1] if call.args else None
        if content == " NULL":
            if last is not None and last.kind == "buffer":
                last.value, last.length = None, None
            else:
                call.problems.append("NULL with no buffer before it")
            return
        row = _row(content)
        if row is not None:
            if last is None or last.kind != "buffer" or last.value is None:
                call.problems.append("a dump row with no buffer before it")
                return
            data = last.value if isinstance(last.value, bytes) else b""
            if row[0] != len(data):
                call.problems.append(f"{last.name}: a row at 0x{row[0]:04X} after {len(data)} "
                                     "bytes")
            last.value = data + row[1]
            last.length = len(last.value)
            if index is not None:
                call.rows.setdefault(last.name, []).append(index)
            return
        f = FIELD.match(content.strip())
        name = content.strip().split(":", 1)[0]
        if name == "Atr length":
            return
        if f:
            self._field(call, way, f.group(1), f.group(3) or "", f.group(3) is not None)
        else:
            call.problems.append(f"not a field: {content.strip()[:60]!r}")

    def _field(self, call: _Call, way: str, key: str, value: str, spaced: bool) -> None:
        if call.function == "SCardCancel" and key == "hCard":
            key = "hContext"  # pcsc-spy prints SCardCancel's context as hCard
        if key in ("mszGroups", "pcchGroups"):
            how = ("text" if call.function == "SCardListReaders" else
                   "int" if key == "pcchGroups" and way == "in" else
                   "nstr" if key == "pcchGroups" else "item")
        else:
            how = FIELDS.get(key)
        if how is None:
            call.problems.append(f"unknown field {key}")
            how = "text"
        if key in DECLARED and how == "skip":
            length = _int(value)
            if isinstance(length, int):
                call.declared[DECLARED[key]] = length
        if key == "bAtr" and call.function == "SCardStatus":
            how = "hex" if spaced else "null"
        name = RENAMED.get(key, key)
        if how == "skip":
            return
        if how in ("paren", "int", "dec"):
            v: object = (_paren(value) if how == "paren" else _int(value) if how == "int"
                         else int(value) if value.strip().isdigit() else value)
            call.args.append(Arg(name=name, direction=way,
                                 kind="ulong" if isinstance(v, int) else "text", value=v))
        elif how == "text":
            call.args.append(Arg(name=name, direction=way, kind="text", value=value))
        elif how == "ptr":
            call.args.append(Arg(name=name, direction=way, kind="text",
                                 value=value.split(" ", 1)[0]))
        elif how == "dump":
            call.args.append(Arg(name=name, direction=way, kind="buffer", value=b"", length=0))
        elif how in ("hex", "null"):
            data = _hex(value) if how == "hex" else None
            if how == "hex" and data is None:
                call.problems.append(f"{name}: not hex: {value[:40]!r}")
            call.args.append(Arg(name=name, direction=way, kind="buffer", value=data,
                                 length=None if data is None else len(data)))
        elif how == "nstr":
            call.args.append(Arg(name=NSTR_NAMES[key], direction=way, kind="text",
                                 value=None if value.strip() == "NULL" else []))
        elif how == "item":
            name = ITEM_NAMES[key]
            last = call.args[-1] if call.args else None
            if last is None or last.name != name or last.direction != way:
                last = Arg(name=name, direction=way, kind="text", value=[])
                call.args.append(last)
            if not isinstance(last.value, list):
                last.value = []
            last.value.append(value)

    def _result(self, thread: int, content: str, text: str | None, lineno: int, offset: int,
                out: list[Event]) -> None:
        call = self._open.get(thread)
        if call is None:
            out.append(self._unparsed("a pcsc-spy result line outside any call", content, text,
                                      lineno, offset, f"t{thread}"))
            return
        call.add(text, lineno)
        m = RESULT.match(content)
        if not m:
            call.problems.append(f"line {lineno}: a result line not understood")
            out.append(self._finish(thread, None, None, None))
            return
        duration = None if m["time"].startswith("?") else float(m["time"])
        out.append(self._finish(thread, int(m["rv"], 16), duration, None))

    def _finish(self, thread: int, rv: int | None, duration: float | None,
                cut: str | None) -> Event:
        """The event of a call; ``cut`` says why it has no result (None: it has one)."""
        call = self._open.pop(thread)
        incomplete = cut is not None
        died = self._dead.get(thread) if incomplete else None
        if died:
            call.problems.append(f"pcsc-spy's thread stopped: {died}")
        for name, length in call.declared.items():
            arg = next((a for a in call.args if a.name == name), None)
            if arg is not None and isinstance(arg.value, bytes) and len(arg.value) != length:
                call.problems.append(f"{name}: {len(arg.value)} bytes dumped, {length} declared")
        common = dict(line=call.line, end_line=call.last, offset=call.offset, raw=call.raw,
                      raw_lines=call.lines, process=0, tid=f"t{thread}")
        self._after_control = call.function == "SCardControl"
        if call.function == "SCardTransmit":
            return self._transmit(call, rv, duration, incomplete, common)
        event = PcscCall(function=call.function, args=call.args, rv=rv, duration=duration,
                         incomplete=incomplete, problems=call.problems, **common)
        self._learn_reader(event, thread)
        return event

    def _learn_reader(self, event: PcscCall, thread: int) -> None:
        if event.function != "SCardConnect" or event.rv != 0:
            return
        reader = next((a.value for a in event.args if a.name == "szReader"), None)
        handle = next((a.value for a in event.args
                       if a.name == "phCard" and a.direction == "out"), None)
        if isinstance(reader, str):
            self._last_reader[thread] = reader
            if isinstance(handle, int):
                self._readers[handle] = reader

    def _transmit(self, call: _Call, rv, duration, incomplete, common) -> ApduExchange:
        send = next((a for a in call.args if a.name == "bSendBuffer"), None)
        recv = next((a for a in call.args if a.name == "bRecvBuffer"), None)
        handle = next((a.value for a in call.args if a.name == "hCard"), None)
        command = send.value if send is not None and isinstance(send.value, bytes) else b""
        response = recv.value if recv is not None and isinstance(recv.value, bytes) else None
        reader = (self._readers.get(handle) if isinstance(handle, int)
                  else self._last_reader.get(call.thread))
        rows = call.rows.get("bSendBuffer")
        span = (rows[0], rows[-1]) if rows else None  # " i  0000 XX XX … ascii" rows
        apdu = ApduExchange(command=command, function="SCardTransmit", rv=rv, duration=duration,
                            reader=reader, command_span=span, command_row_bytes=16, **common)
        apdu.incomplete = incomplete or response is None
        if rv == 0 and response is not None:
            apdu.response = response
            if len(response) >= 2:
                apdu.sw = int.from_bytes(response[-2:], "big")
        apdu.secret = iso7816.pin_apdu(command)
        if call.problems:
            apdu.header = f"[{'; '.join(call.problems)}]"
        return apdu

    # -- lines outside calls ---------------------------------------------

    def _other(self, clean: str, text: str | None, lineno: int, offset: int,
               out: list[Event]) -> None:
        stripped = clean.strip()
        if stripped.startswith("Thread ") and STATS.match(stripped):
            # pcsc-spy prints its statistics once every thread has ended
            for thread in sorted(self._open):
                out.append(self._finish(thread, None, None,
                                        "no result line: pcsc-spy reached the end of the stream"))
        if STATS.match(stripped) or STATS_ROW.match(stripped):
            n = STATS_THREAD.match(stripped)
            if n:
                self._stats_thread = int(n.group(1)) - 1  # threads in the order they came
            event = self._debug(stripped, text, lineno, offset, "stats")
            event.tid = None if self._stats_thread is None else f"t{self._stats_thread}"
            row = STATS_ROW.match(stripped)
            event.function = row.group(1) if row else None
            out.append(event)
            return
        g = GARBAGE.match(clean)
        if g:
            out.append(self._garbage(g.group(1), text, lineno, offset))
            return
        if ERRORS.match(stripped):
            self._wrong_format = stripped.startswith("First line")
            out.append(self._debug(stripped, text, lineno, offset, "error"))
            return
        if MESSAGES.match(stripped):
            out.append(self._debug(stripped, text, lineno, offset, "message"))
            return
        t = TB_START.match(stripped)
        if t:
            self._end_traceback(out)
            w = WORKER.match(t["thread"] or "")
            # pcsc-spy starts one worker per thread of the stream, in order: Thread-1 is t0
            thread = int(w.group(1)) - 1 if w else None
            self._tb = _Traceback(thread, lineno, offset, text)
            return
        if self._after_control and CONTROL_EXTRA.match(clean):
            event = self._debug(stripped, text, lineno, offset, "control")
            event.function = "SCardControl"
            out.append(event)
            return
        out.append(self._unparsed("not a pcsc-spy line", clean, text, lineno, offset, None))

    def _unparsed(self, reason: str, part: str, text: str | None, lineno: int, offset: int,
                  tid: str | None) -> Event:
        if text is None:  # a part of a line whose text another event keeps
            event = self._debug(f"{reason}: {part.strip()}", None, lineno, offset, "message")
            event.tid = tid
            return event
        return Unparsed(line=lineno, end_line=lineno, offset=offset, raw=[text], process=0,
                        tid=tid, reason=reason)

    def _debug(self, message: str, text: str | None, lineno: int, offset: int,
               what: str) -> DebugLine:
        return DebugLine(line=lineno, end_line=lineno, offset=offset,
                         raw=[] if text is None else [text], raw_lines=None if text else [],
                         process=0, module="pcsc-spy", message=message, what=what)

    def _garbage(self, payload: str, text: str | None, lineno: int, offset: int) -> DebugLine:
        """A raw stream line pcsc-spy did not expect: it may be a send buffer's hex."""
        event = self._debug(f"Garbage: {payload}", text, lineno, offset, "garbage")
        data = _hex(payload) if payload.strip() else None
        if data:
            event.data = data
            secret = iso7816.pin_apdu(data)
            if secret:
                event.data = None
                event.secret = secret
                # the command's data as printed (after CLA INS P1 P2 Lc, or the 3 bytes of an
                # extended Lc): the redactor masks that text wherever it stands
                pairs = payload.split()
                start = 5 if data[4] else 7
                event.secret_text = " ".join(pairs[start:])
        return event

    def _traceback_line(self, clean: str, text: str, lineno: int, out: list[Event]) -> bool:
        """Take a line into the traceback being read; False when the traceback is over."""
        tb = self._tb
        assert tb is not None
        line = clean.rstrip()
        inside = (line.startswith("Traceback (most recent call last):") or TB_FILE.match(line)
                  or TB_CHAIN.match(line) or not line
                  or (tb.files and line.startswith("    ")))
        if inside:
            tb.raw.append(text)
            tb.lines.append(lineno)
            tb.files += bool(TB_FILE.match(line))
            return True
        if tb.files and TB_END.match(line):
            tb.raw.append(text)
            tb.lines.append(lineno)
            self._end_traceback(out)
            return True
        self._end_traceback(out)
        return False

    def _end_traceback(self, out: list[Event]) -> None:
        tb, self._tb = self._tb, None
        if tb is None:
            return
        while len(tb.raw) > 1 and not uncoloured(tb.raw[-1]).strip():
            tb.raw.pop()  # blank lines after an unfinished traceback are not part of it
            tb.lines.pop()
        last = uncoloured(tb.raw[-1]).strip() if tb.raw else "Traceback"
        event = DebugLine(line=tb.line, end_line=tb.lines[-1] if tb.lines else tb.line,
                          offset=tb.offset, raw=tb.raw, raw_lines=tb.lines, process=0,
                          module="pcsc-spy",
                          what="traceback", message=f"pcsc-spy failed: {last}",
                          tid=None if tb.thread is None else f"t{tb.thread}")
        if tb.thread is not None:
            # Its call stays open until the statistics (or the end): with stdout buffered
            # and stderr not, the traceback may come before the lines of that call.
            self._dead[tb.thread] = last
        out.append(event)
