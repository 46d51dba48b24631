"""p11-kit's ``log-calls = yes`` output (p11-kit/log.c), on stderr, 0.19.1 to 0.26.

p11-kit logs the calls of a managed module (p11-kit-proxy.so, p11_kit_modules_load)
whose config says ``log-calls: yes``. Each call is written in two pieces, each
one ``fwrite``: the name and its inputs before the call, its outputs and the
result after it::

    C_Login
      IN: hSession = S1
      IN: userType = CKU_USER
      IN: pPin = (11) "UsrPin-5417"        <- PINs are printed in clear
    C_Login = CKR_OK
    C_GetAttributeValue
      IN: hSession = S1
      IN: hObject = H2
      IN: pTemplate = (2) [ CKA_CLASS, CKA_VALUE ]          <- types only on input
     OUT: pTemplate = (2) [ { CKA_CLASS = CKO_SECRET_KEY }, { CKA_VALUE = (16) NOT-PRINTED } ]
    C_GetAttributeValue = CKR_OK

There is no pid, thread id, time or call number. A process is taken to begin
at each ``C_Initialize``; calls are numbered in each process. Outputs are only
printed when the call succeeds (and for CKR_BUFFER_TOO_SMALL, as sizes). With
threads, another call's name and inputs can come between a call's inputs and
its outputs; the outputs always arrive with their result line, which names
the function, so the result goes to the open call of that name.

Format changes by version (git history of p11-kit/log.c): before 0.24.0
``utcTime`` is printed up to its first NUL, from 0.24.0 (bb3a3cb) as its 16
bytes, NULs included, whatever the flags say; 0.25.0 prints ``mechanism:
NULL`` for a NULL mechanism (852ccd8; before, a crash), adds the 3.0
functions (bff5c3d: C_LoginUser's ``pin``/``username``, the message
functions) and stops reading C_InitToken's label past its 32 bytes
(b1eebfd); 0.25.4 (1195177) prints ``utcTime: (not supported)``. The grammar
below reads them all.

Values are decoded as printed: ``log_some_bytes`` escapes ``\\t \\n \\r`` and
``\\xHH``, and cuts values after 120 characters with ``...``; attribute values
(common/attrs.c) are cut after 128 bytes. p11-kit hides attribute values it
judges sensitive as ``(N) NOT-PRINTED``; those stay None with their length.
"""

from __future__ import annotations

import re

from decoders import pkcs11
from pkspy.formats._inline import (
    SECRET_BUFFERS,
    already_redacted,
    extend,
    finish_call,
    printed,
    typed_value,
)
from pkspy.model import Arg, Attribute, Event, Mechanism, Pkcs11Call, Unparsed

HEADER = re.compile(r"^(C_\w+)\s*$")
RESULT = re.compile(r"^(C_\w+) = (CKR_\w+)\s*$")
PARAM = re.compile(r"^(  IN| OUT): (\w+) = (.*?)\r?$")
FIELD = re.compile(r"^\t(\w+):(?: (.*?))?\r?$", re.S)
BLOCK_END = re.compile(r"^      }\s*$")

COUNTED = re.compile(r"^\((\d+|\?|-1)\) ")
BYTES_OPEN = re.compile(r'^\((\d+|\?|-1)\) "')
LIST = re.compile(r"^\((\d+)\) \[ ?(.*?) ?\]$")
ULONG_PTR = re.compile(r"^0x[0-9A-Fa-f]+ = (SL|S|H)?(\d+)$")
PREFIXED = re.compile(r"^(SL|S|H)(\d+)$")
FLAGS = re.compile(r"^([0-9A-Fa-f]*)(?: ?= (CKF_\w+(?: \| CKF_\w+)*))?$")
ESCAPE = re.compile(r"\\(x[0-9A-Fa-f]{2}|[tnr])")
ATTR_HEAD = re.compile(r"\{ (CKA_0x[0-9A-Fa-f]{8}|CKA_\w+) = ")

# The 3.0 functions' argument names, as the 2.x ones the rest of pkspy knows.
RENAMES = {"session": "hSession", "user_type": "userType", "pin": "pPin",
           "username": "pUsername", "*phKey": "hKey", "*phPublicKey": "hPublicKey",
           "*phPrivateKey": "hPrivateKey"}
