"""pkcs11-logger 2.x logs (Pkcs11Interop/pkcs11-logger: src/log.c, src/pkcs11-logger.c).

Every line starts with the process id (``%0#10x : ``) and the thread id
(``%0#18lx : ``; ``%0#10x`` before 2.3.0) unless PKCS11_LOGGER_FLAGS 0x02 /
0x04 turn them off. A call, in 2.3.0::

    0x00004c10 : 0x00007f53d129b840 : ****************************...
    0x00004c10 : 0x00007f53d129b840 : 2026-11-27 17:17:30.032962 - Entered C_Login
    0x00004c10 : 0x00007f53d129b840 : Input
    0x00004c10 : 0x00007f53d129b840 :  hSession: 1
    0x00004c10 : 0x00007f53d129b840 :  userType: 0 (CKU_SO)
    0x00004c10 : 0x00007f53d129b840 :  pPin: 0x7ffd7a71ea18
    0x00004c10 : 0x00007f53d129b840 :  *pPin: *** Intentionally hidden ***   <- flag 0x08 prints it
    0x00004c10 : 0x00007f53d129b840 :  ulPinLen: 8
    0x00004c10 : 0x00007f53d129b840 : 2026-11-27 17:17:30.032975 - Calling C_Login
    0x00004c10 : 0x00007f53d129b840 : 2026-11-27 17:17:30.037483 - Received response from C_Login
    0x00004c10 : 0x00007f53d129b840 : 2026-11-27 17:17:30.037490 - Returning 0 (CKR_OK)

2.0-2.2 print the time in the separator (``*** 2016-04-03 12:00:00 ***``),
start a call with an untimed ``Calling C_X`` and end it with ``Returning``.
Byte values are ``HEX(...)`` (every attribute value, data, signatures);
PINs are printed as text with flag 0x08. The logger takes a lock per line,
not per call, so threads interleave lines: records are kept per (pid, tid).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from decoders import pkcs11
from pkspy.formats._inline import (
    SECRET_BUFFERS,
    already_redacted,
    extend,
    finish_call,
    printed,
    typed_value,
)
from pkspy.model import (
    Arg,
    Attribute,
    DebugLine,
    Event,
    Mechanism,
    Pkcs11Call,
    ProcessStart,
    Redacted,
    Unparsed,
)

IDS = re.compile(r"^((?:0x)?[0-9a-fA-F]{8,16}) : (?:((?:0x)?[0-9a-fA-F]{8,16}) : )?")
STAMP = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}) - (.*?)\s*$")
SEPARATOR = re.compile(r"^\*{20,}(?: (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) \*{3})?\s*$")
ENTERED = re.compile(r"^Entered (C_\w+)$")
CALLING = re.compile(r"^Calling (C_\w+)$")
RECEIVED = re.compile(r"^Received response from (C_\w+)$")
RETURNING = re.compile(r"^Returning (\d+) \((.*)\)$")
BANNER = re.compile(r"^PKCS11-LOGGER (\S+)\s*$")
LOADING = re.compile(r'^Loading library "(.*)"$')
# The loader's own steps (src/dl.c, src/init.c): part of the process start.
LOADER = re.compile(r"^(?:PKCS#11 logging proxy module|Developed as a part of the Pkcs11Interop"
                    r"|Please visit www\.pkcs11interop\.net|NOTE: |Successfully |Unable to |"
                    r"Retrieving function pointer|Calling C_GetFunctionList function|"
                    r"Received response from C_GetFunctionList function|Unloading library)")
PARAM = re.compile(r"^( +)(\*?)(\w+)(?:\[(\d+)\])?:(?: (.*?))?\s*$")
TEMPLATE_MARK = re.compile(r"^  \*\*\* (Begin|End) attribute template \*\*\*\s*$")
ATTRIBUTE_N = re.compile(r"^  Attribute (\d+)\s*$")
NUMBER_NAME = re.compile(r"^(\d+)(?: \((.*)\))?$")
HEX = re.compile(r"^HEX\(([^)]*)\)$")
HIDDEN = "*** Intentionally hidden ***"
UNREADABLE = "*** cannot be displayed ***"

# Decisive first lines: the banner, a separator, a timestamped step, or "Input"
# behind a pid (and tid) prefix.
SIGN = re.compile(
    r"^(?:(?:0x)?[0-9a-fA-F]{8,16} : ){0,2}(?:PKCS11-LOGGER \d|\*{30,}"
    r"|\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6} - (?:Entered|Loading library|Returning) )")

# PINs printed as text (pkcs11_logger_log_nonzero_string), and the length argument after them.
PIN_ARGS = {"pPin": "ulPinLen", "pOldPin": "ulOldLen", "pNewPin": "ulNewLen"}
LENGTHS = {v: k for k, v in PIN_ARGS.items()}
RENAMES = {"*phKey": "hKey", "*phPublicKey": "hPublicKey", "*phPrivateKey": "hPrivateKey"}
LIST_KINDS = {"phObject": "objects", "pSlotList": "slots", "pMechanismList": "mechanisms"}
UNSIGNED_MINUS_ONE = (0xFFFFFFFFFFFFFFFF, 0xFFFFFFFF)


@dataclass
class _Thread:
    """What one (pid, tid) is in the middle of."""

    key: tuple[str | None, str | None]
    process: int
    start: ProcessStart | None = None  # the banner and loader lines, until the first call
    held: list[tuple[str, int, int]] = field(default_factory=list)  # separators before a call
    call: Pkcs11Call | None = None
    lines: list[int] = field(default_factory=list)
    direction: str | None = None
    target: Arg | None = None  # the 1-space argument that 2- and 3-space lines belong to
    template: Arg | None = None
    attr: Attribute | None = None
    nested: int = 0
    called: str | None = None  # time of "Calling C_X" (2.3): the module's call began


class Pkcs11LoggerParser:
    """Incremental parser for pkcs11-logger 2.x logs."""

    format = "pkcs11-logger"

    def __init__(self) -> None:
        self._threads: dict[tuple[str | None, str | None], _Thread] = {}
        self._processes: dict[str | None, int] = {}  # pid -> process index
        self._runs = 0  # processes so far
        self._used: set[str | None] = set()  # pids whose process showed a banner or call
        self._classes: dict[int, dict[int, int]] = {}  # per process: handle -> CKO_*
        self._seq: dict[int, int] = {}  # per process: calls so far (the logger numbers none)

    def feed(self, text: str, lineno: int, offset: int) -> list[Event]:
        out: list[Event] = []
        try:
            self._line(text, lineno, offset, out)
        except (ValueError, IndexError, KeyError, AttributeError, TypeError) as e:
            out.append(Unparsed(line=lineno, end_line=lineno, offset=offset, raw=[text],
                                reason=f"parser error: {type(e).__name__}: {e}"))
        return out

    def close(self) -> list[Event]:
        out: list[Event] = []
        for t in self._threads.values():
            if t.call is not None:
                self._finish(t, out, incomplete=True)
            self._flush_start(t, out)
            self._flush_held(t, out)
        return out

    # -- lines -------------------------------------------------------------

    def _line(self, text: str, lineno: int, offset: int, out: list[Event]) -> None:
        m = IDS.match(text)
        pid = tid = None
        if m:
            pid, tid = m.group(1), m.group(2)
            if tid is None and len(pid) == 18:  # flag 0x02: the thread id alone
                pid, tid = None, pid
        col = m.end() if m else 0
        msg = text[col:]
        if m is None and not msg.strip() and None not in self._processes:
            return  # a blank line before any pid-less one (a paste's margin): no process
        t = self._thread(pid, tid, msg, out)
        stamp = STAMP.match(msg)
        when, step = (stamp.group(1), stamp.group(2)) if stamp else (None, msg.rstrip())
        if SEPARATOR.match(msg):
            t.held.append((text, lineno, offset))
            return
        if BANNER.match(step) or (t.start is not None and (LOADER.match(step)
                                                            or LOADING.match(step))):
            self._start_line(t, text, lineno, offset, step, out)
            return
        m = ENTERED.match(step) if when else None
        if m is None and not when:
            m = CALLING.match(step)  # 2.0-2.2: an untimed "Calling C_X" begins the call
        if m:
            self._begin(t, m.group(1), when or self._held_time(t), lineno, offset, out)
            self._add(t, text, lineno)
            return
        call = t.call
        if call is None and (step in ("Input", "Output") or PARAM.match(msg)):
            # the trace begins (or was cut) inside a call: its values may hold a PIN
            call = self._begin(t, None, when, lineno, offset, out)
            call.torn = "lines of a call whose header the trace does not have (cut?)"
        if call is None:
            if LOADER.match(step) or LOADING.match(step):
                out.append(DebugLine(line=lineno, end_line=lineno, offset=offset, raw=[text],
                                     process=t.process, pid=_int(pid), tid=tid, time=_ms(when),
                                     module="pkcs11-logger", message=step))
                return
            self._flush_held(t, out)
            if text.strip():
                out.append(Unparsed(line=lineno, end_line=lineno, offset=offset, raw=[text],
                                    process=t.process, reason="outside any pkcs11-logger call"))
            return
        idx = self._add(t, text, lineno)
        if when and CALLING.match(step):  # 2.3: the module is called
            t.called = when
            return
        if when and RECEIVED.match(step):
            if t.called is not None:
                call.duration = round(_seconds(when) - _seconds(t.called), 6)
            return
        m = RETURNING.match(step)
        if m:
            call.rv = int(m.group(1))
            call.rv_text = m.group(2)
            self._finish(t, out)
            return
        if step in ("Input", "Output"):
            t.direction = "in" if step == "Input" else "out"
            t.target = t.template = None
            return
        try:
            if not self._param(t, msg, col, idx) and msg.strip():
                call.problems.append(f"line {lineno}: not understood: {msg.strip()[:120]}")
        except (ValueError, IndexError, KeyError, AttributeError, TypeError) as e:
            # a value of a shape the logger never prints: the line stays in its call
            call.problems.append(f"line {lineno}: {type(e).__name__}: {e}")

    def _thread(self, pid: str | None, tid: str | None, msg: str,
                out: list[Event]) -> _Thread:
        """The state of the thread a line is from. A process is a pid; without pids
        (flag 0x02) a banner after calls or another banner begins the next one."""
        key = (pid, tid)
        t = self._threads.get(key)
        banner = BANNER.match(msg[STAMP.match(msg).end():] if STAMP.match(msg) else msg)
        next_run = pid is None and banner is not None and pid in self._used
        if pid not in self._processes or next_run:
            self._processes[pid] = self._runs
            self._runs += 1
            self._used.discard(pid)
        if banner or ENTERED.search(msg) or CALLING.match(msg):
            self._used.add(pid)
        if t is None or t.process != self._processes[pid]:
            if t is not None:  # the last process of this thread id ended here
                if t.call is not None:
                    self._finish(t, out, incomplete=True)
                self._flush_start(t, out)
            t = _Thread(key=key, process=self._processes[pid],
                        held=t.held if t is not None else [])
            self._threads[key] = t
        return t

    def _held_time(self, t: _Thread) -> str | None:
        for text, _, _ in reversed(t.held):
            m = SEPARATOR.match(text[IDS.match(text).end() if IDS.match(text) else 0:])
            if m and m.group(1):
                return m.group(1) + ".000000"
        return None

    def _start_line(self, t: _Thread, text: str, lineno: int, offset: int, step: str,
                    out: list[Event]) -> None:
        m = BANNER.match(step)
        if m or t.start is None:
            self._flush_start(t, out)
            lines = [*t.held, (text, lineno, offset)]
            t.held = []
            t.start = ProcessStart(line=lines[0][1], end_line=lineno, offset=lines[0][2],
                                   raw=[x for x, _, _ in lines], process=t.process,
                                   pid=_int(t.key[0]), tid=t.key[1], tool="pkcs11-logger")
            t.start.raw_lines = [n for _, n, _ in lines]
            if m:
                t.start.tool = f"pkcs11-logger {m.group(1)}"
            return
        start = t.start
        for held, n, _ in t.held:
            start.raw.append(held)
            start.raw_lines.append(n)  # type: ignore[union-attr]
        t.held = []
        start.raw.append(text)
        start.raw_lines.append(lineno)  # type: ignore[union-attr]
        start.end_line = lineno
        m = LOADING.match(step)
        if m:
            start.module = m.group(1)
        elif step.startswith("Unable to"):
            start.errors.append(step)

    def _flush_start(self, t: _Thread, out: list[Event]) -> None:
        if t.start is not None:
            _tidy_lines(t.start)
            out.append(t.start)
            t.start = None

    def _flush_held(self, t: _Thread, out: list[Event]) -> None:
        for text, n, offset in t.held:
            out.append(Unparsed(line=n, end_line=n, offset=offset, raw=[text], process=t.process,
                                reason="a separator with no call after it"))
        t.held = []

    def _begin(self, t: _Thread, function: str | None, when: str | None, lineno: int,
               offset: int, out: list[Event]) -> Pkcs11Call:
        """A new call of this thread, holding the separators before it."""
        if t.call is not None:
            t.call.torn = f"{function} began in the same thread before it returned"
            self._finish(t, out, incomplete=True)
        self._flush_start(t, out)
        first = t.held[0] if t.held else ("", lineno, offset)
        t.call = Pkcs11Call(line=first[1], end_line=lineno, offset=first[2],
                            raw=[x for x, _, _ in t.held], process=t.process,
                            pid=_int(t.key[0]), tid=t.key[1], time=_ms(when), function=function)
        t.lines = [n for _, n, _ in t.held]
        t.held = []
        t.direction = t.target = t.template = t.attr = t.called = None
        t.nested = 0
        return t.call

    def _add(self, t: _Thread, text: str, lineno: int) -> int:
        assert t.call is not None
        t.call.raw.append(text)
        t.lines.append(lineno)
        t.call.end_line = lineno
        return len(t.call.raw) - 1

    def _finish(self, t: _Thread, out: list[Event], incomplete: bool = False) -> None:
        call = t.call
        assert call is not None
        t.call = None
        call.incomplete = incomplete
        call.raw_lines = t.lines
        _tidy_lines(call)
        _tidy_args(call)
        call.seq = self._seq[t.process] = self._seq.get(t.process, 0) + 1
        finish_call(call, self._classes.setdefault(t.process, {}), SECRET_BUFFERS)
        out.append(call)

    # -- arguments ---------------------------------------------------------

    def _param(self, t: _Thread, msg: str, col: int, idx: int) -> bool:
        call = t.call
        assert call is not None
        m = TEMPLATE_MARK.match(msg)
        if m:
            return self._template_mark(t, m.group(1) == "Begin", idx)
        m = ATTRIBUTE_N.match(msg)
        if m and t.template is not None:
            t.attr = Attribute(name="?", type=None, span=(idx, idx))
            t.template.value.append(t.attr)  # type: ignore[union-attr]
            extend(t.template, idx)
            return True
        m = PARAM.match(msg)
        if not m:
            return False
        indent, star, name, index, value = m.groups()
        value = value or ""
        vcol = col + (m.start(5) if m.group(5) is not None else len(msg))
        depth = len(indent)
        if depth == 3 and t.attr is None and name in ("Attribute", "pValue", "ulValueLen"):
            # an attribute whose template began before the trace did (a cut trace)
            if t.template is None:
                t.template = t.target = Arg(name="pTemplate", direction=t.direction,
                                            kind="template", value=[], span=(idx, idx))
                call.args.append(t.template)
            t.attr = Attribute(name="?", type=None, span=(idx, idx))
            t.template.value.append(t.attr)  # type: ignore[union-attr]
        if t.attr is not None and t.template is not None and depth == 3:
            return self._attribute_line(t, t.attr, star, name, value, vcol, idx)
        if depth == 1 or (depth == 2 and star and index is not None):
            # C_FindObjects prints its handle array one level deeper ("  *phObject[i]")
            t.attr = None
            if t.direction == "in" and index is not None and t.target is not None:
                extend(t.target, idx)  # the buffer before the call: whatever was in it
                return True
            return self._arg_line(t, call, star, name, index, value, vcol, idx)
        target = t.target
        if target is None:
            return False
        extend(target, idx)
        if target.kind == "mechanism":
            return self._mechanism_line(call, target, star, name, value, vcol, idx)
        if target.kind == "info" and isinstance(target.value, dict):
            info = target.value
            if name.startswith("CKF_"):
                if value == "TRUE":
                    info.setdefault("flag_names", []).append(name)
            elif name in ("major", "minor") and info:
                last = next(reversed(info))
                info[last] = f"{info[last]}.{value}" if info[last] else value
            else:
                info[name] = int(value) if value.isdigit() else value
        return True

    def _arg_line(self, t: _Thread, call: Pkcs11Call, star: str, name: str, index: str | None,
                  value: str, vcol: int, idx: int) -> bool:
        d = t.direction
        if index is not None:  # *phObject[3]: 5, pSlotList[0]: 1
            arg = _find(call, name, d)
            if arg is None or arg.kind not in ("objects", "slots", "mechanisms"):
                arg = Arg(name=name, direction=d, kind=LIST_KINDS.get(name, "objects"),
                          value=[], span=(idx, idx))
                call.args.append(arg)
            extend(arg, idx)
            m = NUMBER_NAME.match(value)
            if m and arg.kind == "mechanisms":
                arg.value.append(pkcs11.name("CKM", int(m.group(1))))  # type: ignore[union-attr]
            elif m:
                arg.value.append(int(m.group(1)))  # type: ignore[union-attr]
            return True
        if star:
            return self._pointee(t, call, name, value, vcol, idx)
        length_of = LENGTHS.get(name)
        if length_of is not None and value.isdigit():
            pin = _find(call, length_of, d)
            if pin is not None:
                pin.length = int(value)
                if isinstance(pin.value, Redacted):
                    pin.value = Redacted(pin.value.what, pin.length)
        if name == "pMechanism":
            arg = Arg(name=name, direction=d, kind="mechanism", value=None, span=(idx, idx))
        elif name in ("pInfo", "pInitArgs") and value not in ("(nil)", "0x0"):
            arg = Arg(name=name, direction=d, kind="info", value={}, span=(idx, idx))
        elif name.endswith("Template") or name == "pTemplate":
            arg = Arg(name=name, direction=d, kind="template", value=[], span=(idx, idx))
        else:
            arg = Arg(name=name, direction=d, span=(idx, idx))
            m = NUMBER_NAME.match(value)
            if m and m.group(2) and name in ("userType", "type", "mechanism"):
                arg.kind = "enum"
                arg.value = (pkcs11.name("CKM", int(m.group(1))) if name != "userType"
                             else pkcs11.name("CKU", int(m.group(1))))
            elif m:
                arg.value = int(m.group(1))
            elif value.startswith("0x") or value == "(nil)":
                arg.kind, arg.value = "pointer", value
            else:
                arg.kind, arg.value = "text", value
        call.args.append(arg)
        t.target = arg
        if arg.kind == "template":
            t.template = arg
        return True

    def _pointee(self, t: _Thread, call: Pkcs11Call, name: str, value: str, vcol: int,
                 idx: int) -> bool:
        """``*name: value``: what a pointer argument points to."""
        d = t.direction
        base = _find(call, name, d)
        data = _hex(value)
        if name in PIN_ARGS or data is not None or value == UNREADABLE:
            if base is None:
                base = Arg(name=name, direction=d, span=(idx, idx))
                call.args.append(base)
            extend(base, idx)
            base.kind = "buffer"
            if value == HIDDEN:  # the logger's default: only the length (ulPinLen) follows
                base.value = Redacted("PIN (hidden by pkcs11-logger)", base.length)
            elif value == UNREADABLE:
                base.value = None
            elif data is not None:
                start = vcol + 4
                base.value = already_redacted(value[4:-1], len(data) or None) or printed(
                    data, idx, start, start + len(value) - 5)
                base.length = len(data)
            else:  # a PIN as text (flag 0x08)
                base.value = already_redacted(value, len(value)) or printed(
                    value.encode("utf-8", "surrogateescape"), idx, vcol, vcol + len(value))
            return True
        m = NUMBER_NAME.match(value)
        star = "*" + name
        arg = Arg(name=RENAMES.get(star, star), direction=d, span=(idx, idx))
        if m:
            arg.value = int(m.group(1))
        elif base is not None and base.kind == "pointer":
            arg.kind, arg.value = "text", value  # *pLabel: a label as text
        else:
            arg.kind, arg.value = "text", value
        call.args.append(arg)
        return True

    def _mechanism_line(self, call: Pkcs11Call, arg: Arg, star: str, name: str, value: str,
                        vcol: int, idx: int) -> bool:
        m = NUMBER_NAME.match(value)
        if name == "mechanism" and m:
            n = int(m.group(1))
            arg.value = Mechanism(name=pkcs11.name("CKM", n), type=n)
            return True
        if not isinstance(arg.value, Mechanism):
            return True
        param = Arg(name=f"pMechanism->{star}{name}", direction=arg.direction, span=(idx, idx))
        data = _hex(value)
        if star and data is not None:
            param.name, param.kind = "pMechanism->pParameter", "buffer"
            param.value = printed(data, idx, vcol + 4, vcol + len(value) - 1)
            param.length = len(data)
        elif m:
            param.value = int(m.group(1))
        else:
            param.kind, param.value = "pointer", value
        arg.value.params.append(param)
        return True

    def _template_mark(self, t: _Thread, begin: bool, idx: int) -> bool:
        if t.template is None:
            return False
        extend(t.template, idx)
        if begin:
            if t.attr is not None:  # a nested template (CKA_WRAP_TEMPLATE...): read flat
                t.nested += 1
                t.attr.note = "its attributes follow, flattened into this template"
            t.attr = None
        elif t.nested:
            t.nested -= 1
        else:
            t.attr = None
        return True

    def _attribute_line(self, t: _Thread, attr: Attribute, star: str, name: str, value: str,
                        vcol: int, idx: int) -> bool:
        assert t.template is not None
        extend(attr, idx)
        extend(t.template, idx)
        if name == "Attribute" and not star:
            m = NUMBER_NAME.match(value)
            if m:
                attr.type = int(m.group(1))
                attr.name = pkcs11.name("CKA", attr.type)
            return True
        if name == "ulValueLen" and value.isdigit():
            n = int(value)
            attr.length = -1 if n in UNSIGNED_MINUS_ONE else n
            return True
        if name == "pValue" and star:
            data = _hex(value)
            if data is None:
                return value == UNREADABLE
            start = vcol + 4
            attr.value = already_redacted(value[4:-1], attr.length) or typed_value(
                attr, data, idx, start, start + len(value) - 5)
            return True
        return name == "pValue"


def _tidy_args(call: Pkcs11Call) -> None:
    """One argument per name where the logger printed a pointer and then what it holds.

    C_FindObjects prints all ulMaxObjectCount slots of its array: only the
    first *pulObjectCount are handles found.
    """
    lists = {a.name for a in call.args if a.kind in ("objects", "slots", "mechanisms")}
    call.args = [a for a in call.args if not (a.kind == "pointer" and a.name in lists)]
    found = _find(call, "phObject", "out")
    count = _find(call, "*pulObjectCount", "out")
    if (found is not None and isinstance(found.value, list) and count is not None
            and isinstance(count.value, int)):
        found.value = found.value[:count.value]


def _hex(value: str) -> bytes | None:
    m = HEX.match(value)
    if not m:
        return None
    digits = m.group(1)
    if digits and not digits.strip("*"):
        return b"\0" * (len(digits) // 2)  # a redacted copy: only the length is left
    return bytes.fromhex(digits[: len(digits) & ~1])


def _find(call: Pkcs11Call, name: str, direction: str | None) -> Arg | None:
    for arg in reversed(call.args):
        if arg.name == name and arg.direction == direction:
            return arg
    return None


def _int(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        return int(text, 16)
    except ValueError:
        return None


def _seconds(when: str) -> float:
    h, m, s = when[11:].split(":")
    return int(h) * 3600 + int(m) * 60 + float(s)  # a call across midnight: negative, rare


def _ms(when: str | None) -> str | None:
    """The time as pkspy keeps it everywhere: to the millisecond."""
    return when[:23] if when else None


def _tidy_lines(event: Event) -> None:
    """raw_lines only where the lines are not one run (threads interleaved them)."""
    lines = event.raw_lines
    if lines is not None:
        event.line, event.end_line = lines[0], lines[-1]
        if lines == list(range(lines[0], lines[0] + len(lines))):
            event.raw_lines = None
