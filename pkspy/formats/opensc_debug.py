"""OpenSC debug logs (libopensc log.c ``sc_do_log``), 0.15 to 0.27, Unix and Windows.

Every message starts with a header; what follows up to the next header
belongs to the message (hex dumps, multi-line texts, stray program output)::

    P:3610; T:0x140600437434432 13:39:07.332 [opensc-tool] reader-pcsc.c:326:pcsc_transmit:
    Outgoing APDU (12 bytes):
    00 A4 04 00 07 62 76 01 FF 00 00 00 .....bv.....

Headers by version: ``0x<hex tid> HH:MM:SS.mmm [app] …`` (<=0.19 Unix),
``P:<pid>; T:0x<decimal tid> HH:MM:SS.mmm [app] …`` (0.20+ Unix; the tid is
decimal despite the 0x) and ``P:<pid>; T:<tid> YYYY-MM-DD HH:MM:SS.mmm [app] …``
(Windows, and <=0.17 Windows without P:/T:). In the ``file:line:func: `` frame
the file may be a Windows path with a drive colon; the message has colons of
its own (``ATR     : 3b:95:…``).

A message is emitted when the next header arrives (it may have more lines
until then). ``called`` / ``returning with: N (text)`` pairs are folded into a
call tree per thread: depth, duration, and the innermost function where a
failure began. Outgoing/Incoming APDU dumps are paired into exchanges.
"""

from __future__ import annotations

import re
from collections import Counter

from decoders import iso7816, pkcs11
from pkspy.formats._colour import uncoloured
from pkspy.formats._constructor import positional_constructor
from pkspy.formats._masked import from_pairs, redacted
from pkspy.model import ApduExchange, DebugLine, Event, Unparsed

# A header and its frame in one match, the parser's hot path; a message with no frame
# (sc_do_log_noframe) is the rest. The file has no colon but a Windows drive's (the
# message may have many) and, as the message, no newline.
_LINE = (r"^(?:P:(?P<pid>\d+); T:(?:0x)?(?P<tid>\d+) |0x(?P<hextid>[0-9a-fA-F]+) )?"
         r"(?:(?P<date>\d{4}-\d\d-\d\d) )?(?P<time>\d\d:\d\d:\d\d\.\d{3}) "
         r"\[(?P<app>[^\]]*)\] ?"
         r"(?:(?P<file>(?:[A-Za-z]:[\\/])?[^:\n]+):(?P<line>\d+):(?P<func>[A-Za-z_]\w*): ?"
         r"(?P<msg>.*)$|(?P<rest>.*)$)")
LINE = re.compile(_LINE)
# Most lines are ASCII only: there \d and \w match the same with re.ASCII, and faster.
# (Not so \s, which matches \x1c-\x1f only without re.ASCII: keep it out of _LINE.)
ASCII_LINE = re.compile(_LINE, re.ASCII)
RETURNING = re.compile(r"^returning with: (-?\d+)(?: \((.*)\))?\s*$")
# "'SELECT' error: -1201 (File not found)", "SW Check failed: -1201 (...)"
CHECK = re.compile(r"^(.*?): (-1[1-9]\d\d) \((.*)\)\s*$")
DUMP_LABEL = re.compile(r"^(.*?) ?\((\d+) bytes?\):\s*$")
OLD_DUMP_LABEL = re.compile(r"^((?:Outgoing|Incoming) APDU) data \[\s*(\d+) bytes\] =+\s*$")
NULL_LABEL_DUMP = re.compile(r"^(\d+) bytes?:\s*$")
HEX_PAIRS = re.compile(r"(?:[0-9A-Fa-f]{2}|\*\*)(?= |$)")  # ** : a byte pkspy redact masked
PKCS11_RESULT = re.compile(r"^(C_\w+)\(.*\) = (CKR_\w+|0x[0-9a-fA-F]+)\s*$")
PCSC_RESULT = re.compile(r"^(?:(?P<reader>.*):)?(?P<desc>SCard\w+(?:\([^)]*\))?[^:]*): "
                         r"0x(?P<rv>[0-9a-fA-F]{8})\s*$")