SECRETS = {**SECRET_BUFFERS, ("C_GenerateRandom", "pRandomData"): "random data",
           ("C_LoginUser", "pPin"): "PIN", ("C_EncryptMessage", "plaintext"): "plaintext",
           ("C_EncryptMessageNext", "plaintext_part"): "plaintext",
           ("C_DecryptMessage", "plaintext"): "plaintext",
           ("C_DecryptMessageNext", "plaintext_part"): "plaintext"}
# flags in these structures are printed in hex (%lX), in the others in decimal
HEX_FLAGS = {"C_GetInfo", "C_GetMechanismInfo", "C_GetSessionInfo", "C_Initialize"}
LIST_KINDS = {"SL": "slots", "H": "objects"}
ESCAPES = {"t": b"\t", "n": b"\n", "r": b"\r"}
# what a list printed as "(N) NO-VALUES" (a size query) would have held
LIST_KIND_BY_NAME = {"pSlotList": "slots", "pMechanismList": "mechanisms", "object": "objects",
                     "pTemplate": "template"}


class _Rec:
    __slots__ = ("block", "call", "lines")

    def __init__(self, call: Pkcs11Call) -> None:
        self.call = call
        self.lines: list[int] = [call.line]
        self.block: Arg | None = None  # the "= {" structure being read


