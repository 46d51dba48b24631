"""OpenSC pkcs11-spy logs (src/pkcs11/pkcs11-spy.c, pkcs11-display.c), 0.12 to 0.27.

A log is a series of runs, one per process that loaded the spy; each starts
with a banner and holds call records::

    7: C_Login
    P:2635; T:0x140128843073600 2026-11-27 14:16:11.872   (date only before 0.24,
    [in] hSession = 0x1                                     nothing before 0.13)
    [in] userType = CKU_USER
    [in] pPin[ulPinLen] 00007ffe607d6a22 / 10
        00000000  34 37 31 31 34 37 31 31 34 37           4711471147
    Returned:  0 CKR_OK

The parser is incremental: ``feed`` takes one line at a time and returns the
events that line completed. ``Returned:`` is the only end-of-record marker,
so a record is held back until it arrives; ``close`` reports what is left as
incomplete. The spy takes no lock, so threads tear records apart: a new call
header before a ``Returned:`` closes the open record as torn, and a
``Returned:`` with no open record becomes a result without a call. Two calls
are never merged.

Secret fields (PINs, key material) are marked here, where the grammar is
known; ``pkspy.redact`` replaces them.
"""

from __future__ import annotations

import functools
import re

from decoders import pkcs11
from pkspy.model import (
    Arg,
    Attribute,
    Event,
    Mechanism,
    Pkcs11Call,
    ProcessStart,
    Redacted,
    Unparsed,
)

BANNER = re.compile(r"^\*{5,} OpenSC PKCS#11 spy \*{5,}\s*$")
HEADER = re.compile(r"^(\d+): (C_\w+|SetOperationState)\s*$")
STAMP = re.compile(
    r"^(?:P:(\d+); T:(?:0x)?(\d+) )?(\d{1,4}-\d{1,2}-\d{1,2} \d{2}:\d{2}:\d{2}\.\d{3})\s*$"
)
# A value up to its last non-blank is written ((?:.*\S)?) rather than (.*?)\s*$: the
# same groups, without trying \s*$ after every character.
RETURNED = re.compile(r"^Returned:\s+(-?\d+)(?: ((?:.*\S)?))?\s*$")

# [in]/[out] lines, most specific first.
BUF_HEAD = re.compile(r"^\[(in|out)\] (\S+?)(?: =)? ([0-9a-fA-F]{8,16}) / (-?\d+)\s*$")
BUF_NULL = re.compile(
    r"^\[(in|out)\] (\S+?)(?: =)? NULL \[size : 0x([0-9a-fA-F]+) \((-?\d+)\)\]\s*$")
BUF_EMPTY = re.compile(r"^\[(in|out)\] (\S+?)(?: =)? EMPTY\s*$")
ARRAY = re.compile(r"^\[(in|out)\] (\w+)\[(\d+)\]: ?$")
BLOCK = re.compile(r"^\[(in|out)\] ([^=]+?): ?$")
ASSIGN = re.compile(r"^\[(in|out)\] (\S+) = ?((?:.*\S)?)\s*$")

DUMP_ROW = re.compile(r"^    ([0-9A-F]{8})  ((?:(?:[0-9A-F]{2}|\*\*) ){0,16})")
ATTR = re.compile(r"^    (CKA_\? \(0x([0-9a-fA-F]+)\)|CKA_\w+)\s+((?:.*\S)?)\s*$")
PTR_LEN = re.compile(r"^([0-9a-fA-F]{8,16}) / (-?\d+)$")
# Groups of up to 4 bytes in hex; "********" where pkspy redact masked them.
PRINT_GROUPS = re.compile(r"(?:[0-9A-F]{1,8}|\*{1,8})(?: (?:[0-9A-F]{1,8}|\*{1,8}))*")
PRINT_HEX = re.compile(r"^    (" + PRINT_GROUPS.pattern + r")\s*$")
DN = re.compile(r"^    DN: (.*)$")
INFO = re.compile(r"^ {6}(\w+):\s+((?:.*\S)?)\s*$")
INFO_MORE = re.compile(r"^ {20,}'(.*)'\s*$")
FLAG_WORD = re.compile(r"^ {6,}CKF_\w+\s*$")
MECH_INFO = re.compile(
    r"^(CKM_\S+|Unknown Mechanism \([0-9a-fA-F]+\)|0x[0-9a-fA-F]+)\s*: min:(\d+) max:(\d+)"
    r" flags:0x([0-9a-fA-F]+)"
)
MECH_ITEM = re.compile(r"^\s*(CKM_\w+|Unknown Mechanism \([0-9a-fA-F]+\)|0x[0-9a-fA-F]{8})\s*$")
SLOT = re.compile(r"^Slot (\d+)\s*$")
COUNT = re.compile(r"^Count is (\d+)\s*$")
MATCH = re.compile(r"^Object 0x([0-9a-fA-F]+) matches\s*$")
INTERFACE = re.compile(r"^Interface '(.*)'(?: version=(\d+)\.(\d+))? flags=([0-9a-fA-F]+)\s*$")
# Lines printed without "[in] " by old spies (<=0.21) or by mechanism printers.
BARE_ASSIGN = re.compile(r"^\s*(pMechanism->\S+?|pApplication|Notify|\w+)\s*=\s*(.*?)\s*$")
# Mechanism parameter buffers some printers write without "[in] " (ECMQV, ML-DSA).
BARE_BUF = re.compile(
    r"^(?:\t|(?=pMechanism->))(\S+?)(?: =)? ([0-9a-fA-F]{8,16}) / (-?\d+)\s*$")