# The card's ATR while matching drivers (level 7+); "ATR try :" lines are table entries.
CARD_ATR = re.compile(r"^ATR\s+: ([0-9a-fA-F]{2}(?::[0-9a-fA-F]{2})*)\s*$")
APDU_SUMMARY = re.compile(r"^CLA:([0-9A-F]+), INS:([0-9A-F]+), P1:([0-9A-F]+), P2:([0-9A-F]+)")
# Level-3 lines that print a PIN in clear (pkcs11-session.c, framework-pkcs15.c).
# Each with text it cannot match without, looked for before the pattern runs.
PIN_LINES = [
    ("C_InitPIN() called, pin '", re.compile(r"^C_InitPIN\(\) called, pin '(.*)'"), "PIN"),
    ("pkcs11_get_pin_callback() secret '",
     re.compile(r"pkcs11_get_pin_callback\(\) secret '(.*)'"), "SO PIN"),
]

SECONDS_PER_DAY = 86400.0

# DebugLine(line=..., ...) of a header line, in half the time (one per message).
_debug_line = positional_constructor(DebugLine, (
    "line", "end_line", "offset", "raw", "pid", "tid", "module", "time", "process", "file",
    "src_line", "function", "message"))


def _seconds(clock: str) -> float:
    h, m, s = clock.split(":")
    return int(h) * 3600 + int(m) * 60 + float(s)


class _Dump:
    """A hex dump being read (only messages with one need it): its label, how many
    bytes are still to come, the bytes as printed and the raw lines they came on."""

    __slots__ = ("label", "left", "pairs", "rows")

    def __init__(self, label: str, left: int) -> None:
        self.label = label
        self.left = left
        self.pairs: list[str] = []
        self.rows: tuple[int, int] | None = None


class _Frame:
    __slots__ = ("errors", "function", "line", "start")

    def __init__(self, function: str, start: float, line: int) -> None:
        self.function = function
        self.start = start
        self.line = line
        self.errors: set[int] = set()  # error codes logged below this frame so far


class _Thread:
    """Per-thread state: the call stack, and the APDU sent and not yet answered."""

    __slots__ = ("header", "last_clock", "last_error", "on_stack", "outgoing", "reader", "stack")

    def __init__(self) -> None:
        self.stack: list[_Frame] = []
        self.on_stack: Counter[str] = Counter()  # frames per function: no walk of a deep stack
        # The last error logged since the card was last talked to: a function that
        # never logged "called" and fails with the same code is passing it on.
        self.last_error: int | None = None
        self.outgoing: ApduExchange | None = None
        self.header: str | None = None  # the latest "CLA:.., INS:.." line
        self.reader: str | None = None
        # Seconds of its last message, past midnight counted on; None before any.
        self.last_clock: float | None = None

    def push(self, frame: _Frame) -> None:
        self.stack.append(frame)
        self.on_stack[frame.function] += 1

    def pop(self) -> _Frame:
        """The top frame, off the stack; its caller inherits the errors raised inside it
        (passed on here, not to every frame at each error: a call tree can be deep)."""
        frame = self.stack.pop()
        self.on_stack[frame.function] -= 1
        if self.stack:
            self.stack[-1].errors |= frame.errors
        return frame