class P11KitParser:
    """Incremental parser for p11-kit's log-calls output."""

    format = "p11-kit"

    def __init__(self) -> None:
        self.process = 0
        self._calls_in_process = 0
        self._open: list[_Rec] = []
        self._pending: list[tuple[str, int, int]] = []  # outputs waiting for their result
        self._classes: dict[int, int] = {}

    def feed(self, text: str, lineno: int, offset: int) -> list[Event]:
        out: list[Event] = []
        try:
            self._line(text, lineno, offset, out)
        except (ValueError, IndexError, KeyError, AttributeError, TypeError) as e:
            out.append(Unparsed(line=lineno, end_line=lineno, offset=offset, raw=[text],
                                process=self.process,
                                reason=f"parser error: {type(e).__name__}: {e}"))
        return out

    def close(self) -> list[Event]:
        out: list[Event] = []
        if self._pending and self._open:
            self._take_pending(self._open[-1])
        self._cut_pending(out)
        while self._open:
            self._finish(self._open.pop(0), out, incomplete=True)
        return out

    # -- lines -------------------------------------------------------------

    def _line(self, text: str, lineno: int, offset: int, out: list[Event]) -> None:
        m = HEADER.match(text)
        if m:
            self._cut_pending(out)
            if m.group(1) == "C_Initialize" and self._calls_in_process:
                self._new_process(out)
            self._calls_in_process += 1
            call = Pkcs11Call(line=lineno, end_line=lineno, offset=offset, raw=[text],
                              process=self.process, function=m.group(1),
                              seq=self._calls_in_process)
            self._open.append(_Rec(call))
            return
        m = RESULT.match(text)
        if m:
            self._result(m, text, lineno, offset, out)
            return
        if text.startswith(" OUT: ") or (self._pending and (text.startswith("\t")
                                                            or BLOCK_END.match(text))):
            self._pending.append((text, lineno, offset))
            return
        rec = self._open[-1] if self._open else None
        if rec is None and text.startswith("  IN: "):
            # the trace begins (or was cut) inside a call: its inputs may hold a PIN
            rec = self._headless(lineno, offset, "inputs with no call header (a cut trace?)")
            rec.lines = []
            self._open.append(rec)
        if rec is not None and (text.startswith("  IN: ") or (
                rec.block is not None and (text.startswith("\t") or BLOCK_END.match(text)))):
            self._cut_pending(out)
            self._add(rec, text, lineno)
            return
        if not text.strip():
            return
        out.append(self._unparsed(text, lineno, offset, "not a p11-kit log line"))

    def _cut_pending(self, out: list[Event]) -> None:
        """Outputs are written with their result in one piece: without it, they were cut.
        They stay a call of their own, whose values are all taken for secrets."""
        if self._pending:
            _, lineno, offset = self._pending[0]
            rec = self._headless(lineno, offset, "outputs cut off from their call and result")
            rec.lines = []
            self._take_pending(rec)
            self._finish(rec, out, incomplete=True)

    def _headless(self, lineno: int, offset: int, why: str) -> _Rec:
        call = Pkcs11Call(line=lineno, end_line=lineno, offset=offset, raw=[],
                          process=self.process, function=None, torn=why)
        return _Rec(call)

    def _new_process(self, out: list[Event]) -> None:
        self._cut_pending(out)
        while self._open:  # the last process ended inside these calls
            self._finish(self._open.pop(0), out, incomplete=True)
        self.process += 1
        self._calls_in_process = 0
        self._classes = {}

    def _result(self, m: re.Match[str], text: str, lineno: int, offset: int,
                out: list[Event]) -> None:
        function, rv_text = m.groups()
        same = [r for r in self._open if r.call.function == function]
        if not same and self._open and self._open[-1].call.function is None:
            same = [self._open[-1]]  # the call whose header the trace does not have
            same[0].call.function = function
        if same:
            rec = same[-1]
            self._open.remove(rec)
            if len(same) > 1:
                rec.call.torn = (f"{len(same)} {function} calls were running: this result "
                                 "and its outputs may be another one's")
        else:
            first = self._pending[0] if self._pending else (text, lineno, offset)
            rec = self._headless(first[1], first[2], "a result with no call header (a cut "
                                                     "trace?)")
            rec.call.function = function
            rec.lines = []
        self._take_pending(rec)
        rec.call.raw.append(text)
        rec.lines.append(lineno)
        rec.call.rv = _rv(rv_text)
        rec.call.rv_text = rv_text
        self._finish(rec, out)

    def _take_pending(self, rec: _Rec) -> None:
        rec.block = None
        for line, lineno, _offset in self._pending:
            self._add(rec, line, lineno)
        self._pending = []

    def _finish(self, rec: _Rec, out: list[Event], incomplete: bool = False) -> None:
        call = rec.call
        call.incomplete = incomplete
        call.end_line = max(rec.lines) if rec.lines else call.line
        if rec.lines and rec.lines != list(range(rec.lines[0], rec.lines[0] + len(rec.lines))):
            call.raw_lines = rec.lines
        finish_call(call, self._classes, SECRETS, check_lengths=False)  # long values are cut
        out.append(call)

    def _unparsed(self, text: str, lineno: int, offset: int, reason: str) -> Unparsed:
        return Unparsed(line=lineno, end_line=lineno, offset=offset, raw=[text],
                        process=self.process, reason=reason)

    # -- one line of a call ------------------------------------------------

    def _add(self, rec: _Rec, text: str, lineno: int) -> None:
        call = rec.call
        call.raw.append(text)
        rec.lines.append(lineno)
        try:
            self._read(rec, text, lineno, len(call.raw) - 1)
        except (ValueError, IndexError, KeyError, AttributeError, TypeError) as e:
            # a value of a shape log.c never prints: the line stays in its call
            call.problems.append(f"line {lineno}: {type(e).__name__}: {e}")

    def _read(self, rec: _Rec, text: str, lineno: int, idx: int) -> None:
        call = rec.call
        if rec.block is not None:
            if BLOCK_END.match(text):
                extend(rec.block, idx)
                rec.block = None
                return
            m = FIELD.match(text)
            if m:
                self._field(call, rec.block, m, idx)
                return
            if not text.startswith(("  IN: ", " OUT: ")):
                extend(rec.block, idx)  # e.g. old utcTime bytes that held a newline
                call.problems.append(f"line {lineno}: not understood: {text.strip()[:120]}")
                return
            rec.block = None
        m = PARAM.match(text)
        if not m:
            call.problems.append(f"line {lineno}: not understood: {text.strip()[:120]}")
            return
        where, name, value = m.groups()
        arg = _param(call, "in" if where == "  IN" else "out", name, value, idx, m.start(3))
        if BYTES_OPEN.match(value) and not value.endswith('"'):
            call.problems.append(f"line {lineno}: {name}: the line ends inside its value")
        call.args.append(arg)
        if value == "{":
            rec.block = arg

    def _field(self, call: Pkcs11Call, arg: Arg, m: re.Match[str], idx: int) -> None:
        key, val = m.group(1), m.group(2) or ""
        extend(arg, idx)
        if arg.kind == "mechanism":
            if key == "mechanism":
                arg.value = None if val == "NULL" else Mechanism(name=_mech(val),
                                                                  type=pkcs11.value(_mech(val)))
            elif key == "pParameter" and isinstance(arg.value, Mechanism):
                param = _param(call, arg.direction, "pMechanism->pParameter", val, idx,
                               m.start(2))
                arg.value.params.append(param)
            return
        info: dict[str, object] = arg.value  # type: ignore[assignment]
        if key == "flags":
            fm = FLAGS.match(val)
            if fm and (fm.group(1).isdigit() or call.function in HEX_FLAGS):
                if fm.group(1):
                    info[key] = int(fm.group(1), 16 if call.function in HEX_FLAGS else 10)
                info["flag_names"] = fm.group(2).split(" | ") if fm.group(2) else []
                return
        if len(val) >= 2 and val[0] == val[-1] == '"':
            val = val[1:-1]
        info[key] = val


