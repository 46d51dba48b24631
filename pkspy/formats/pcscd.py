"""pcscd's own debug output: ``pcscd --foreground --debug --apdu`` (src/debuglog.c),
pcsc-lite 1.9.9 to 2.x::

    00000002 winscard.c:1596:SCardTransmit() Send Protocol: T=1
    00000003 APDU: 00 20 00 00 04 31 32 33 34
    00043909 SW: 90 00
    00000004 winscard_svc.c:694:ContextThread() TRANSMIT for client 10, rv=SCARD_S_SUCCESS

Every line starts with the **microseconds since the previous line** (``%.8d``,
capped at 99999999 when 100 s or more went by, negative if the clock stepped
back); with ``-T`` (or on a terminal that pcscd knows) the delta is coloured and
the thread id follows in brackets (``%lu`` with glibc, ``%p`` elsewhere), and
the message is coloured by level. The first two lines of a ``-T`` run are still
plain: they are logged before the option is read. ``debug_msg`` of old drivers
prints lines with no prefix at all.

**Time.** The log has no clock: no date, no time of day, only deltas. The
parser adds them up into an offset from the first line, in seconds, and
gives it as ``time`` in the form ``+12.345678s``. After a capped delta the
real offset is larger than the sum: from there on ``time`` reads
``≥+112.345678s``. An exchange's ``duration`` is the offset of its ``SW:``
line minus that of its ``APDU:`` line: the card's time, seen from pcscd.

``APDU:`` (the command) and ``SW:`` (the **whole** response, data and status
word) are paired into an ApduExchange; pcscd logs ``SW:`` even when the driver
failed (``Card not transacted: …`` follows), and then the exchange has no
response. When the ``TRANSMIT for client N, rv=…`` line of the exchange is in
the log (debug level), the exchange waits for it and carries that result;
the events behind it wait too, so that they keep their order. Pairing and the
reader use the thread id when the log has one; plain logs have none, and
there commands and responses pair in order, and the reader is the one the
latest client command connected to. Every other line is a DebugLine (module
``pcscd``, file, src_line, function, message), with ``rv`` where the line ends
with a result (``, rv=SCARD_…``, ``Status: rv=…``, ``Unknown error: 0x…``),
``reader`` where it names a reader and ``atr`` on ``Card ATR:`` lines. The
result pcscd appends to a message (``, rv=SCARD_…``) is taken out of
``message`` into ``rv``; a result that is part of the message (``Status:
rv=…``) stays in it.
"""

from __future__ import annotations

import re

from decoders import iso7816, pcsc
from pkspy.formats._colour import uncoloured
from pkspy.model import ApduExchange, DebugLine, Event, Unparsed

LINE = re.compile(r"^(?P<delta>-?\d{8,}) (?:\[(?P<tid>\d+|0x[0-9a-fA-F]+|\(nil\))\] )?"
                  r"(?P<msg>.*)$")
FRAME = re.compile(r"^(?P<file>[^\s:]+):(?P<line>\d+):(?P<func>[\w~]+)\(\) ?(?P<text>.*)$")
# log_xxd: a label, then every byte as "XX " (nothing for an empty buffer)
XXD = re.compile(r"^(?P<label>APDU: |SW: |Card ATR: |ATR: |TxBuffer |RxBuffer )"
                 r"(?P<hex>(?:[0-9A-F]{2} )*)$")
