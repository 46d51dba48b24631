"""The event model: the one vocabulary that parsers, redaction, analysis and
front ends share (see DESIGN.md).

Every event keeps where it came from (first and last line number, byte offset
of its first line, the raw lines themselves) so that any view can jump back to
the text. Values are kept as the trace gave them (ints, bytes, names); naming
and decoding happen in ``decoders`` and the front ends.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, is_dataclass
from typing import ClassVar


@dataclass(slots=True, frozen=True)
class Redacted:
    """Stands where a secret was: says what it was and how long, never the value."""

    what: str
    length: int | None = None

    def __str__(self) -> str:
        if self.length is None:
            return f"‹{self.what} redacted›"
        unit = "byte" if self.length == 1 else "bytes"
        return f"‹{self.what} redacted, {self.length} {unit}›"


@dataclass(slots=True, kw_only=True)
class Attribute:
    """One entry of a CK_ATTRIBUTE template.

    ``value`` is bytes for dumped buffers, bool for booleans, a name (str) for
    enums, None where the trace shows only pointer and length.
    """

    name: str
    type: int | None
    value: object = None
    length: int | None = None
    secret: str | None = None  # what kind of secret the value is, set by the parser
    note: str | None = None  # e.g. the DN line the spy adds after CKA_SUBJECT
    span: tuple[int, int] | None = None  # index range of its lines in the event's raw


@dataclass(slots=True, kw_only=True)
class Mechanism:
    name: str
    type: int | None
    params: list[Arg] = field(default_factory=list)


@dataclass(slots=True, kw_only=True)
class Arg:
    """One printed argument of a call, in the order the trace printed it.

    kind is one of: ulong, pointer, enum, text, buffer, template, mechanism,
    info, slots, mechanisms, objects, interfaces.
    """

    name: str
    value: object = None
    direction: str | None = None  # "in" / "out"; None for lines printed without one
    kind: str = "ulong"
    length: int | None = None  # declared length of buffers and templates
    secret: str | None = None
    span: tuple[int, int] | None = None
    object_class: int | None = None  # templates: the CKO_* of the object they describe


@dataclass(slots=True, kw_only=True)
class Event:
    kind: ClassVar[str] = "event"

    line: int  # first line, 1-based
    end_line: int  # last line
    offset: int  # byte offset of the first line
    raw: list[str] = field(default_factory=list, repr=False)
    process: int | None = None  # 0-based index of the run (banner) in its file
    pid: int | None = None
    tid: str | None = None  # opaque: the spy prints a decimal behind "0x"
    time: str | None = None  # local time as printed, "YYYY-MM-DD HH:MM:SS.mmm"
    source: str | None = None  # file name, when several are read together
    # The source line of each raw line, where they are not line, line+1, ...
    # (an exchange paired from two messages, a call whose thread was interleaved).
    raw_lines: list[int] | None = field(default=None, repr=False)

    def source_lines(self) -> list[int]:
        """The line number of each entry of ``raw``."""
        if self.raw_lines is not None:
            return self.raw_lines
        return list(range(self.line, self.line + len(self.raw)))


@dataclass(slots=True, kw_only=True)
class ProcessStart(Event):
    """A process attached to the trace: the spy's banner and its loaded module."""

    kind: ClassVar[str] = "process"
    tool: str = "pkcs11-spy"
    module: str | None = None
    errors: list[str] = field(default_factory=list)


@dataclass(slots=True, kw_only=True)
class Pkcs11Call(Event):
    kind: ClassVar[str] = "call"

    function: str | None  # None for a result that arrived with no call header
    seq: int | None = None  # the number the tracer printed
    args: list[Arg] = field(default_factory=list)
    rv: int | None = None  # None while the call has not returned
    rv_text: str | None = None  # the name as the trace printed it, "(null)" included
    incomplete: bool = False  # the record ended before its result
    torn: str | None = None  # why the record looks torn apart by threads
    duration: float | None = None  # seconds the module took, where the tracer times calls
    problems: list[str] = field(default_factory=list)  # lines or values not understood

    def arg(self, name: str, direction: str | None = None) -> Arg | None:
        for a in self.args:
            if a.name == name and (direction is None or a.direction == direction):
                return a
        return None