class OpenscDebugParser:
    format = "opensc-debug"

    def __init__(self) -> None:
        self._msg: DebugLine | None = None  # the message being assembled
        self._dump: _Dump | None = None  # and its hex dump, if it has one
        self._threads: dict[tuple[int | None, str | None], _Thread] = {}
        self._processes: dict[int | None, int] = {}  # pid -> process index
        # The last time of day read and its seconds: a run of messages shares one.
        self._clock_text = ""
        self._clock_seconds = 0.0

    # -- driving -------------------------------------------------------

    def feed(self, text: str, lineno: int, offset: int) -> list[Event]:
        out: list[Event] = []
        clean = uncoloured(text)
        m = (ASCII_LINE if clean.isascii() else LINE).match(clean)
        if m:
            if self._msg is not None:
                self._flush(out)
            self._start(m, text, lineno, offset)
        elif self._msg is not None:
            self._more(clean, text, lineno)
        elif clean.strip():
            out.append(Unparsed(line=lineno, end_line=lineno, offset=offset, raw=[text],
                                reason="before any OpenSC log line"))
        return out

    def close(self) -> list[Event]:
        out: list[Event] = []
        self._flush(out)
        for thread in self._threads.values():
            if thread.outgoing is not None:
                thread.outgoing.incomplete = True
                thread.outgoing.duration = None  # it held the start time
                out.append(thread.outgoing)
                thread.outgoing = None
        return out

    # -- a header line -------------------------------------------------

    def _start(self, m: re.Match[str], text: str, lineno: int, offset: int) -> None:
        pid, tid, hextid, date, clock, app, file, src_line, func, msg, rest = m.groups()
        pid = int(pid) if pid else None
        processes = self._processes
        process = processes.get(pid)
        if process is None:
            process = processes[pid] = len(processes)
        event = _debug_line(lineno, lineno, offset, [text], pid, tid or hextid, app,
                            f"{date} {clock}" if date else clock, process, file,
                            None if file is None else int(src_line), func,
                            rest if file is None else msg)  # no frame: sc_do_log_noframe
        self._msg = event
        self._dump = None
        # sc_log_hex with no label: the length is on the header line
        if " byte" in event.message and (d := NULL_LABEL_DUMP.match(event.message)):
            self._dump = _Dump("", int(d.group(1)))
            event.data, event.what = b"", "dump"

    def _more(self, clean: str, text: str, lineno: int) -> None:
        event, dump = self._msg, self._dump
        assert event is not None
        event.raw.append(text)
        event.end_line = lineno
        idx = len(event.raw) - 1
        if dump is not None and dump.left > 0:
            pairs = HEX_PAIRS.findall(clean[: 3 * min(dump.left, 16)])
            take = pairs[: min(dump.left, 16)]
            dump.pairs += take
            dump.left -= len(take)
            first = dump.rows[0] if dump.rows else idx
            dump.rows = (first, idx)
            if not take:
                dump.left = 0  # not a row: the dump was cut short
            return
        if dump is None and not event.message.strip():
            d = DUMP_LABEL.match(clean) or OLD_DUMP_LABEL.match(clean)
            if d:
                self._dump = _Dump(d.group(1), int(d.group(2)))
                event.data = b""
                event.what = "dump"
                return
        if clean.strip() and not clean.startswith("====="):
            # a message that goes on over several lines (or stray program output)
            event.message = f"{event.message}\n{clean}" if event.message else clean

    # -- a complete message ----------------------------------------------

    def _flush(self, out: list[Event]) -> None:
        event, dump = self._msg, self._dump
        if event is None:
            return
        self._msg = self._dump = None
        if dump is not None:
            event.data = from_pairs(dump.pairs)
        key = (event.pid, event.tid)
        thread = self._threads.get(key)
        if thread is None:
            thread = self._threads[key] = _Thread()
        # Seconds on a running clock per thread; a time earlier than the last is a new day.
        clock = event.time
        if clock == self._clock_text:  # a run of messages shares a time: parsed once
            now = self._clock_seconds
        else:
            now = self._clock_seconds = _seconds(clock.split(" ")[-1])
            self._clock_text = clock
        if thread.last_clock is not None:
            while now < thread.last_clock - 1.0:  # past midnight (no date on Unix)
                now += SECONDS_PER_DAY
        thread.last_clock = now
        event.depth = len(thread.stack)
        text = event.message.strip()
        if dump is not None and dump.label.endswith("APDU"):
            self._apdu(thread, event, dump, now, out)
            return
        # Each pattern only where the text holds what it cannot match without (a first
        # letter is the quickest look).
        first = text[:1]
        if text == "called" and event.function:
            thread.push(_Frame(event.function, now, event.line))
            event.what = "called"
        elif (first == "r" and text.startswith("returning with: ")
              and (r := RETURNING.match(text)) and event.function):
            self._returned(thread, event, int(r.group(1)), now)
        elif "SCard" in text and (p := PCSC_RESULT.match(text)):
            event.what = "pcsc"
            event.rv = int(p["rv"], 16)
            if p["reader"]:
                event.reader = p["reader"]
                # the card is where OpenSC connected to share it (DIRECT is for control)
                if event.rv == 0 and p["desc"].startswith(("SCardConnect(SHARED",
                                                           "SCardConnect(EXCLUSIVE",
                                                           "SCardReconnect")):
                    thread.reader = p["reader"]
        elif first == "C" and text.startswith("C_") and (p := PKCS11_RESULT.match(text)):
            event.what = "pkcs11"
            event.rv = pkcs11.value(p.group(2))
        elif ": -1" in text and (c := CHECK.match(text)):
            event.error = int(c.group(2))
            event.origin = event.error != thread.last_error
            thread.last_error = event.error
            if thread.stack:  # the callers learn it when this frame returns (pop)
                thread.stack[-1].errors.add(event.error)
        elif first == "C" and text.startswith("CLA:") and APDU_SUMMARY.match(text):
            thread.header = text
        elif first == "A" and text.startswith("ATR") and (a := CARD_ATR.match(text)):
            event.atr = a.group(1).replace(":", "").upper()
        if "'" in event.message:  # each PIN line quotes its PIN
            for needle, pattern, what in PIN_LINES:
                if needle in event.message and (s := pattern.search(event.message)):
                    event.secret, event.secret_text = what, s.group(1)
        if first == "U" and text.startswith("Using reader with a card: "):
            thread.reader = event.reader = text.split(": ", 1)[1]
        out.append(event)

    def _returned(self, thread: _Thread, event: DebugLine, code: int, now: float) -> None:
        event.what = "returned"
        frame = None
        if thread.on_stack[event.function]:
            # Pop to its frame; frames above it never logged a return.
            while thread.stack[-1].function != event.function:
                thread.pop()
            frame = thread.pop()
            event.duration = round(now - frame.start, 6)
        event.depth = len(thread.stack)
        if code < 0:
            event.error = code
            # It began here unless something it called failed with the same code.
            event.origin = (code not in frame.errors) if frame else code != thread.last_error
            thread.last_error = code
            if thread.stack:
                thread.stack[-1].errors.add(code)

    def _apdu(self, thread: _Thread, event: DebugLine, dump: _Dump, now: float,
              out: list[Event]) -> None:
        data = event.data or b""
        common = dict(line=event.line, end_line=event.end_line, offset=event.offset,
                      raw=event.raw, pid=event.pid, tid=event.tid, time=event.time,
                      process=event.process)
        if dump.label.startswith("Outgoing"):
            if thread.outgoing is not None:  # sent before, never answered
                thread.outgoing.incomplete = True
                thread.outgoing.duration = None  # it held the start time
                out.append(thread.outgoing)
            apdu = ApduExchange(command=data, header=thread.header, reader=thread.reader,
                                command_span=dump.rows, **common)
            apdu.command_data = redacted(data)
            apdu.secret = None if apdu.command_data else iso7816.pin_apdu(data)
            apdu.duration = now  # the start; becomes the duration on the response
            thread.header = None
            thread.last_error = None
            thread.outgoing = apdu
            return
        apdu = thread.outgoing
        thread.outgoing = None
        if apdu is None:  # a response with no command: keep it visible
            apdu = ApduExchange(command=b"", **common)
            apdu.duration = None
        else:
            apdu.raw_lines = apdu.source_lines() + event.source_lines()
            apdu.raw = apdu.raw + event.raw
            apdu.end_line = event.end_line
            apdu.duration = round(now - (apdu.duration or now), 6)
        apdu.response = data
        if len(data) >= 2:
            apdu.sw = int.from_bytes(data[-2:], "big")
        out.append(apdu)