HEXNUM = re.compile(r"^[0-9a-fA-F]+\b")
INIT_FLAGS = re.compile(r"^ {5}flags: (\d+)\s*$")
INIT_FLAG_WORD = re.compile(r"^ {7}CKF_\w+\s*$")

# Attributes printed by print_print: grouped hex, then a line of characters.
PRINT_PRINT = {"CKA_LABEL", "CKA_APPLICATION", "CKA_OTP_TIME", "CKA_OTP_USER_IDENTIFIER",
               "CKA_OTP_SERVICE_IDENTIFIER", "CKA_OTP_SERVICE_LOGO_TYPE"}

# Buffers that hold secrets, by function and argument name.
SECRET_BUFFERS = {
    ("C_Login", "pPin"): "PIN",
    ("C_LoginUser", "pPin"): "PIN",
    ("C_InitToken", "pPin"): "SO PIN",
    ("C_InitPIN", "pPin"): "PIN",
    ("C_SetPIN", "pOldPin"): "old PIN",
    ("C_SetPIN", "pNewPin"): "new PIN",
    ("C_Encrypt", "pData"): "plaintext",
    ("C_EncryptUpdate", "pPart"): "plaintext",
    ("C_Decrypt", "pData"): "plaintext",
    ("C_DecryptUpdate", "pPart"): "plaintext",
    ("C_DecryptFinal", "pLastPart"): "plaintext",
    ("C_WrapKey", "pWrappedKey"): "wrapped key",
    ("C_UnwrapKey", "pWrappedKey"): "wrapped key",
    ("C_GenerateRandom", "RandomData"): "random data",
    ("C_SeedRandom", "pSeed"): "random seed",
    ("C_GetOperationState", "pOperationState"): "operation state",
    ("SetOperationState", "pOperationState"): "operation state",
}

# Which structure an info block describes, to decode its flags in context.
INFO_CONTEXT = {"C_GetSlotInfo": "slot", "C_GetTokenInfo": "token",
                "C_GetSessionInfo": "session", "C_GetInfo": "info",
                "C_GetMechanismInfo": "mechanism"}


def _hexbytes(text: str) -> bytes:
    digits = text.replace(" ", "")
    return bytes.fromhex(digits[: len(digits) & ~1])  # a line cut mid-byte keeps whole bytes


class _Record:
    """A call record being assembled."""

    __slots__ = ("call", "expect_chars", "print_chunk", "print_left", "printing", "target")

    def __init__(self, call: Pkcs11Call) -> None:
        self.call = call
        self.target: Arg | Attribute | None = None  # what dump rows are appended to
        self.printing = False  # inside a print_print value (labels)
        self.print_left = 0  # bytes of that value still to come
        self.print_chunk = 0  # bytes in the chunk whose character line comes next
        self.expect_chars = False


