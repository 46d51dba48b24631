"""Analysis: a reducer that folds the event stream into what happened.

Sessions per process (slot, flags, opened, closed), login attempts and their
outcome, object lookups (the template asked for, the handles found), call
counts and failures. ``Analysis.add`` takes one (already redacted) event at a
time, so the same state serves a finished file and a followed one.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import ClassVar

from decoders import iso7816, opensc, pcsc, pkcs11
from pkspy.model import (
    ApduExchange,
    Arg,
    Attribute,
    DebugLine,
    Event,
    PcscCall,
    Pkcs11Call,
    ProcessStart,
    Redacted,
    Unparsed,
)

TEXT_ATTRIBUTES = {"CKA_LABEL", "CKA_APPLICATION", "CKA_URL"}
# What the object table keeps of an object's attributes.
OBJECT_KEYS = ("CKA_CLASS", "CKA_KEY_TYPE", "CKA_LABEL", "CKA_ID", "CKA_CERTIFICATE_TYPE")
# Token flags that say a PIN is running out of tries or is locked.
PIN_FLAGS = ("CKF_USER_PIN_COUNT_LOW", "CKF_USER_PIN_FINAL_TRY", "CKF_USER_PIN_LOCKED",
             "CKF_SO_PIN_COUNT_LOW", "CKF_SO_PIN_FINAL_TRY", "CKF_SO_PIN_LOCKED",
             "CKF_USER_PIN_TO_BE_CHANGED", "CKF_SO_PIN_TO_BE_CHANGED")


# Operations a session runs, by kind: the call that starts one, then the calls that
# continue or finish it (PKCS#11 2.40 section 5.2: any result other than CKR_OK or
# CKR_BUFFER_TOO_SMALL ends an active operation, so its first such result is its failure).
OPERATIONS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "find": (("C_FindObjectsInit",), ("C_FindObjects", "C_FindObjectsFinal")),
    "sign": (("C_SignInit", "C_SignRecoverInit"),
             ("C_Sign", "C_SignUpdate", "C_SignFinal", "C_SignRecover")),
    "verify": (("C_VerifyInit", "C_VerifyRecoverInit"),
               ("C_Verify", "C_VerifyUpdate", "C_VerifyFinal", "C_VerifyRecover")),
    "encrypt": (("C_EncryptInit",), ("C_Encrypt", "C_EncryptUpdate", "C_EncryptFinal")),
    "decrypt": (("C_DecryptInit",), ("C_Decrypt", "C_DecryptUpdate", "C_DecryptFinal")),
    "digest": (("C_DigestInit",), ("C_Digest", "C_DigestUpdate", "C_DigestKey",
                                   "C_DigestFinal")),
    "generate key": (("C_GenerateKey",), ()),
    "generate key pair": (("C_GenerateKeyPair",), ()),
    "create object": (("C_CreateObject", "C_CopyObject"), ()),
    "destroy object": (("C_DestroyObject",), ()),
    "get attribute": (("C_GetAttributeValue",), ()),
    "set attribute": (("C_SetAttributeValue",), ()),
    "wrap": (("C_WrapKey",), ()),
    "unwrap": (("C_UnwrapKey",), ()),
    "derive": (("C_DeriveKey",), ()),
    "random": (("C_GenerateRandom", "C_SeedRandom"), ()),
}
OPERATION_STARTS = {f: kind for kind, (starts, _) in OPERATIONS.items() for f in starts}
OPERATION_STEPS = {f: kind for kind, (_, steps) in OPERATIONS.items() for f in steps}
CKR_BUFFER_TOO_SMALL = 0x150
# pkcs11-spy prints when each call began (to the ms, truncated) and never when it
# returned: enter() stamps the time, retne() prints only the result (OpenSC 0.15 to
# 0.27.1, src/pkcs11/pkcs11-spy.c). A record whose "Returned:" line came before the
# next record began (not torn) returned before that next call of its process began,
# whatever its thread: the gap to it, plus the 1 ms lost to truncation, bounds the
# call's duration from above. It includes the caller's own work between calls, so it is
# shown as "at most", never as a duration.
SPY_TRUNCATION_MS = 1.0


# The most entries a summary lists of each kind: beyond them only counts grow, so
# a trace of any size is summarized in the same memory. The first are kept: they
# show where things began to go wrong.
LISTED = 1000


class Listed(list):
    """A list that keeps its first LISTED entries and counts the others."""

    unlisted = 0

    def append(self, item: object) -> None:
        if len(self) < LISTED:
            super().append(item)
        else:
            self.unlisted += 1


# Stretches of damage the summary locates; the counts above them go on.
DAMAGE_LISTED = 100


def handle(value: object) -> str | None:
    return f"0x{value:x}" if isinstance(value, int) else None


def attribute_value(attr: Attribute) -> object:
    """A template entry as plain data: names for enums, text for labels, hex otherwise."""
    v = attr.value
    if isinstance(v, Redacted):
        return str(v)
    if isinstance(v, bytes):
        if attr.name in TEXT_ATTRIBUTES:
            return v.decode("utf-8", "backslashreplace")
        if pkcs11.ATTRIBUTE_KINDS.get(attr.type) == "ulong" and len(v) in (4, 8):
            return pkcs11.ulong_from_le(v)  # the spy dumps CK_ULONGs as raw memory
        return v.hex()
    if isinstance(v, str):
        return v.strip()
    if v is None and attr.length is not None:
        return None
    return v


def template(arg: Arg | None) -> dict[str, object]:
    if arg is None or not isinstance(arg.value, list):
        return {}
    return {a.name: attribute_value(a) for a in arg.value}


def _seconds(time: str | None) -> float | None:
    """A dated local time ("YYYY-MM-DD HH:MM:SS.mmm") as seconds; None if not dated."""
    if not time or len(time) < 19 or time[4] != "-":
        return None
    try:
        return datetime.fromisoformat(time).timestamp()
    except ValueError:
        return None


_TIMED_KEYS = {p: (f"{p}total_ms", f"{p}max_ms") for p in ("", "bound_")}


def _timed(stat: dict, ms: float, prefix: str = "") -> None:
    """Adds one duration to a statistic's total and max (``prefix``: "bound_" for bounds)."""
    total, most = _TIMED_KEYS[prefix]
    stat[total] = round(stat.get(total, 0.0) + ms, 3)
    stat[most] = max(stat.get(most, 0.0), round(ms, 3))


