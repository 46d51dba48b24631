"""pcsc-lite's libpcscspy raw stream (src/spy/libpcscspy.c), pcsc-lite 1.8.2 to 2.x.

Every line is ``<TID>@<payload>``, the TID upper-case hex. A call is::

    7F73F03D6740@>|1795787271|758823|SCardTransmit        entry: epoch sec|usec
    7F73F03D6740@0x5A5A0001                               values, one a line,
    7F73F03D6740@00 20 00 81 06 31 32 33 34 35 36          in the order of the
    ...                                                    function's layout
    7F73F03D6740@<|1795787271|758846|SCardTransmit|Command successful.|0x00000000

No value is labelled: the stream is positional. The values of a call are
collected per thread and read at its exit line against the function's layout
(below, from libpcscspy.c); a call whose values do not fit is kept, marked,
and the next entry line resyncs. The exit line lost its error text in 2.2.0;
SCardTransmit gained its PCI values in 1.9.9. A 1.9.9 spy crashes the program
on a NULL pioRecvPci after the send buffer: that call ends incomplete.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone

from decoders import iso7816
from pkspy.formats._masked import from_pairs, redacted
from pkspy.model import ApduExchange, Arg, Event, PcscCall, Unparsed

LINE = re.compile(r"^([0-9A-F]+)@(.*)$")
ENTRY = re.compile(r"^>\|(\d+)\|(\d+)\|(\w+)$")
EXIT = re.compile(r"^<\|(\d+)\|(\d+)\|(\w+)\|(?:(.*)\|)?(0x[0-9A-Fa-f]+)$")
HEXLINE = re.compile(r"^(?:(?:[0-9A-F]{2}|\*\*) )+$")  # ** : a byte pkspy redact masked
HEXNUM = re.compile(r"^0x[0-9A-Fa-f]+$")

# Layouts: values before the real call, "|", values after it. Kinds: a plain value
# (int or text), "buf" (a length line, then hex / empty / NULL), "nstr" (a length,
# then one line per string), "text".
LAYOUTS = {
    "SCardEstablishContext": "dwScope | hContext",
    "SCardReleaseContext": "hContext |",
    "SCardIsValidContext": "hContext |",
    "SCardCancel": "hContext |",
    "SCardListReaders": "hContext mszGroups:text | mszReaders:nstr",
    "SCardListReaderGroups": "hContext pcchGroups | mszGroups:nstr",
    "SCardFreeMemory": "hContext pvMem:text |",
    "SCardConnect": "hContext szReader:text dwShareMode dwPreferredProtocols phCard "
                    "pdwActiveProtocol | phCard dwActiveProtocol",
    "SCardReconnect": "hCard dwShareMode dwPreferredProtocols dwInitialization | "
                      "dwActiveProtocol",
    "SCardDisconnect": "hCard dwDisposition |",
    "SCardBeginTransaction": "hCard |",
    "SCardEndTransaction": "hCard dwDisposition |",
    "SCardStatus": "hCard pcchReaderLen pcbAtrLen | szReaderName:nstr dwState dwProtocol "
                   "bAtr:buf",
    "SCardControl": "hCard dwControlCode bSendBuffer:buf | bRecvBuffer:buf",
    "SCardControl132": "hCard dwControlCode bSendBuffer:buf | bRecvBuffer:buf",
    "SCardGetAttrib": "hCard dwAttrId | bAttr:buf",
    "SCardSetAttrib": "hCard dwAttrId bAttr:buf |",
}


class LayoutError(ValueError):
    pass


class _Values:
    """The value lines of one call, read in order."""

    def __init__(self, lines: list[str]) -> None:
        self.lines = lines
        self.at = 0

    def next(self) -> str:
        if self.at >= len(self.lines):
            raise LayoutError(f"{len(self.lines)} value lines, more expected")
        self.at += 1
        return self.lines[self.at - 1]

    def left(self) -> int:
        return len(self.lines) - self.at

    def value(self) -> int:
        v = self.next()
        if not HEXNUM.match(v):
            raise LayoutError(f"a number expected, not {v[:40]!r}")
        return int(v, 16)

    def buf(self) -> bytes | None:
        length = self.next()
        if length == "NULL":
            return None
        if not HEXNUM.match(length):
            raise LayoutError(f"a buffer length expected, not {length[:40]!r}")
        data = self.next() if self.left() else "NULL"
        if data == "NULL":
            return None
        if data and not HEXLINE.match(data):
            raise LayoutError(f"not a byte buffer: {data[:40]!r}")
        return from_pairs(data.split())

    def nstr(self) -> list[str] | None:
        length = self.next()
        if length == "NULL":
            if self.left() and self.lines[self.at] == '""':
                self.at += 1
            return None
        if not HEXNUM.match(length):
            raise LayoutError(f"a string length expected, not {length[:40]!r}")
        total = int(length, 16)
        strings, used = [], 0
        while used < total and self.left():
            s = self.next()
            strings.append(s)
            used += len(s.encode()) + 1
        return strings


def _read(layout: str, values: _Values, args: list[Arg] | None = None) -> list[Arg]:
    """Read values by a layout into ``args``; what was read stays there on an error."""
    args = [] if args is None else args
    direction = "in"
    for item in layout.split():
        if item == "|":
            direction = "out"
            continue
        name, _, kind = item.partition(":")
        if kind == "buf":
            data = values.buf()
            args.append(Arg(name=name, direction=direction, kind="buffer", value=data,
                            length=None if data is None else len(data)))
        elif kind == "nstr":
            args.append(Arg(name=name, direction=direction, kind="text", value=values.nstr()))
        elif kind == "text":
            args.append(Arg(name=name, direction=direction, kind="text", value=values.next()))
        else:
            args.append(Arg(name=name, direction=direction, kind="ulong", value=values.value()))
    return args


def _status_change(values: _Values) -> list[Arg]:
    args = _read("hContext dwTimeout cReaders", values)
    count = args[-1].value if isinstance(args[-1].value, int) else 0
    for direction in ("in", "out"):
        for _ in range(count):
            for a in _read("szReader:text dwCurrentState dwEventState bAtr:buf", values):
                a.direction = direction
                args.append(a)
    return args


def _stamp(sec: str, usec: str) -> tuple[float | None, str | None]:
    try:
        t = int(sec) + int(usec) / 1e6
        when = datetime.fromtimestamp(t, timezone.utc)
    except (OverflowError, OSError, ValueError):  # digits no clock gives: no time
        return None, None
    return t, when.strftime("%Y-%m-%d %H:%M:%S.") + f"{int(usec) // 1000:03d}Z"


class _Call:
    __slots__ = ("function", "line", "lines", "offset", "raw", "start", "time", "values")

    def __init__(self, function: str, line: int, offset: int, raw: str, start: float | None,
                 time: str | None) -> None:
        self.function = function
        self.line = line
        self.offset = offset
        self.raw = [raw]
        self.lines = [line]  # other threads' lines may come between a call's lines
        self.values: list[tuple[str, int]] = []  # (payload, index in raw)
        self.start = start
        self.time = time


class PcscSpyRawParser:
    format = "pcsc-spy-raw"

    def __init__(self) -> None:
        self._open: dict[str, _Call] = {}  # per thread
        self._readers: dict[int, str] = {}  # hCard -> reader name
        self._threads: dict[str, int] = {}

    def feed(self, text: str, lineno: int, offset: int) -> list[Event]:
        out: list[Event] = []
        m = LINE.match(text)
        if not m:
            if text.strip():
                out.append(Unparsed(line=lineno, end_line=lineno, offset=offset, raw=[text],
                                    process=0, reason="not a libpcscspy line"))
            return out
        tid, payload = m.groups()
        self._threads.setdefault(tid, len(self._threads))
        e = ENTRY.match(payload)
        if e:
            if tid in self._open:  # no exit line: the stream lost its step
                out.append(self._finish(tid, None, None, incomplete=True))
            start, time = _stamp(e.group(1), e.group(2))
            self._open[tid] = _Call(e.group(3), lineno, offset, text, start, time)
            return out
        call = self._open.get(tid)
        if call is None:
            out.append(Unparsed(line=lineno, end_line=lineno, offset=offset, raw=[text],
                                process=0, tid=tid, reason="a value outside any call"))
            return out
        call.raw.append(text)
        call.lines.append(lineno)
        x = EXIT.match(payload)
        if x and x.group(3) == call.function:
            end, _ = _stamp(x.group(1), x.group(2))
            took = round(end - call.start, 6) if None not in (end, call.start) else None
            out.append(self._finish(tid, int(x.group(5), 16), took))
        else:
            call.values.append((payload, len(call.raw) - 1))
        return out

    def close(self) -> list[Event]:
        return [self._finish(tid, None, None, incomplete=True) for tid in list(self._open)]

    def _finish(self, tid: str, rv: int | None, duration: float | None,
                incomplete: bool = False) -> Event:
        call = self._open.pop(tid)
        common = dict(line=call.line, end_line=call.lines[-1], offset=call.offset, raw=call.raw,
                      raw_lines=call.lines, process=0, tid=tid, time=call.time)
        values = _Values([v for v, _ in call.values])
        if call.function == "SCardTransmit":
            return self._transmit(call, values, rv, duration, incomplete, common)
        event = PcscCall(function=call.function, rv=rv, duration=duration,
                         incomplete=incomplete, **common)
        try:
            if call.function == "SCardGetStatusChange":
                event.args = _status_change(values)
            elif call.function in LAYOUTS:
                event.args = _read(LAYOUTS[call.function], values)
            else:
                event.problems.append(f"unknown function {call.function}")
            if values.left() and not incomplete:
                event.problems.append(f"{values.left()} value line(s) more than the layout")
        except LayoutError as err:
            if not incomplete:
                event.problems.append(f"values do not fit {call.function}: {err}")
        self._learn_reader(event)
        return event

    def _learn_reader(self, event: PcscCall) -> None:
        if event.function == "SCardConnect" and event.rv == 0:
            reader = next((a.value for a in event.args if a.name == "szReader"), None)
            handle = next((a.value for a in event.args
                           if a.name == "phCard" and a.direction == "out"), None)
            if isinstance(handle, int) and isinstance(reader, str):
                self._readers[handle] = reader

    def _transmit(self, call: _Call, values: _Values, rv, duration, incomplete,
                  common) -> ApduExchange:
        lines = values.lines
        # <=1.9.8: hCard, send, recv; 1.9.9+: PCI protocol and length before each buffer
        with_pci = not (len(lines) > 2 and HEXLINE.match(lines[2]))
        layout = ("hCard sendProtocol sendPciLength send:buf | recvProtocol recvPciLength "
                  "recv:buf" if with_pci else "hCard send:buf | recv:buf")
        command, response, handle, problem = b"", None, None, None
        span = None
        args: list[Arg] = []
        try:
            _read(layout, values, args)
        except LayoutError as err:
            problem = str(err)
        for a in args:
            if a.name == "send":
                command = a.value or b""
            elif a.name == "recv":
                response = a.value
            elif a.name == "hCard":
                handle = a.value
        send_at = 4 if with_pci else 2  # the send buffer's hex, among the values
        if problem and not command:
            # Out of step (a value line lost or one too many): the first byte buffer
            # is still the command, and a PIN in it must still be found and masked.
            send_at = next((i for i, (v, _) in enumerate(call.values)
                            if v and HEXLINE.match(v)), len(call.values))
            if send_at < len(call.values):
                command = from_pairs(call.values[send_at][0].split())
        if send_at < len(call.values) and (args or problem):
            i = call.values[send_at][1]
            span = (i, i)
        apdu = ApduExchange(command=command, function="SCardTransmit", rv=rv,
                            duration=duration, command_span=span, command_row_bytes=0,
                            reader=self._readers.get(handle) if isinstance(handle, int) else None,
                            **common)
        apdu.incomplete = incomplete or response is None
        if rv == 0 and response is not None:
            apdu.response = response
            if len(response) >= 2:
                apdu.sw = int.from_bytes(response[-2:], "big")
        apdu.command_data = redacted(command)
        apdu.secret = None if apdu.command_data else iso7816.pin_apdu(command)
        if problem and not incomplete:
            apdu.header = f"[values do not fit SCardTransmit: {problem}]"
        return apdu