RV = re.compile(r"(?:^|[\s,:(])rv=(?P<name>SCARD_[A-Z_]+)\s*$")
RV_UNKNOWN = re.compile(r"(?:, |: )(?P<text>Unknown error: 0x[0-9A-Fa-f]{8})\s*$")
# What log_msg_rv appends to a message: a result of its own, kept in ``rv``.
RV_SUFFIX = re.compile(r", (?:rv=SCARD_[A-Z_]+|Unknown error: 0x[0-9A-Fa-f]{8})\s*$")
CAPPED = 99999999
RECEIVED = re.compile(r"^Received command: (?P<cmd>\w+) from client (?P<client>\d+)$")
TRANSMIT_DONE = re.compile(r"^TRANSMIT for client (?P<client>\d+), ")
NOT_TRANSACTED = re.compile(r"^Card not transacted: ")
READER_LINES = [
    re.compile(r"^Attempting startup of (?P<reader>.+) using \S+$"),
    re.compile(r"^Card inserted into (?P<reader>.+)$"),
    re.compile(r"^Card Removed From (?P<reader>.+)$"),
    re.compile(r"^Attempting Connect to (?P<reader>.+) using protocol: \d+$"),
    re.compile(r"^Waiting init for reader: (?P<reader>.+)$"),
    re.compile(r"^Stopping reader: (?P<reader>.+)$"),
    re.compile(r"^Reader (?P<reader>.+) disappeared$"),
]
CONNECT = re.compile(r"^Attempting Connect to (?P<reader>.+) using protocol: \d+$")
# Events held behind an exchange that waits for its result line: past this, let go.
MAX_HELD = 2000


class _Pending:
    """An exchange waiting for its SW line (``state="sw"``) or its result line (``"rv"``)."""

    __slots__ = ("apdu", "at", "expect_rv", "failed", "state")

    def __init__(self, apdu: ApduExchange, at: float, expect_rv: bool) -> None:
        self.apdu = apdu
        self.at = at  # offset of the APDU line
        self.expect_rv = expect_rv
        self.state = "sw"
        self.failed = False  # the driver failed: what the SW line shows is no answer