def _param(call: Pkcs11Call, direction: str | None, name: str, value: str, idx: int,
           col: int) -> Arg:
    """One ``IN:``/``OUT:`` value, by its shape (log.c's log_* functions)."""
    if value == "{":
        kind = "mechanism" if name == "pMechanism" else "info"
        return Arg(name=name, direction=direction, kind=kind,
                   value=None if kind == "mechanism" else {}, span=(idx, idx))
    m = ULONG_PTR.match(value)
    if m:  # log_ulong_pointer: the pointer, then what it points to
        star = "*" + name
        return Arg(name=RENAMES.get(star, star), direction=direction, value=int(m.group(2)),
                   span=(idx, idx))
    name = RENAMES.get(name, name)
    arg = Arg(name=name, direction=direction, span=(idx, idx))
    m = LIST.match(value)
    if m:
        _list(arg, int(m.group(1)), m.group(2), col + m.start(2))
        return arg
    if BYTES_OPEN.match(value):
        _bytes(arg, value, idx, col)
        return arg
    m = COUNTED.match(value)
    if m:  # (N) NOTHING, NO-VALUES, NONE, NULL, ????: a size without values
        rest = value[m.end():]
        arg.length = None if m.group(1) == "?" else int(m.group(1))
        arg.kind = ("template" if rest == "NONE" else LIST_KIND_BY_NAME.get(name, "buffer")
                    if rest == "NO-VALUES" else "buffer")
        if rest == "NONE":
            arg.value = []  # a NULL template (find everything)
        return arg
    m = PREFIXED.match(value)
    if m:
        arg.value = int(m.group(2))
        return arg
    number = value.split(" = CKF_", 1)[0]
    if number.isdigit():  # a number, or flags with their names (OpenSession, WaitForSlotEvent)
        arg.value = int(number)
        return arg
    if value in ("NULL",) or value.startswith("0x"):
        arg.kind, arg.value = "pointer", value
        return arg
    if len(value) >= 2 and value[0] == value[-1] == '"':  # log_space_string: a label
        arg.kind, arg.value = "text", value[1:-1]
        return arg
    if value.startswith(("CK", "CKM_0x")):
        arg.kind, arg.value = "enum", _mech(value) if value.startswith("CKM_") else value
        return arg
    arg.kind, arg.value = "text", value
    return arg


def _list(arg: Arg, count: int, body: str, col: int) -> None:
    """``(N) [ ... ]``: attribute types, slots (SL), handles (H), mechanisms or a template."""
    arg.length = count
    if body.startswith("{"):
        arg.kind, arg.value = "template", _attributes(arg, body, col)
        return
    items = [i for i in body.split(", ") if i]
    if items and all(i.startswith("CKA_") for i in items):  # log_attribute_types
        arg.kind = "template"
        arg.value = [Attribute(name=_attr_name(i), type=_attr_type(i), span=arg.span)
                     for i in items]
        return
    if items and all(i.startswith("CKM_") for i in items):
        arg.kind, arg.value = "mechanisms", [_mech(i) for i in items]
        return
    prefixed = [PREFIXED.match(i) for i in items]
    kinds = {m.group(1) if m else None for m in prefixed}
    if arg.name == "object":
        arg.name = "phObject"  # the name pkcs11-spy (and pkspy's analysis) use
    if len(kinds) == 1 and None not in kinds:
        arg.kind = LIST_KINDS.get(kinds.pop(), "slots")
        arg.value = [int(m.group(2)) for m in prefixed if m]
    elif not items:
        arg.kind, arg.value = LIST_KIND_BY_NAME.get(arg.name, "slots"), []
    elif all(i.isdigit() for i in items):  # log_ulong_array without a prefix
        arg.value = [int(i) for i in items]
        arg.kind = "slots" if arg.name == "pSlotList" else "text"
    else:
        arg.kind, arg.value = "text", body  # a list of no shape log.c prints


