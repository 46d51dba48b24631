"""Two traces of the same program compared: where a failing run leaves a working one.

Each trace is read through the pipeline (redacted; there is no way to reveal
here) and boiled down to one normalised key per PKCS#11 call, PC/SC call,
APDU exchange, process start, and OpenSC debug line that reports a PKCS#11 or
PC/SC result (its other lines are its own inner workings), with what changes from run to run taken
out, as pcsc-lite's ``pcsc-spy --diffable`` does for PC/SC (it masks
hContext, hCard, pioSendPci/pioRecvPci and the times):

* times, pids, thread ids, sequence numbers, line numbers: never in a key;
* handles (sessions, objects, slots, PC/SC contexts and cards) are named in
  order of first appearance per process (``session#1``, ``object#2`` ...), so
  the same object in two runs gets the same name;
* pointers, buffers (data, signatures, PINs: already redacted), the values a
  module returns in templates, APDU data, and of info blocks all but flags,
  session state and mechanism sizes (serial numbers, clocks, free memory) are
  left out; what stays is the function, its enums, flags, counts, the
  templates asked for, the mechanism and the result; for an APDU CLA INS P1 P2
  and the status word.

The keys are compared with difflib. The first change is the divergence: its
kind says whether the same call came back with another result ("result"),
the same call had other arguments ("arguments"), or the calls themselves
differ ("sequence").
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from decoders import iso7816, pkcs11
from pkspy.analysis import attribute_value
from pkspy.model import (
    ApduExchange,
    Arg,
    Attribute,
    DebugLine,
    Event,
    PcscCall,
    Pkcs11Call,
    ProcessStart,
)
from pkspy.pipeline import open_events

CONTEXT = 3  # compared items shown before the divergence
SHOWN = 40  # differing items listed after it, per side
# difflib is quadratic at worst: past this many items left after the common
# start and end are cut, only the first ones are compared.
MAX_COMPARED = 20000

# Which handle space an argument's value lives in, by the name the tracer prints.
HANDLE_KINDS = {
    "hSession": "session", "*phSession": "session",
    "slotID": "slot", "pSlotList": "slot", "*pSlot": "slot",
    "hContext": "context", "phContext": "context",
    "hCard": "card", "phCard": "card",
}
OBJECT_HANDLES = {"hObject", "*phObject", "phObject", "*phNewObject", "hKey", "*phKey",
                  "hBaseKey", "hWrappingKey", "hUnwrappingKey", "hPublicKey", "hPrivateKey",
                  "*phPublicKey", "*phPrivateKey"}
# Out-parameters printed by PC/SC spies with the address they will be written to.
PCSC_POINTERS = {("phCard", "in"), ("pdwActiveProtocol", "in"), ("phContext", "in"),
                 ("pvMem", "in")}
# The high word of a reader state is an event counter: it differs in every run.
PCSC_STATES = {"dwCurrentState", "dwEventState", "dwState"}
SKIP_KINDS = {"pointer", "buffer", "interfaces"}
# Of an info block (token, slot, session, mechanism info), what tells a run's state
# rather than the run itself (serial numbers, clocks, free memory, descriptions).
INFO_KEPT = ("state", "flag_names", "min", "max")
SKIP_NAMES = {"pInitArgs", "pReserved", "pApplication", "Notify", "pvReserved1",
              "pvReserved2"}


@dataclass
class Item:
    """One compared record: its normalised key and where it is."""

    key: str
    event: Event
    what: str  # the function, or the APDU's instruction
    result: str | None  # CKR_* / SCARD_* name, or the status word


@dataclass
class Trace:
    path: str
    format: str = ""
    items: list[Item] = field(default_factory=list)
    unparsed: int = 0


class _Names:
    """Handles named in order of first appearance, per process and handle kind."""

    def __init__(self) -> None:
        self.names: dict[tuple[int | None, str, object], str] = {}
        self.counts: dict[tuple[int | None, str], int] = {}

    def __call__(self, process: int | None, kind: str, value: object) -> str:
        if value is None:
            return "-"
        if value == 0 and kind != "slot":  # CK_INVALID_HANDLE; slot 0 is a slot
            return f"{kind}:none"
        key = (process, kind, value)
        if key not in self.names:  # counted per process: a run more or less shifts nothing
            n = self.counts[(process, kind)] = self.counts.get((process, kind), 0) + 1
            self.names[key] = f"{kind}#{n}"
        return self.names[key]


def _handle_kind(name: str) -> str | None:
    if name in HANDLE_KINDS:
        return HANDLE_KINDS[name]
    if name in OBJECT_HANDLES:
        return "object"
    return None


UNAVAILABLE = (-1, 0xFFFFFFFF, 0xFFFFFFFFFFFFFFFF)  # CK_UNAVAILABLE_INFORMATION


def _template(attrs: Iterable[Attribute], direction: str | None, names_only: bool) -> str:
    """What a template asks for, decoded (secrets are already redacted); of the
    module's answer only which attributes it had: key material, serial numbers and
    the like differ in every run."""
    parts = []
    for a in attrs:
        if names_only:  # C_GetAttributeValue's in-template: buffers to fill, not values
            parts.append(a.name)
        elif direction == "out":
            parts.append(f"{a.name}=unavailable" if a.length in UNAVAILABLE else a.name)
        else:
            parts.append(f"{a.name}={attribute_value(a)}")
    return "{" + ", ".join(parts) + "}"


def _arg(arg: Arg, process: int | None, names: _Names, function: str | None = None
         ) -> str | None:
    if arg.kind in SKIP_KINDS or arg.name in SKIP_NAMES:
        return None
    if arg.direction == "in" and arg.name.lstrip("*").startswith("pul"):
        return None  # a length going in is a buffer's size (p11-kit prints it uninitialised)
    where = f"{arg.direction} " if arg.direction else ""
    kind = _handle_kind(arg.name)
    if kind is not None:
        values = arg.value if isinstance(arg.value, list) else [arg.value]
        return f"{where}{arg.name}=" + ",".join(names(process, kind, v) for v in values)
    if arg.kind == "objects" or arg.kind == "slots":
        values = arg.value if isinstance(arg.value, list) else []
        handle = "object" if arg.kind == "objects" else "slot"
        return f"{where}{arg.name}=[" + ",".join(names(process, handle, v) for v in values) + "]"
    if arg.kind == "template":
        return f"{where}{arg.name}=" + _template(arg.value or [], arg.direction,
                                                 function == "C_GetAttributeValue")
    if arg.kind == "info":
        info = arg.value if isinstance(arg.value, dict) else {}
        kept = [f"{k}={info[k]}" for k in INFO_KEPT if k in info]
        return f"{where}{arg.name}={{{', '.join(kept)}}}" if kept else None
    if arg.kind == "mechanism":
        return f"{where}{arg.name}={getattr(arg.value, 'name', arg.value)}"
    if arg.kind == "mechanisms":
        return f"{where}{arg.name}={len(arg.value or [])} mechanisms"
    if arg.kind == "text" and isinstance(arg.value, str) and arg.value.startswith("0x"):
        return None  # an address printed as text
    if arg.name in PCSC_STATES and isinstance(arg.value, int):
        return f"{where}{arg.name}=0x{arg.value & 0xFFFF:x}"
    return f"{where}{arg.name}={arg.value}"


def item(event: Event, names: _Names) -> Item | None:
    """The compared form of one event, or None for what is not compared (debug lines)."""
    p = event.process
    if isinstance(event, Pkcs11Call):
        rv = None if event.rv is None else pkcs11.ckr_name(event.rv) or f"0x{event.rv:x}"
        args = [a for a in (_arg(x, p, names, event.function) for x in event.args) if a]
        state = " [incomplete]" if event.incomplete else ""
        return Item(f"{event.function} {' '.join(args)} -> {rv}{state}", event,
                    event.function or "?", rv)
    if isinstance(event, PcscCall):
        args = [a for a in (_arg(x, p, names) for x in event.args
                            if (x.name, x.direction) not in PCSC_POINTERS) if a]
        rv = None if event.rv is None else f"0x{event.rv:08X}"
        return Item(f"{event.function} {' '.join(args)} -> {rv}", event, event.function, rv)
    if isinstance(event, ApduExchange):
        head = event.command[:4]
        ins = iso7816.ins_name(head[1], head[0], None, *head[2:4]) if len(head) == 4 else "?"
        sw = f"{event.sw:04X}" if event.sw is not None else "no response"
        return Item(f"APDU {head.hex(' ').upper()} ({ins}) -> {sw}", event, f"APDU {ins}", sw)
    if isinstance(event, DebugLine) and event.what == "pkcs11" and event.function:
        rv = None if event.rv is None else pkcs11.ckr_name(event.rv) or f"0x{event.rv:x}"
        return Item(f"{event.function} (in OpenSC's log) -> {rv}", event, event.function, rv)
    if isinstance(event, DebugLine) and event.what == "pcsc":
        rv = None if event.rv is None else f"0x{event.rv:08X}"
        return Item(f"PC/SC (in OpenSC's log) {event.message}", event, "PC/SC", rv)
    if isinstance(event, ProcessStart):
        module = (event.module or "?").rsplit("/", 1)[-1]
        return Item(f"process start {event.tool} {module}", event, "process start", None)
    return None


def read(path: str, fmt: str | None = None) -> Trace:
    trace = Trace(path)
    names = _Names()
    trace.format, events = open_events(path, fmt=fmt)
    for event in events:
        it = item(event, names)
        if it is not None:
            event.raw, event.raw_lines = [], None  # kept for its decoded line only
            trace.items.append(it)
        elif event.kind == "unparsed":
            trace.unparsed += 1
    return trace


def _opcodes(a: list[str], b: list[str]) -> Iterator[tuple[str, int, int, int, int]]:
    """difflib's opcodes, with the common start and end cut first (cheap), and the
    middle bounded: past MAX_COMPARED, the rest of each side is one last change."""
    start = 0
    while start < len(a) and start < len(b) and a[start] == b[start]:
        start += 1
    end = 0
    while end < len(a) - start and end < len(b) - start and a[-1 - end] == b[-1 - end]:
        end += 1
    stop_a = min(len(a) - end, start + MAX_COMPARED)
    stop_b = min(len(b) - end, start + MAX_COMPARED)
    if start:
        yield "equal", 0, start, 0, start
    if stop_a > start or stop_b > start:
        matcher = difflib.SequenceMatcher(None, a[start:stop_a], b[start:stop_b],
                                          autojunk=False)
        for tag, i1, i2, j1, j2 in matcher.get_opcodes():
            yield tag, i1 + start, i2 + start, j1 + start, j2 + start
    rest_a, rest_b = len(a) - end - stop_a, len(b) - end - stop_b
    if rest_a or rest_b:  # not compared one by one
        tag = "replace" if rest_a and rest_b else "delete" if rest_a else "insert"
        yield tag, stop_a, len(a) - end, stop_b, len(b) - end
    if end:
        yield "equal", len(a) - end, len(a), len(b) - end, len(b)


def _divergence_kind(a: Item | None, b: Item | None) -> str:
    if a is None or b is None or a.what != b.what:
        return "sequence"
    return "result" if a.result != b.result else "arguments"


Located = tuple[int, Item]  # an item and its index among its trace's compared items


@dataclass
class Divergence:
    kind: str  # result, arguments or sequence
    a: Located | None  # None: B has items here that A lacks
    b: Located | None
    a_index: int  # where each side stands
    b_index: int
    context: list[Located]  # the last items both runs had in common before it


@dataclass
class Change:
    op: str  # difflib's replace, delete (only in A) or insert (only in B)
    a_range: tuple[int, int]
    b_range: tuple[int, int]
    a: list[Located]  # at most SHOWN of them
    b: list[Located]


@dataclass
class Comparison:
    a: Trace
    b: Trace
    first: Divergence | None = None
    changes: list[Change] = field(default_factory=list)
    changes_cut: int = 0  # changes not listed

    @property
    def same(self) -> bool:
        return self.first is None


def compare(a: Trace, b: Trace) -> Comparison:
    keys_a = [it.key for it in a.items]
    keys_b = [it.key for it in b.items]
    ops = [op for op in _opcodes(keys_a, keys_b) if op[0] != "equal"]
    out = Comparison(a, b)
    if not ops:
        return out
    _tag, i1, i2, j1, j2 = ops[0]
    first_a = (i1, a.items[i1]) if i1 < i2 else None
    first_b = (j1, b.items[j1]) if j1 < j2 else None
    out.first = Divergence(
        _divergence_kind(first_a and first_a[1], first_b and first_b[1]), first_a, first_b,
        i1, j1, [(i, a.items[i]) for i in range(max(0, i1 - CONTEXT), i1)])
    shown = 0
    for n, (tag, i1, i2, j1, j2) in enumerate(ops):
        if shown >= SHOWN:
            out.changes_cut = len(ops) - n
            break
        take_a, take_b = min(i2 - i1, SHOWN), min(j2 - j1, SHOWN)
        out.changes.append(Change(tag, (i1, i2), (j1, j2),
                                  [(i, a.items[i]) for i in range(i1, i1 + take_a)],
                                  [(j, b.items[j]) for j in range(j1, j1 + take_b)]))
        shown += max(take_a, take_b)
    return out


def diff(path_a: str, path_b: str, fmt: str | None = None) -> Comparison:
    """Raises SourceError (one line) for a path that cannot be read as a trace."""
    return compare(read(path_a, fmt), read(path_b, fmt))