def _result(call: Pkcs11Call) -> str | None:
    """The decoded return value; None when the record was torn or cut before it."""
    return pkcs11.ckr_name(call.rv) if call.rv is not None else None


LOGIN_CHANGES_LISTED = 100  # per session; a server's one session may log in for ever


def _login_change(session: dict, call: Pkcs11Call, user: object) -> None:
    """A C_Login / C_Logout made in a session: the first ones listed, the rest counted."""
    if len(session["login_changes"]) >= LOGIN_CHANGES_LISTED:
        session["login_changes_unlisted"] = session.get("login_changes_unlisted", 0) + 1
        return
    session["login_changes"].append({"seq": call.seq, "line": call.line, "call": call.function,
                                     "user_type": user, "result": _result(call)}
                                    | ({"uncertain": call.torn} if call.torn else {}))


def _ulong(call: Pkcs11Call, name: str) -> int | None:
    arg = call.arg(name)
    return arg.value if arg is not None and isinstance(arg.value, int) else None


@dataclass
class Analysis:
    format: str | None = None
    processes: set[int] = field(default_factory=set)
    calls: int = 0
    calls_by_function: Counter[str] = field(default_factory=Counter)
    failed_calls: list[dict] = field(default_factory=Listed)
    sessions: list[dict] = field(default_factory=Listed)
    logins: list[dict] = field(default_factory=Listed)
    finds: list[dict] = field(default_factory=Listed)
    modules: list[dict] = field(default_factory=Listed)
    incomplete_records: int = 0
    torn_records: int = 0
    orphan_results: int = 0
    unparsed_lines: int = 0
    # Where the trace is damaged: the first DAMAGE_LISTED incomplete, torn or unparsed
    # records (neighbouring unparsed lines make one), for summary and view to point at.
    damage: list[dict] = field(default_factory=list)
    problems: int = 0
    apdus: int = 0  # exchanges with a response
    apdus_unanswered: int = 0
    pcsc_calls: Counter[str] = field(default_factory=Counter)
    failed_pcsc_calls: list[dict] = field(default_factory=Listed)
    status_words: Counter[str] = field(default_factory=Counter)
    sc_errors: Counter[str] = field(default_factory=Counter)
    failures: list[dict] = field(default_factory=Listed)  # OpenSC functions where failures began
    readers: list[str] = field(default_factory=list)
    atr: list[str] = field(default_factory=list)
    pin_commands: list[dict] = field(default_factory=Listed)  # VERIFY & co. and their SW
    pin_flags: list[dict] = field(default_factory=Listed)  # tokens saying a PIN is low or locked
    objects: dict[tuple[int, int], dict] = field(default_factory=dict)
    apdu_stats: dict[str, dict] = field(default_factory=dict)  # per instruction
    failed_by_function: Counter[str] = field(default_factory=Counter)
    first_time: str | None = None
    last_time: str | None = None
    _open: dict[tuple[int, int], dict] = field(default_factory=dict, repr=False)
    _finding: dict[tuple[int, int], dict] = field(default_factory=dict, repr=False)
    # (process, session, kind) of operations started and not yet finished or failed
    _active: set[tuple[int, int, str]] = field(default_factory=set, repr=False)
    call_times: dict[str, dict] = field(default_factory=dict)  # per function: durations
    debug_stats: dict[str, dict] = field(default_factory=dict)  # OpenSC functions that returned
    pcsc_stats: dict[str, dict] = field(default_factory=dict)  # per PC/SC function
    # per process: the last spy call (function, start in seconds) still waiting for its bound
    _unbounded: dict[int | None, tuple[str, float]] = field(default_factory=dict, repr=False)
    # the last stamp read as seconds: a cache, not a part of the analysis (not a field)
    _last_time: ClassVar[tuple[str | None, float | None]] = (None, None)
    # Objects past the first LISTED are not kept, nor are their keys (to count them
    # would take memory that grows with the trace): only that there were some.
    objects_unlisted: bool = False

    def add(self, event: Event) -> None:
        if type(event) is DebugLine:  # most of an OpenSC log; it is never damaged
            if event.process is not None:
                self.processes.add(event.process)
            self._debug(event)
            return
        self._damage(event)
        if event.process is not None and not isinstance(event, Unparsed):
            self.processes.add(event.process)
        if isinstance(event, Unparsed):
            self.unparsed_lines += event.end_line - event.line + 1
        elif isinstance(event, ProcessStart):
            self.modules.append({"process": event.process, "module": event.module,
                                 "errors": event.errors, "line": event.line})
        elif isinstance(event, Pkcs11Call):
            self._call(event)
        elif isinstance(event, ApduExchange):
            self._apdu(event)
        elif isinstance(event, PcscCall):
            self._pcsc(event)
        elif isinstance(event, DebugLine):
            self._debug(event)

    def _damage(self, event: Event) -> None:
        incomplete = getattr(event, "incomplete", False)
        torn = getattr(event, "torn", None)
        kinds = ["unparsed"] if isinstance(event, Unparsed) else []
        if incomplete:
            kinds.append("incomplete")
        if torn:
            kinds.append("torn" if getattr(event, "function", None) else "result without call")
        if not kinds:
            return
        last = self.damage[-1] if self.damage else None
        if kinds == ["unparsed"] and last and last["kind"] == "unparsed" \
                and last["end_line"] + 1 >= event.line:
            last["end_line"] = max(last["end_line"], event.end_line)
        elif len(self.damage) < DAMAGE_LISTED:
            what = getattr(event, "reason", None) or getattr(event, "function", None)
            self.damage.append({"kind": ", ".join(kinds), "line": event.line,
                                "end_line": event.end_line, "process": event.process,
                                "what": f"{what}: {torn}" if torn and what else what or torn})

    def _time(self, event: Event) -> None:
        if event.time:
            self.first_time = self.first_time or event.time
            self.last_time = event.time

    def _seen(self, items: list[str], value: str | None) -> None:
        if value and value not in items:
            items.append(value)

    def _apdu(self, apdu: ApduExchange) -> None:
        self._time(apdu)
        if apdu.function:
            self._pcsc_result(apdu.function, apdu.rv, apdu)
        if apdu.incomplete:
            self.incomplete_records += 1
        if apdu.response is None:
            self.apdus_unanswered += 1
        else:
            self.apdus += 1
        if apdu.sw is not None:
            self.status_words[f"{apdu.sw:04X}"] += 1
        self._seen(self.readers, apdu.reader)
        if len(apdu.command) >= 4:
            cla, ins, p1, p2 = apdu.command[:4]
            name = iso7816.ins_name(ins, cla, None, p1, p2)
            stat = self.apdu_stats.setdefault(name, {"count": 0, "failed": 0, "total_ms": 0.0,
                                                     "max_ms": 0.0})
            stat["count"] += 1
            if apdu.sw is not None and not iso7816.status_word(apdu.sw).ok:
                stat["failed"] += 1
            if apdu.duration is not None:
                ms = apdu.duration * 1000
                stat["total_ms"] = round(stat["total_ms"] + ms, 3)
                stat["max_ms"] = max(stat["max_ms"], round(ms, 3))
            if ins in iso7816.PIN_INS:
                self._pin_command(apdu, name)

    def _pin_command(self, apdu: ApduExchange, name: str) -> None:
        """A PIN command and what the card said: the tries left of 63Cx, a blocked PIN."""
        status = iso7816.status_word(apdu.sw) if apdu.sw is not None else None
        data = apdu.command_data.length if apdu.command_data is not None else (
            len(apdu.command) - 5 if len(apdu.command) > 5 else 0)
        entry = {"process": apdu.process, "line": apdu.line, "command": name,
                 "reference": f"{apdu.command[3]:02X}", "pin_length": data or None,
                 "sw": f"{apdu.sw:04X}" if apdu.sw is not None else None,
                 "result": status.meaning if status else None,
                 "tries_left": status.tries_left if status else None}
        if apdu.sw == 0x6983:
            entry["blocked"] = True
        self.pin_commands.append(entry)

    def _pcsc_result(self, function: str, rv: int | None, event: Event) -> None:
        self.pcsc_calls[function] += 1
        stat = self.pcsc_stats.setdefault(function, {"count": 0, "failed": 0})
        stat["count"] += 1
        stat["failed"] += bool(rv)
        duration = getattr(event, "duration", None)
        if duration is not None:
            _timed(stat, duration * 1000)
        if rv:
            self.failed_pcsc_calls.append({"process": event.process, "line": event.line,
                                           "function": function, "rv": f"0x{rv:08X}",
                                           "name": pcsc.name(rv)})

    def _pcsc(self, call: PcscCall) -> None:
        self._time(call)
        self._pcsc_result(call.function, call.rv, call)
        self.problems += len(call.problems)
        if call.incomplete:
            self.incomplete_records += 1
        for arg in call.args:
            if arg.name == "szReader" and isinstance(arg.value, str):
                self._seen(self.readers, arg.value)
            elif arg.name == "bAtr" and arg.direction == "out" and arg.value:
                self._seen(self.atr, arg.value.hex().upper())

    def _debug(self, line: DebugLine) -> None:
        self._time(line)
        if line.what == "returned" and line.function:
            stat = self.debug_stats.setdefault(line.function, {"count": 0, "failed": 0})
            stat["count"] += 1
            stat["failed"] += line.error is not None
            if line.duration is not None:  # measured from its "called" line
                _timed(stat, line.duration * 1000)
        if line.error is not None and line.origin:
            self.sc_errors[str(line.error)] += 1
            self.failures.append({"process": line.process, "line": line.line,
                                  "function": line.function, "file": line.file,
                                  "error": line.error, "name": opensc.name(line.error),
                                  "message": line.message.strip()})
        if line.reader:
            self._seen(self.readers, line.reader)
        if line.atr:
            self._seen(self.atr, line.atr)

    def _call(self, call: Pkcs11Call) -> None:
        if call.incomplete:
            self.incomplete_records += 1
        if call.torn and call.function is None:
            self.orphan_results += 1
        elif call.torn:
            self.torn_records += 1
        if call.problems:
            self.problems += len(call.problems)
            self.unparsed_lines += sum(p.startswith("line ") for p in call.problems)
        self._time(call)
        function = call.function
        if function is None:
            return
        self.calls += 1
        self.calls_by_function[function] += 1
        self._duration(call)
        if call.rv:
            self.failed_by_function[function] += 1
            failed = {"process": call.process, "seq": call.seq, "line": call.line,
                      "function": function, "rv": call.rv, "name": pkcs11.ckr_name(call.rv)}
            if call.torn:
                failed["uncertain"] = call.torn
            self.failed_calls.append(failed)
        if function in _STEPS:
            getattr(self, "_" + function)(call, call.process or 0)
        if function in OPERATION_STARTS or function in OPERATION_STEPS:
            self._operation(call, call.process or 0)

    def _operation(self, call: Pkcs11Call, proc: int) -> None:
        """Counts the operation a call starts, and its failure, in its session."""
        h = _ulong(call, "hSession")
        s = self._open.get((proc, h)) if h is not None else None
        if s is None or call.rv is None:  # a session opened before the trace, a torn record
            return
        kind = OPERATION_STARTS.get(call.function)
        if kind is not None and call.torn:  # its session or result may be another call's
            op = s["operations"].setdefault(kind, {"count": 0, "failed": 0})
            op["uncertain"] = op.get("uncertain", 0) + 1
        elif kind is not None:
            op = s["operations"].setdefault(kind, {"count": 0, "failed": 0})
            op["count"] += 1
            if call.rv != 0:
                op["failed"] += 1
            elif OPERATIONS[kind][1]:
                self._active.add((proc, h, kind))
            return
        kind = OPERATION_STEPS.get(call.function)
        if kind is None or call.torn or (proc, h, kind) not in self._active \
                or call.rv == CKR_BUFFER_TOO_SMALL:
            return
        # A success leaves it active: C_Sign with no buffer only asks for the length.
        if call.rv != 0:
            s["operations"][kind]["failed"] += 1
            self._active.discard((proc, h, kind))

    def _duration(self, call: Pkcs11Call) -> None:
        """A measured duration where the format has one, else the spy's upper bound."""
        assert call.function is not None
        measured = getattr(call, "duration", None)  # formats that time each call
        if measured is not None:
            _timed(self.call_times.setdefault(call.function, {}), measured * 1000)
            return
        if call.time == self._last_time[0]:  # calls a millisecond apart share a stamp
            start = self._last_time[1]
        else:
            start = _seconds(call.time)
            self._last_time = (call.time, start)
        before = self._unbounded.pop(call.process, None)
        if before is not None and start is not None and start >= before[1]:
            ms = (start - before[1]) * 1000 + SPY_TRUNCATION_MS
            _timed(self.call_times.setdefault(before[0], {}), ms, "bound_")
        if start is not None and not call.torn and not call.incomplete and call.rv is not None:
            self._unbounded[call.process] = (call.function, start)

    # -- per function ------------------------------------------------------

    def _C_OpenSession(self, call: Pkcs11Call, proc: int) -> None:
        h = _ulong(call, "*phSession")
        if call.rv != 0 or h is None:
            return
        s = {"process": proc, "handle": handle(h), "slot": handle(_ulong(call, "slotID")),
             "flags": handle(_ulong(call, "flags")), "opened_seq": call.seq,
             "opened_line": call.line, "closed_seq": None, "user": None,
             "operations": {}, "login_changes": []}
        self.sessions.append(s)
        self._open[(proc, h)] = s

    def _close(self, key: tuple[int, int], call: Pkcs11Call) -> None:
        s = self._open.pop(key, None)
        if s is not None:
            s["closed_seq"] = call.seq
            self._active = {a for a in self._active if a[:2] != key}  # a reused handle

    def _C_CloseSession(self, call: Pkcs11Call, proc: int) -> None:
        h = _ulong(call, "hSession")
        if call.rv == 0 and h is not None:
            self._close((proc, h), call)

    def _C_CloseAllSessions(self, call: Pkcs11Call, proc: int) -> None:
        slot = handle(_ulong(call, "slotID"))
        if call.rv == 0:
            for key, s in list(self._open.items()):
                if key[0] == proc and s["slot"] == slot:
                    self._close(key, call)

    def _C_Finalize(self, call: Pkcs11Call, proc: int) -> None:
        if call.rv == 0:
            for key in [k for k in self._open if k[0] == proc]:
                self._close(key, call)

    def _C_Login(self, call: Pkcs11Call, proc: int) -> None:
        h = _ulong(call, "hSession")
        arg = call.arg("userType")
        user = arg.value if arg is not None else None
        if isinstance(user, int):
            user = pkcs11.name("CKU", user)
        login = {"process": proc, "seq": call.seq, "line": call.line, "session": handle(h),
                 "user_type": user, "result": _result(call)}
        pin = call.arg("pPin")
        if pin is not None and isinstance(pin.value, Redacted):
            login["pin_length"] = pin.value.length
        elif pin is not None and isinstance(pin.value, bytes):
            login["pin_length"] = len(pin.value)
        username = call.arg("pUsername")
        if username is not None and isinstance(username.value, bytes):
            login["username"] = username.value.decode("utf-8", "backslashreplace")
        if call.torn:
            login["uncertain"] = call.torn
        self.logins.append(login)
        s = self._open.get((proc, h)) if h is not None else None
        if s is not None and call.rv in (0, 0x100):  # CKR_USER_ALREADY_LOGGED_IN
            s["user"] = user
        if s is not None:
            _login_change(s, call, user)

    _C_LoginUser = _C_Login

    def _C_Logout(self, call: Pkcs11Call, proc: int) -> None:
        h = _ulong(call, "hSession")
        s = self._open.get((proc, h)) if h is not None else None
        if s is not None:
            _login_change(s, call, None)
        if call.rv == 0:
            for key, s in self._open.items():  # login state is per token, not per session
                if key[0] == proc:
                    s["user"] = None

    def _C_FindObjectsInit(self, call: Pkcs11Call, proc: int) -> None:
        h = _ulong(call, "hSession")
        find = {"process": proc, "seq": call.seq, "line": call.line, "session": handle(h),
                "template": template(call.arg("pTemplate")), "handles": [],
                "result": _result(call)}
        if call.torn:
            find["uncertain"] = call.torn
        self.finds.append(find)
        if call.rv == 0 and h is not None:
            self._finding[(proc, h)] = find

    def _C_FindObjects(self, call: Pkcs11Call, proc: int) -> None:
        h = _ulong(call, "hSession")
        find = self._finding.get((proc, h)) if h is not None else None
        found = call.arg("phObject")
        if find is not None and found is not None and isinstance(found.value, list):
            find["handles"].extend(handle(v) for v in found.value)
            for v in found.value:
                obj = self._object(proc, v)
                obj["found_by"].append(find["seq"])
                obj.update({k.lower().removeprefix("cka_"): val
                            for k, val in find["template"].items() if k in OBJECT_KEYS})

    def _object(self, proc: int, h: int) -> dict:
        obj = self.objects.get((proc, h))
        if obj is None:
            obj = {"process": proc, "handle": handle(h), "found_by": [], "attributes_read": []}
            if len(self.objects) < LISTED:
                self.objects[(proc, h)] = obj
            else:  # updated, not kept
                self.objects_unlisted = True
        return obj

    def _C_GetAttributeValue(self, call: Pkcs11Call, proc: int) -> None:
        h = _ulong(call, "hObject")
        out = call.arg("pTemplate", "out")
        if h is None or out is None or call.rv not in (0, 0x11, 0x12, 0x150):
            return
        obj = self._object(proc, h)
        for name, value in template(out).items():
            if name not in obj["attributes_read"]:
                obj["attributes_read"].append(name)
            if name in OBJECT_KEYS and value is not None:
                obj[name.lower().removeprefix("cka_")] = value

    def _created(self, call: Pkcs11Call, proc: int, out_name: str, tmpl_name: str) -> None:
        h = _ulong(call, out_name)
        if call.rv == 0 and h is not None:
            obj = self._object(proc, h)
            obj["created_seq"] = call.seq
            obj.update({k.lower().removeprefix("cka_"): v for k, v in
                        template(call.arg(tmpl_name)).items() if k in OBJECT_KEYS})

    def _C_CreateObject(self, call: Pkcs11Call, proc: int) -> None:
        self._created(call, proc, "*phObject", "pTemplate")

    def _C_GenerateKey(self, call: Pkcs11Call, proc: int) -> None:
        self._created(call, proc, "hKey", "pTemplate")

    def _C_GenerateKeyPair(self, call: Pkcs11Call, proc: int) -> None:
        self._created(call, proc, "hPublicKey", "pPublicKeyTemplate")
        self._created(call, proc, "hPrivateKey", "pPrivateKeyTemplate")

    def _C_GetTokenInfo(self, call: Pkcs11Call, proc: int) -> None:
        info = call.arg("pInfo")
        flags = info.value.get("flag_names", []) if info and isinstance(info.value, dict) else []
        warn = [f for f in flags if f in PIN_FLAGS]
        if warn:
            self.pin_flags.append({"process": proc, "seq": call.seq, "line": call.line,
                                   "slot": handle(_ulong(call, "slotID")), "flags": warn})

    def _C_FindObjectsFinal(self, call: Pkcs11Call, proc: int) -> None:
        h = _ulong(call, "hSession")
        if h is not None:
            self._finding.pop((proc, h), None)

    # -- output ------------------------------------------------------------

    def summary(self) -> dict:
        return {
            "format": self.format,
            "processes": len(self.processes),
            "calls": self.calls,
            "calls_by_function": dict(sorted(self.calls_by_function.items())),
            "failed_calls": self.failed_calls,
            "sessions": self.sessions,
            "logins": self.logins,
            "finds": self.finds,
            "modules": self.modules,
            "first_time": self.first_time,
            "last_time": self.last_time,
            "apdus": self.apdus,
            "apdus_unanswered": self.apdus_unanswered,
            "pcsc_calls_by_function": dict(sorted(self.pcsc_calls.items())),
            "failed_pcsc_calls": self.failed_pcsc_calls,
            "status_words": dict(sorted(self.status_words.items())),
            "sc_errors": dict(sorted(self.sc_errors.items())),
            "failures": self.failures,
            "readers": self.readers,
            "atr": self.atr,
            "pin_commands": self.pin_commands,
            "pin_flags": self.pin_flags,
            "objects": list(self.objects.values()),
            "statistics": {
                "functions": {f: {"count": n, "failed": self.failed_by_function.get(f, 0)}
                              | self.call_times.get(f, {})
                              for f, n in sorted(self.calls_by_function.items())},
                "apdus": dict(sorted(self.apdu_stats.items())),
                "opensc_functions": dict(sorted(self.debug_stats.items())),
                "pcsc": dict(sorted(self.pcsc_stats.items())),
            },
            "incomplete_records": self.incomplete_records,
            "torn_records": self.torn_records,
            "orphan_results": self.orphan_results,
            "unparsed_lines": self.unparsed_lines,
            "damage": self.damage[:DAMAGE_LISTED],  # chunks merged (fastscan) may hold more
        } | ({"unlisted": unlisted} if (unlisted := self.unlisted()) else {})

    def unlisted(self) -> dict[str, int | None]:
        """How many entries of each list the summary left out (see LISTED); objects:
        None, some (how many is not kept)."""
        counts: dict[str, int | None] = {
            f.name: getattr(self, f.name).unlisted for f in fields(self)
            if isinstance(getattr(self, f.name), Listed)}
        counts["objects"] = None if self.objects_unlisted else 0
        return {name: n for name, n in sorted(counts.items()) if n != 0}


# The functions with a step of their own above (C_Login: Analysis._C_Login).
_STEPS = frozenset(name[1:] for name in vars(Analysis) if name.startswith("_C_"))