class SpyParser:
    """Incremental parser for one pkcs11-spy log."""

    format = "pkcs11-spy"

    def __init__(self) -> None:
        self.process = -1  # index of the current run; -1 until a banner or call is seen
        self._rec: _Record | None = None
        self._start: ProcessStart | None = None
        self._cut: str | None = None
        self._classes: dict[int, int] = {}  # object handle -> CKO_*, for this process
        # Results of torn records not yet seen: until they show up, any result
        # may be one of theirs.
        self._unresolved = 0

    # -- driving -------------------------------------------------------

    def feed(self, text: str, lineno: int, offset: int) -> list[Event]:
        out: list[Event] = []
        # ("x" not in text: cheaper than the method calls it spares on most lines)
        if (self._cut is None and "pMechanism->" not in text
                and ("[in] type = " not in text or not text.startswith("[in] type = "))
                and (self._rec is None or "Returned:  " not in text
                     or text.find("Returned:  ") <= 0)):
            # The usual line: one part (nothing for _unglue to split), no cut line to
            # join, no other thread's result inside it.
            try:
                self._line(text, lineno, offset, out, text)
            except (ValueError, IndexError, KeyError, AttributeError, TypeError) as e:
                self._failed(e, text, lineno, offset, 0, out)
            return out
        parts = _unglue(text)
        if self._cut is not None:
            cut, self._cut = self._cut, None
            if HEADER.match(text) or BANNER.match(text) or RETURNED.match(text):
                parts = [cut, *parts]  # the cut line never went on: keep both as they are
            else:
                parts = _unglue(cut + text)  # the rest of a line another thread cut into
        at = text.find("Returned:  ")
        if (at > 0 and self._rec is not None and not text.startswith("[in] type = ")
                and RETURNED.match(text[at:]) and len(parts) == 1):
            # Another thread's "Returned:" landed inside this record's line; the
            # line goes on after it, on the next line.
            call = self._rec.call
            call.problems.append(f"line {lineno}: another thread's result cut into this line")
            self._torn_record(call, "another thread's output cut into its lines")
            call.raw.append(text)  # the line stays whole in the record it cut into
            call.end_line = lineno
            self._orphan(text[at:], lineno, offset + at, out, raw=[])
            self._cut = text[:at]
            return out
        for n, part in enumerate(parts):
            try:
                # raw keeps source lines as they are: a line split in parts is kept once
                self._line(part, lineno, offset, out, text if n == 0 else None)
            except (ValueError, IndexError, KeyError, AttributeError, TypeError) as e:
                self._failed(e, text, lineno, offset, n, out)
        return out

    def _failed(self, e: Exception, text: str, lineno: int, offset: int, n: int,
                out: list[Event]) -> None:
        """A shape this parser gets wrong must not stop the read: show the line,
        once: as a problem of the record that took it, or on its own."""
        why = f"parser error: {type(e).__name__}: {e}"
        if self._rec is not None and self._rec.call.end_line == lineno:
            self._rec.call.problems.append(f"line {lineno}: {why}")
        elif n == 0:
            out.append(Unparsed(line=lineno, end_line=lineno, offset=offset,
                                raw=[text], process=max(self.process, 0), reason=why))

    def close(self) -> list[Event]:
        out: list[Event] = []
        self._flush_start(out)
        if self._rec is not None:
            self._finish(out, incomplete=True)
        return out

    # -- one line ----------------------------------------------------------

    def _line(self, text: str, lineno: int, offset: int, out: list[Event],
              raw: str | None) -> None:
        # What a line can be is told by its first character: a banner starts with "*",
        # a call header with a digit (\d: any Unicode decimal digit, as isdecimal),
        # "Returned:" with "R"; the regexes run only where they can match.
        c = text[:1]
        if c == "*" and BANNER.match(text):
            self._end_record(out, "a new process started before this call returned")
            self._flush_start(out)
            self.process += 1
            self._unresolved = 0
            self._classes = {}
            self._start = ProcessStart(line=lineno, end_line=lineno, offset=offset,
                                       raw=[raw] if raw is not None else [],
                                       process=self.process)
            return
        digit = c.isdecimal()
        m = HEADER.match(text) if digit and ": " in text else None  # not on a time stamp
        if m:
            interrupted = self._rec.call if self._rec is not None else None
            if interrupted is not None:
                self._end_record(out, f"call {m.group(1)} {m.group(2)} began before it returned")
            if self._start is not None:
                self._flush_start(out)
            if self.process < 0:
                self.process = 0
            call = Pkcs11Call(line=lineno, end_line=lineno, offset=offset,
                              raw=[raw] if raw is not None else [],
                              process=self.process, function=m.group(2), seq=int(m.group(1)))
            if interrupted is not None:
                # Its lines may be the other thread's, and its result too.
                call.torn = (f"began while call {interrupted.seq} {interrupted.function} was "
                             "running: its lines and result may be that call's")
            elif self._unresolved:
                call.torn = (f"began while {self._unresolved} torn call(s) had not returned: "
                             "its lines and result may be theirs")
            self._rec = _Record(call)
            return
        if self._start is not None:
            if self._banner_line(text, lineno, [raw] if raw is not None else []):
                return
            self._flush_start(out)
        rec = self._rec
        if rec is None:
            if not text.strip():
                return  # blank separators between records
            if c == "R" and RETURNED.match(text):
                self._orphan(text, lineno, offset, out, raw=[raw] if raw is not None else [])
                return
            if raw is not None:  # else a later part of a glued line, shown whole with the first
                out.append(Unparsed(line=lineno, end_line=lineno, offset=offset, raw=[raw],
                                    process=max(self.process, 0),
                                    reason="outside any spy record"))
            return
        call = rec.call
        if raw is not None:
            call.raw.append(raw)
        call.end_line = lineno
        m = RETURNED.match(text) if c == "R" else None
        if m:
            self._set_rv(call, m)
            if self._unresolved:
                self._torn_record(call, f"{self._unresolved} torn call(s) had not returned "
                                        "yet: this result may be one of theirs")
            self._finish(out)
            return
        if len(call.raw) == 2 and (digit or c == "P"):
            m = STAMP.match(text)
            if m:
                if m.group(1):
                    call.pid = int(m.group(1))
                    call.tid = m.group(2)
                call.time = m.group(3)
                return
        if not self._body(rec, text, len(call.raw) - 1) and text.strip():
            call.problems.append(f"line {lineno}: not understood: {text.strip()[:120]}")

    def _banner_line(self, text: str, lineno: int, raw_lines: list[str]) -> bool:
        start = self._start
        assert start is not None
        if text.startswith("Loaded: "):
            start.module = text[8:].strip().strip('"')
        elif text.startswith("Error: "):
            start.errors.append(text[7:].strip())
        elif text.strip():
            return False
        start.raw += raw_lines
        start.end_line = lineno
        return True

    def _flush_start(self, out: list[Event]) -> None:
        if self._start is not None:
            out.append(self._start)
            self._start = None

    def _end_record(self, out: list[Event], why: str) -> None:
        if self._rec is not None:
            self._rec.call.torn = why
            self._unresolved += 1
            self._finish(out, incomplete=True)

    def _orphan(self, text: str, lineno: int, offset: int, out: list[Event],
                raw: list[str]) -> None:
        """A result with no call of its own: the spy's output was torn by threads."""
        call = Pkcs11Call(line=lineno, end_line=lineno, offset=offset, raw=raw,
                          process=max(self.process, 0), function=None,
                          torn="a result with no call header (torn by threads)")
        self._set_rv(call, RETURNED.match(text))
        self._unresolved = max(self._unresolved - 1, 0)
        out.append(call)

    @staticmethod
    def _torn_record(call: Pkcs11Call, why: str) -> None:
        if not call.torn:
            call.torn = why

    def _finish(self, out: list[Event], incomplete: bool = False) -> None:
        rec = self._rec
        assert rec is not None
        self._rec = None
        call = rec.call
        call.incomplete = incomplete
        _check_lengths(call)
        if not call.torn:
            _learn_classes(call, self._classes)
        _mark_secrets(call, self._classes)
        out.append(call)

    @staticmethod
    def _set_rv(call: Pkcs11Call, m: re.Match[str]) -> None:
        rv = int(m.group(1))
        call.rv = rv & 0xFFFFFFFF if rv < 0 else rv  # a 32-bit long prints vendor codes < 0
        call.rv_text = m.group(2)

    # -- body lines --------------------------------------------------------

    def _body(self, rec: _Record, text: str, idx: int) -> bool:
        """Attach one body line to the record; False if it has no known shape."""
        call = rec.call
        if rec.printing:
            if self._print_line(rec, text, idx):
                return True
            rec.printing = False  # damaged: read the line afresh
        c = text[:1]
        if c == "[":
            rec.target = None
            return self._bracket(rec, text, idx)
        if c == " ":  # dump rows, attributes and DN notes start with four spaces
            m = DUMP_ROW.match(text)
            if m and rec.target is not None:
                target = rec.target
                if "*" in m.group(2) or isinstance(target.value, Redacted):
                    # read from a redacted copy: the length is all there is
                    length = (target.length if target.length is not None and target.length >= 0
                              else 0)
                    target.value = Redacted("secret (already redacted)", length)
                else:
                    target.value = (target.value or b"") + _hexbytes(m.group(2))
                _extend(target, idx)
                return True
            m = ATTR.match(text)
            if m:
                return self._attribute(rec, m, idx)
            m = DN.match(text)
            if m and isinstance(rec.target, Attribute):
                rec.target.note = m.group(1)
                _extend(rec.target, idx)
                return True
        cur = call.args[-1] if call.args else None
        if cur is not None and cur.kind == "info":
            return self._info_line(call, cur, text, idx)
        for pattern, handler in _LIST_BY_FIRST.get(c, _LIST_ANY):
            m = pattern.match(text)
            if m:
                handler(self, call, m, idx)
                return True
        if not text.strip():
            return True  # the spy's trailing "    " after a 32-byte label chunk
        m = BARE_BUF.match(text) if c == "\t" or c == "p" else None
        if m:
            return self._bracket(rec, f"[in] {m.group(1)} {m.group(2)} / {m.group(3)}", idx)
        m = BARE_ASSIGN.match(text) if "=" in text else None
        if m and ("->" in m.group(1) or m.group(1) in ("pApplication", "Notify")):
            _add_assign(call, None, m.group(1), m.group(2), idx)
            return True
        return text.startswith(("(unknown type", "Parameters block for", "\t", "}"))

    def _bracket(self, rec: _Record, text: str, idx: int) -> bool:
        call = rec.call
        # Each shape is tried only if the line holds its fixed text: most lines are
        # plain "[in] name = value" and would fail five regexes first.
        if "[compat]" in text and text.rstrip() == "[compat]":
            call.args.append(Arg(name="compat", value=True, kind="text", span=(idx, idx)))
            return True
        m = BUF_HEAD.match(text) if " / " in text else None
        if m:
            d, name, _ptr, length = m.groups()
            arg = Arg(name=_base(name), direction=d, kind="buffer", length=int(length),
                      span=(idx, idx), secret=SECRET_BUFFERS.get((call.function, _base(name))))
            if arg.length >= 0:
                arg.value = b""
            _attach(call, arg)
            rec.target = arg
            return True
        m = BUF_NULL.match(text) if "NULL [size : 0x" in text else None
        if m:
            d, name, _hex, length = m.groups()
            _attach(call, Arg(name=_base(name), direction=d, kind="buffer", length=int(length),
                              span=(idx, idx)))
            return True
        m = BUF_EMPTY.match(text) if "EMPTY" in text else None
        if m:
            _attach(call, Arg(name=_base(m.group(2)), direction=m.group(1), kind="buffer",
                              length=-1, span=(idx, idx)))
            return True
        colon = ":" in text
        m = ARRAY.match(text) if colon and "]:" in text else None
        if m:
            d, name, count = m.groups()
            kind = "mechanisms" if name == "pMechanismList" else "template"
            call.args.append(Arg(name=name, direction=d, kind=kind, length=int(count), value=[],
                                 span=(idx, idx)))
            return True
        m = BLOCK.match(text) if colon else None
        if m:
            d, name = m.groups()
            name = name.strip()
            if name.startswith("pSlotList"):
                kind: str = "slots"
            elif name.startswith("pInterfacesList"):
                kind = "interfaces"
            else:
                kind = "info"
            value: object = {} if kind == "info" else []
            call.args.append(Arg(name=name, direction=d, kind=kind, value=value, span=(idx, idx)))
            return True
        m = ASSIGN.match(text)
        if m:
            _add_assign(call, m.group(1), m.group(2), m.group(3), idx)
            return True
        return False

    def _attribute(self, rec: _Record, m: re.Match[str], idx: int) -> bool:
        call = rec.call
        tmpl = call.args[-1] if call.args else None
        if tmpl is None or tmpl.kind != "template":
            return False
        label, unknown_hex, rest = m.groups()
        if unknown_hex:  # a type the spy did not know: name it ourselves
            type_ = int(unknown_hex, 16)
            name = pkcs11.name("CKA", type_)
        else:
            name, type_ = label, _value(label)
        attr = Attribute(name=name, type=type_, span=(idx, idx))
        tmpl.value.append(attr)
        _extend(tmpl, idx)
        rec.target = None
        pm = PTR_LEN.match(rest) if " / " in rest else None
        if pm:
            attr.length = int(pm.group(2))
            if attr.length > 0 and name in PRINT_PRINT:
                attr.value = b""
                rec.target = attr
                rec.printing = True
                rec.print_left = attr.length
                rec.expect_chars = False
            elif attr.length >= 0:
                rec.target = attr  # a dump may follow (not in a C_GetAttributeValue request)
        elif rest in ("True", "False"):
            attr.value = rest == "True"
        elif rest == "EMPTY":
            attr.length = -1
        else:
            attr.value = rest  # an enum name, or "Value X not found for type ..."
        return True

    def _print_line(self, rec: _Record, text: str, idx: int) -> bool:
        """print_print: a line of hex groups, then a line of characters, per 32 bytes.

        The hex of the next chunk is glued to the end of the character line
        (a bug in every version), so the character line is cut by its length.
        """
        attr = rec.target
        assert isinstance(attr, Attribute)
        if not rec.expect_chars:
            m = PRINT_HEX.match(text)
            if not m:
                return False
            self._take_print_hex(rec, attr, m.group(1))
            _extend(attr, idx)
            return True
        k = rec.print_chunk
        width = 4 + 2 * k + (k - 1) // 4
        glued = text[width:].strip()
        rec.expect_chars = False
        if rec.print_left and glued:
            if not PRINT_GROUPS.fullmatch(glued):
                return False
            self._take_print_hex(rec, attr, glued)
        elif not rec.print_left:
            rec.printing = False
        _extend(attr, idx)
        return True

    @staticmethod
    def _take_print_hex(rec: _Record, attr: Attribute, groups: str) -> None:
        if "*" in groups or isinstance(attr.value, Redacted):
            count = len(groups.replace(" ", "")) // 2
            attr.value = Redacted("secret (already redacted)", attr.length)
        else:
            data = _hexbytes(groups)
            attr.value = (attr.value or b"") + data
            count = len(data)
        rec.print_chunk = count
        rec.print_left = max(rec.print_left - count, 0)
        rec.expect_chars = True

    def _info_line(self, call: Pkcs11Call, arg: Arg, text: str, idx: int) -> bool:
        info: dict[str, object] = arg.value  # type: ignore[assignment]
        if text[:1] == " ":  # fields, their continuation and flag words are indented
            m = INFO.match(text)
            if m:
                key, val = m.groups()
                if val.startswith("'") and val.endswith("'"):
                    val = val[1:-1]
                if key == "flags" and HEXNUM.match(val):
                    info[key] = int(val, 16)
                    context = INFO_CONTEXT.get(call.function or "")
                    if context and context != "info":
                        info["flag_names"] = list(_flag_names(context, int(val, 16)))
                elif key == "state" and HEXNUM.match(val):
                    info[key] = pkcs11.name("CKS", int(val.split(" ", 1)[0], 16))
                else:
                    info[key] = val
                _extend(arg, idx)
                return True
            m = INFO_MORE.match(text)
            if m and info:
                last = next(reversed(info))
                info[last] = f"{info[last]}{m.group(1)}"
                _extend(arg, idx)
                return True
            if FLAG_WORD.match(text):
                _extend(arg, idx)
                return True
        m = MECH_INFO.match(text)
        if m:
            mech, lo, hi, fl = m.groups()
            info.update(mechanism=_mech_name(mech), min=int(lo), max=int(hi), flags=int(fl, 16),
                        flag_names=list(_flag_names("mechanism", int(fl, 16))))
            _extend(arg, idx)
            return True
        return False

    # list-like lines that follow an [out] block
    def _slot(self, call: Pkcs11Call, m: re.Match[str], idx: int) -> None:
        arg = _last_kind(call, "slots")
        arg.value.append(int(m.group(1)))
        _extend(arg, idx)

    def _count(self, call: Pkcs11Call, m: re.Match[str], idx: int) -> None:
        arg = call.args[-1] if call.args else None
        if arg is None or arg.kind not in ("slots", "mechanisms", "interfaces"):
            arg = _last_kind(call, "slots")
        arg.length = int(m.group(1))
        arg.value = None  # a size query: only the count came back
        _extend(arg, idx)

    def _match(self, call: Pkcs11Call, m: re.Match[str], idx: int) -> None:
        arg = _last_kind(call, "objects", name="phObject", direction="out")
        arg.value.append(int(m.group(1), 16))
        _extend(arg, idx)

    def _interface(self, call: Pkcs11Call, m: re.Match[str], idx: int) -> None:
        arg = _last_kind(call, "interfaces")
        name, major, minor, flags = m.groups()
        item: dict[str, object] = {"name": name, "flags": int(flags, 16)}
        if major is not None:
            item["version"] = f"{major}.{minor}"
        arg.value.append(item)
        _extend(arg, idx)

    def _mech_item(self, call: Pkcs11Call, m: re.Match[str], idx: int) -> None:
        if call.function == "C_GetMechanismInfo" and call.arg("type") is None:
            # <=0.21 printed the mechanism as a bare "%30s " line
            call.args.append(Arg(name="type", direction="in", kind="enum",
                                 value=_mech_name(m.group(1)), span=(idx, idx)))
            return
        arg = _last_kind(call, "mechanisms")
        arg.value.append(m.group(1))
        _extend(arg, idx)

    def _init_flags(self, call: Pkcs11Call, m: re.Match[str], idx: int) -> None:
        call.args.append(Arg(name="flags", direction="in", value=int(m.group(1)),
                             span=(idx, idx)))

    def _init_flag_word(self, call: Pkcs11Call, m: re.Match[str], idx: int) -> None:
        if call.args:
            _extend(call.args[-1], idx)

    # Each with the first character its lines start with (None: any).
    _LIST_LINES = (
        (SLOT, _slot, "S"), (COUNT, _count, "C"), (MATCH, _match, "O"),
        (INTERFACE, _interface, "I"), (INIT_FLAGS, _init_flags, " "),
        (INIT_FLAG_WORD, _init_flag_word, " "), (MECH_ITEM, _mech_item, None),
    )