@dataclass(slots=True, kw_only=True)
class ApduExchange(Event):
    """A command APDU and the card's response, as one exchange.

    When the command's data is a secret (a PIN in VERIFY, CHANGE REFERENCE
    DATA, RESET RETRY COUNTER...), the parser names it in ``secret`` and the
    redactor cuts ``command`` to its header and puts the marker in
    ``command_data``.
    """

    kind: ClassVar[str] = "apdu"

    command: bytes
    response: bytes | None = None  # None while (or if) the card has not answered
    sw: int | None = None
    reader: str | None = None
    header: str | None = None  # the tracer's own summary line (OpenSC: "CLA:0, INS:A4, ...")
    duration: float | None = None  # seconds from command to response
    secret: str | None = None
    command_data: Redacted | None = None
    command_span: tuple[int, int] | None = None  # raw lines of the command dump
    command_header_len: int = 4  # bytes before the data: CLA INS P1 P2 (+ Lc)
    command_row_bytes: int = 16  # bytes per dump row in the raw text; 0: all on one line
    incomplete: bool = False  # no response came (the trace ended, or another command followed)
    function: str | None = None  # the transport call that carried it (SCardTransmit)
    rv: int | None = None  # that call's result (SCARD_*), where the trace shows it


@dataclass(slots=True, kw_only=True)
class PcscCall(Event):
    """A PC/SC call (SCardConnect, SCardStatus...) other than a transmit, which is
    an ApduExchange. ``args`` holds the values the spy printed, in order."""

    kind: ClassVar[str] = "pcsc"

    function: str
    args: list[Arg] = field(default_factory=list)
    rv: int | None = None
    duration: float | None = None
    incomplete: bool = False
    problems: list[str] = field(default_factory=list)


@dataclass(slots=True, kw_only=True)
class DebugLine(Event):
    """One message of a tracer's internal log (OpenSC's sc_do_log).

    ``what`` says which kind: called, returned, message, dump, pcsc, pkcs11.
    """

    kind: ClassVar[str] = "debug"

    module: str | None = None  # OpenSC's app name: opensc-tool, opensc-pkcs11...
    file: str | None = None
    src_line: int | None = None
    function: str | None = None
    message: str = ""
    what: str = "message"
    depth: int | None = None  # call depth in its thread
    error: int | None = None  # SC_ERROR_* code of a failed return or check
    origin: bool = False  # the innermost function where this failure began
    duration: float | None = None  # seconds between "called" and "returning"
    rv: int | None = None  # CKR_* or SCARD_* result the line reports
    data: bytes | None = None  # bytes of a hex dump other than an APDU
    secret: str | None = None  # what secret the message holds (set by the parser)
    secret_text: str | None = None  # the secret itself, for the redactor to remove
    reader: str | None = None  # a reader the line names
    atr: str | None = None  # an ATR the line shows, as hex


@dataclass(slots=True, kw_only=True)
class Unparsed(Event):
    """Lines no parser understood: shown as they are, never dropped."""

    kind: ClassVar[str] = "unparsed"
    reason: str = ""


# Positions inside raw lines, and a secret kept only until the redactor takes it.
_NOT_JSON = frozenset({"raw", "raw_lines", "span", "command_span", "command_header_len",
                       "command_row_bytes", "secret_text"})


def to_json(value: object) -> object:
    """Plain JSON-able data for an event or any value inside one."""
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, Redacted):
        return str(value)
    if is_dataclass(value):
        out: dict[str, object] = {}
        if isinstance(value, Event):
            out["kind"] = value.kind
        for f in fields(value):
            if f.name in _NOT_JSON:
                continue
            v = getattr(value, f.name)
            if v is None or v == []:
                continue
            out[f.name] = to_json(v)
        return out
    if isinstance(value, dict):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    return value