def _attributes(arg: Arg, body: str, col: int) -> list[Attribute]:
    """``{ CKA_X = value }, ...`` (p11_attr_format), read left to right: a byte
    value's length says where it ends, so quotes and braces inside it are data."""
    attrs: list[Attribute] = []
    idx = arg.span[0] if arg.span else 0
    pos = 0
    while True:
        m = ATTR_HEAD.search(body, pos)
        if not m:
            break
        attr = Attribute(name=_attr_name(m.group(1)), type=_attr_type(m.group(1)),
                         span=(idx, idx))
        attrs.append(attr)
        rest = body[m.end():]
        cm = COUNTED.match(rest)
        if cm and rest[cm.end():].startswith('"'):
            length = None if cm.group(1) in ("?", "-1") else int(cm.group(1))
            start = m.end() + cm.end() + 1
            data, end = _unescape(body, start, min(length, 128) if length is not None else None)
            attr.length = length
            attr.value = already_redacted(body[start:end], length) or typed_value(
                attr, data, idx, col + start, col + end)
            pos = end
            continue
        end = body.find(" }", m.end())
        end = len(body) if end < 0 else end
        text = body[m.end():end]
        if cm:
            attr.length = None if cm.group(1) == "?" else int(cm.group(1))
            if text.endswith("NOT-PRINTED"):
                attr.note = "not printed by p11-kit (sensitive)"
        else:
            attr.value = text  # an enum name (class, key type...) or "N (category)"
        pos = end
    return attrs


def _bytes(arg: Arg, value: str, idx: int, col: int) -> None:
    """``(N) "..."``: log_some_bytes; a line cut short still gives what it holds."""
    m = COUNTED.match(value)
    assert m is not None
    arg.kind = "buffer"
    arg.length = None if m.group(1) in ("?", "-1") else int(m.group(1))
    start = m.end() + 1
    data, end = _unescape(value, start, arg.length)
    arg.value = already_redacted(value[start:end], arg.length) or printed(
        data, idx, col + start, col + end)


def _unescape(text: str, start: int, length: int | None) -> tuple[bytes, int]:
    """Bytes of a quoted value from ``start``, and where they end (at the closing
    quote, after ``length`` bytes, or at the end of a cut line)."""
    out = bytearray()
    i = start
    while i < len(text):
        if length is not None and len(out) >= length:
            break
        if length is None and text[i] == '"' and text[i + 1:i + 2] in ("", " "):
            break
        if text.startswith("...", i) and text[i + 3:i + 4] == '"':
            break  # cut by the logger
        m = ESCAPE.match(text, i)
        if m:
            e = m.group(1)
            out += ESCAPES[e] if e in ESCAPES else bytes([int(e[1:], 16)])
            i = m.end()
            continue
        out += text[i].encode("utf-8", "surrogateescape")
        i += 1
    return bytes(out), i


def _rv(text: str) -> int | None:
    if text.startswith("CKR_0x"):
        return int(text[6:], 16)
    return pkcs11.value(text)


def _mech(text: str) -> str:
    if text.startswith("CKM_0x"):
        return pkcs11.name("CKM", int(text[6:], 16))
    n = pkcs11.value(text)
    return pkcs11.name("CKM", n) if n is not None else text


def _attr_name(text: str) -> str:
    if text.startswith("CKA_0x"):
        return pkcs11.name("CKA", int(text[6:], 16))
    return text


def _attr_type(text: str) -> int | None:
    if text.startswith("CKA_0x"):
        return int(text[6:], 16)
    return pkcs11.value(text)