# The list-line shapes a line may have, in _LIST_LINES order, by its first character.
_LIST_ANY = tuple((p, h) for p, h, first in SpyParser._LIST_LINES if first is None)
_LIST_BY_FIRST = {c: tuple((p, h) for p, h, first in SpyParser._LIST_LINES if first in (c, None))
                  for _, _, c in SpyParser._LIST_LINES if c is not None}


# -- helpers -----------------------------------------------------------------

_TYPE_GLUE = re.compile(r"(?=\[out\] |Returned:  )")


def _unglue(text: str) -> list[str]:
    """Split lines the spy printed without a newline between them.

    0.23 prints C_GetMechanismInfo's ``[in] type = X`` with no newline, so
    ``[out] pInfo: `` or ``Returned:`` follows on the same line; the ECMQV
    parameter printer leaves out newlines in every version.
    """
    if text.startswith("[in] type = ") and ("[out] " in text or "Returned:" in text):
        return [p for p in _TYPE_GLUE.split(text) if p]
    if "pMechanism->" in text and not DUMP_ROW.match(text):
        # ECMQV parameters (every version) are printed with no newline between
        # them, the last one glued to the next "[in] " line.
        return [p for p in _MECH_GLUE.split(text) if p]
    return [text]


_MECH_GLUE = re.compile(r"(?<=\S)(?=pMechanism->|\[in\] |\[out\] )")


