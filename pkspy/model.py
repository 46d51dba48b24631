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
    problems: list[str] = field(default_factory=list)  # lines or values not understood

    def arg(self, name: str, direction: str | None = None) -> Arg | None:
        for a in self.args:
            if a.name == name and (direction is None or a.direction == direction):
                return a
        return None


@dataclass(slots=True, kw_only=True)
class ApduExchange(Event):
    kind: ClassVar[str] = "apdu"

    command: bytes | Redacted
    response: bytes | Redacted | None = None
    sw: int | None = None
    reader: str | None = None


@dataclass(slots=True, kw_only=True)
class DebugLine(Event):
    kind: ClassVar[str] = "debug"

    module: str | None = None
    file: str | None = None
    src_line: int | None = None
    function: str | None = None
    message: str = ""
    depth: int | None = None


@dataclass(slots=True, kw_only=True)
class Unparsed(Event):
    """Lines no parser understood: shown as they are, never dropped."""

    kind: ClassVar[str] = "unparsed"
    reason: str = ""


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
            if f.name in ("raw", "span"):
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