class PcscdParser:
    format = "pcscd"

    def __init__(self) -> None:
        self._offset = 0.0  # seconds since the first line
        self._capped = False
        self._queue: list[Event] = []  # events in line order, held behind a waiting exchange
        self._waiting: dict[int, _Pending] = {}  # id(apdu) -> pending
        self._open: dict[str | None, list[_Pending]] = {}  # per thread (None: plain log)
        self._transmits: dict[str | None, int] = {}  # TRANSMIT commands still running
        self._client: dict[str | None, str] = {}  # the client a thread serves now
        self._client_reader: dict[str, str] = {}

    # -- driving -------------------------------------------------------

    def feed(self, text: str, lineno: int, offset: int) -> list[Event]:
        clean = uncoloured(text)
        m = LINE.match(clean)
        if not m:
            if clean.strip():
                self._queue.append(Unparsed(
                    line=lineno, end_line=lineno, offset=offset, raw=[text], process=0,
                    reason="no pcscd time prefix (a driver's debug_msg, or another program)"))
            return self._release()
        delta = int(m["delta"])
        if delta >= CAPPED:
            self._capped = True
        self._offset += delta / 1e6
        tid = m["tid"]
        msg = m["msg"]
        common = dict(line=lineno, end_line=lineno, offset=offset, raw=[text], process=0,
                      tid=tid, time=self._time())
        x = XXD.match(msg)
        if x and x["label"] in ("APDU: ", "SW: "):
            data = bytes.fromhex(x["hex"])
            if x["label"] == "APDU: ":
                self._command(tid, data, common)
            else:
                self._response(tid, data, lineno, text, common)
            return self._release()
        event = DebugLine(module="pcscd", **common)
        if x:
            event.what = "dump"
            event.message = msg.rstrip()
            event.data = bytes.fromhex(x["hex"])
            if "ATR" in x["label"] and event.data:
                event.atr = event.data.hex().upper()
        else:
            f = FRAME.match(msg)
            if f:
                event.file, event.src_line = f["file"], int(f["line"])
                event.function, event.message = f["func"], f["text"]
            else:
                event.message = msg
            self._message(tid, event)
        self._queue.append(event)
        return self._release()

    def close(self) -> list[Event]:
        for pending in list(self._waiting.values()):
            if pending.state == "sw":
                pending.apdu.incomplete = True
        self._waiting.clear()
        self._open.clear()
        out, self._queue = self._queue, []
        return out

    def _time(self) -> str:
        return f"{'≥' if self._capped else ''}+{self._offset:.6f}s"

    def _release(self) -> list[Event]:
        """The events at the head of the queue that wait for nothing."""
        if len(self._queue) > MAX_HELD:  # a line that never came: stop waiting
            for pending in list(self._waiting.values()):
                if pending.state == "sw":
                    pending.apdu.incomplete = True
                self._done(pending)
        n = 0
        while n < len(self._queue) and id(self._queue[n]) not in self._waiting:
            n += 1
        out, self._queue = self._queue[:n], self._queue[n:]
        return out

    # -- exchanges -----------------------------------------------------

    def _command(self, tid: str | None, data: bytes, common: dict) -> None:
        pending_list = self._open.setdefault(tid, [])
        for earlier in [p for p in pending_list if p.state == "sw"]:
            # another command before this one's response: the earlier got none
            earlier.apdu.incomplete = True
            self._done(earlier)
        client = self._client.get(tid)
        expect_rv = self._transmits.get(tid, 0) > 0
        # The redactor masks the data bytes on the APDU line (command_span), and every
        # later copy of them: with the sweep of the secrets it learnt from ``command``.
        apdu = ApduExchange(command=data, reader=self._client_reader.get(client or ""),
                            function="SCardTransmit" if expect_rv else None,
                            command_span=(0, 0), command_row_bytes=0, **common)
        apdu.secret = iso7816.pin_apdu(data)
        pending = _Pending(apdu, self._offset, expect_rv)
        pending_list.append(pending)
        self._waiting[id(apdu)] = pending
        self._queue.append(apdu)

    def _response(self, tid: str | None, data: bytes, lineno: int, text: str,
                  common: dict) -> None:
        pending = next((p for p in self._open.get(tid, []) if p.state == "sw"), None)
        if pending is None:
            self._queue.append(ApduExchange(command=b"", response=data,
                                            sw=_sw(data), header="[a response with no command]",
                                            **common))
            return
        apdu = pending.apdu
        apdu.raw.append(text)
        if lineno != apdu.line + 1:  # other threads' lines came between
            apdu.raw_lines = [apdu.line, lineno]
        apdu.end_line = lineno
        apdu.response = data
        apdu.sw = _sw(data)
        apdu.duration = round(self._offset - pending.at, 6)
        pending.state = "rv"
        if not pending.expect_rv:
            self._done(pending)

    def _done(self, pending: _Pending) -> None:
        self._waiting.pop(id(pending.apdu), None)
        for key, pendings in self._open.items():
            if pending in pendings:
                pendings.remove(pending)
                if not pendings:
                    del self._open[key]
                break

    def _oldest(self, tid: str | None, state: str) -> _Pending | None:
        return next((p for p in self._open.get(tid, []) if p.state == state), None)

    # -- other lines ---------------------------------------------------

    def _message(self, tid: str | None, event: DebugLine) -> None:
        text = event.message
        r = RV.search(text)
        u = RV_UNKNOWN.search(text) if r is None else None
        if r is not None:
            event.rv = pcsc.value(r["name"])
            event.what = "pcsc"
        elif u is not None:
            event.rv = pcsc.by_text(u["text"])
            event.what = "pcsc"
        if event.what == "pcsc":
            event.message = RV_SUFFIX.sub("", text)  # "TRANSMIT for client 10", and rv
        for pattern in READER_LINES:
            m = pattern.match(text)
            if m:
                event.reader = m["reader"]
                break
        c = RECEIVED.match(text)
        if c:
            self._client[tid] = c["client"]
            if c["cmd"] == "TRANSMIT":
                self._transmits[tid] = self._transmits.get(tid, 0) + 1
            return
        c = CONNECT.match(text)
        if c and tid in self._client:
            self._client_reader[self._client[tid]] = c["reader"]
            return
        if NOT_TRANSACTED.match(text):
            pending = self._oldest(tid, "rv")
            if pending is not None:
                pending.failed = True
                pending.apdu.response = pending.apdu.sw = None
                pending.apdu.incomplete = True
            return
        if TRANSMIT_DONE.match(text):
            self._transmits[tid] = max(0, self._transmits.get(tid, 0) - 1)
            pending = self._oldest(tid, "rv")
            if pending is not None:
                pending.apdu.rv = event.rv
                pending.apdu.function = "SCardTransmit"
                self._done(pending)


def _sw(response: bytes) -> int | None:
    return int.from_bytes(response[-2:], "big") if len(response) >= 2 else None