def _base(name: str) -> str:
    """``pPin[ulPinLen]`` -> ``pPin``; ``pMechanism->pParameter->pIv[ulIvLen]`` -> ``...pIv``."""
    return name.split("[", 1)[0]


def _extend(item: Arg | Attribute, idx: int) -> None:
    start = item.span[0] if item.span else idx
    item.span = (start, idx)


def _attach(call: Pkcs11Call, arg: Arg) -> None:
    """Mechanism parameters belong to the mechanism they follow."""
    if ("->" in arg.name and arg.name.startswith("pMechanism->") and call.args
            and call.args[-1].kind == "mechanism"):
        mech = call.args[-1]
        mech.value.params.append(arg)  # type: ignore[union-attr]
        _extend(mech, arg.span[0] if arg.span else 0)
        return
    call.args.append(arg)


def _last_kind(call: Pkcs11Call, kind: str, name: str | None = None,
               direction: str | None = None) -> Arg:
    for arg in reversed(call.args):
        if arg.kind == kind:
            return arg
    arg = Arg(name=name or kind, direction=direction, kind=kind, value=[])
    call.args.append(arg)
    return arg


_HEX = re.compile(r"^0x[0-9a-fA-F]+$")
_DEC = re.compile(r"^-?\d+$")


def _add_assign(call: Pkcs11Call, direction: str | None, name: str, val: str, idx: int) -> None:
    val = val.strip()
    if name.endswith("->type"):  # pMechanism->type too
        mech = Mechanism(name=_mech_name(val), type=_value(val))
        call.args.append(Arg(name=name.split("->")[0], direction=direction, kind="mechanism",
                             value=mech, span=(idx, idx)))
        return
    if name == "type":  # C_GetMechanismInfo; unknown ones print as 0x%08lX (0.23+)
        call.args.append(Arg(name=name, direction=direction, kind="enum",
                             value=_mech_name(val), span=(idx, idx)))
        return
    if name == "pMechanism" and val == "NULL":
        call.args.append(Arg(name=name, direction=direction, kind="mechanism", value=None,
                             span=(idx, idx)))
        return
    span = (idx, idx)
    if val[:2] == "0x" and _HEX.match(val):
        arg = Arg(name=name, direction=direction, kind="ulong", value=int(val, 16), span=span)
    elif val == "(nil)" or name.startswith(("pApplication", "Notify", "pInitArgs", "pReserved")):
        arg = Arg(name=name, direction=direction, kind="pointer", value=val, span=span)
    elif _DEC.match(val):
        arg = Arg(name=name, direction=direction, kind="ulong", value=int(val), span=span)
    elif val.startswith("CK") and " " not in val:
        arg = Arg(name=name, direction=direction, kind="enum", value=val, span=span)
    else:
        arg = Arg(name=name, direction=direction, kind="text", value=val, span=span)
    _attach(call, arg)


# The decoders' tables do not change once built: the same text is looked up once.
@functools.lru_cache(maxsize=4096)
def _value(label: str) -> int | None:
    return pkcs11.value(label)


@functools.lru_cache(maxsize=4096)
def _flag_names(context: str, number: int) -> tuple[str, ...]:
    return tuple(pkcs11.flags(context, number))


@functools.lru_cache(maxsize=4096)
def _mech_name(val: str) -> str:
    n = pkcs11.value(val)
    return pkcs11.name("CKM", n) if n is not None else val


def _check_lengths(call: Pkcs11Call) -> None:
    """A dump shorter than its declared length means the record was cut."""
    for arg in _walk_args(call.args):
        if (arg.kind == "buffer" and isinstance(arg.value, bytes) and arg.length
                and len(arg.value) != arg.length):
            call.problems.append(f"{arg.name}: {len(arg.value)} of {arg.length} bytes in the dump")
        if arg.kind == "template" and arg.length is not None and len(arg.value) != arg.length:
            call.problems.append(f"{arg.name}: {len(arg.value)} of {arg.length} attributes")


def _walk_args(args: list[Arg]):
    for arg in args:
        yield arg
        if arg.kind == "mechanism" and isinstance(arg.value, Mechanism):
            yield from _walk_args(arg.value.params)


# Calls that create objects: the argument holding the new handle, and the
# class of the object when its template does not say.
_CREATES = {
    "C_CreateObject": ("*phObject", None), "C_CopyObject": ("*phNewObject", None),
    "C_GenerateKey": ("hKey", "CKO_SECRET_KEY"), "C_UnwrapKey": ("hKey", "CKO_SECRET_KEY"),
    "C_DeriveKey": ("hKey", "CKO_SECRET_KEY"),
}


def _template_class(arg: Arg | None) -> int | None:
    for a in (arg.value if arg is not None and isinstance(arg.value, list) else []):
        if a.name == "CKA_CLASS" and isinstance(a.value, str):
            return pkcs11.value(a.value)
    return None


def _learn_classes(call: Pkcs11Call, classes: dict[int, int]) -> None:
    """Remember the class of each object handle, to judge CKA_VALUE in later calls."""
    if call.rv != 0 and call.function != "C_GetAttributeValue":
        return
    if call.function in _CREATES:
        out_name, default = _CREATES[call.function]
        h = call.arg(out_name, "out")
        cls = _template_class(call.arg("pTemplate")) or pkcs11.value(default or "")
        if h is not None and isinstance(h.value, int) and cls is not None:
            classes[h.value] = cls
    elif call.function == "C_GenerateKeyPair":
        for name, cls in (("hPublicKey", "CKO_PUBLIC_KEY"), ("hPrivateKey", "CKO_PRIVATE_KEY")):
            h = call.arg(name, "out")
            if h is not None and isinstance(h.value, int):
                classes[h.value] = pkcs11.value(cls)
    elif call.function == "C_GetAttributeValue":
        h = call.arg("hObject")
        cls = _template_class(call.arg("pTemplate", "out"))
        if h is not None and isinstance(h.value, int) and cls is not None:
            classes[h.value] = cls


def _mark_secrets(call: Pkcs11Call, classes: dict[int, int]) -> None:
    """Say which object each template describes, and mark the data of torn records.

    Which attribute values may be shown is the redactor's policy; it needs the
    object's class (CKA_VALUE of a certificate is public, of a key secret),
    known from the template's own CKA_CLASS, from the kind of template, or from
    an earlier call that created or read the object. In a record torn by
    threads, any dump may be another call's PIN.
    """
    if call.torn:
        for arg in _walk_args(call.args):
            if arg.kind == "buffer" and isinstance(arg.value, bytes) and not arg.secret:
                arg.secret = "data of a torn record"
    templates = [arg for arg in call.args if arg.kind == "template" and arg.value]
    if not templates:
        return
    h = call.arg("hObject")
    known = classes.get(h.value) if h is not None and isinstance(h.value, int) else None
    for arg in templates:
        cls = _template_class(arg) or known
        if cls is None and "Public" in arg.name:
            cls = pkcs11.value("CKO_PUBLIC_KEY")
        elif cls is None and "Private" in arg.name:
            cls = pkcs11.value("CKO_PRIVATE_KEY")
        arg.object_class = cls
        if call.torn:
            for a in arg.value:
                if isinstance(a.value, bytes) and a.name not in PRINT_PRINT:
                    a.secret = "data of a torn record"
