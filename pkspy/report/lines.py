"""One readable line per event, for ``pkspy tail`` and the report timelines.

    14:16:11.774 p1/2610.9376    #7 C_Login session=0x1 user=CKU_USER
        pPin=‹PIN redacted, 10 bytes› -> CKR_PIN_INCORRECT (0xa0): PIN does not match
    15:10:08.486 p3/1174.2224   APDU VERIFY 00 20 00 00 Lc=6 ‹PIN redacted, 6 bytes›
        -> 63C2 2 tries left 47.0 ms @Virtual PCD 00 01          [each on one line]

Calls show the arguments that tell the story (slot, session, user,
mechanism, handles, templates, decoded DER values) before the arrow and what
came back after it; buffers show only their length. APDU exchanges show the
instruction, header, data, Le, status word and time; OpenSC debug lines only
where a failure began.
"""

from __future__ import annotations

from functools import lru_cache

from decoders import der, iso7816, opensc, pcsc, pkcs11
from pkspy.analysis import TEXT_ATTRIBUTES, attribute_value
from pkspy.model import (
    ApduExchange,
    Arg,
    DebugLine,
    Event,
    Mechanism,
    PcscCall,
    Pkcs11Call,
    ProcessStart,
    Redacted,
    Unparsed,
)

# How an argument is labelled on the line; arguments not listed keep their own name.
LABELS = {
    "slotID": "slot", "hSession": "session", "userType": "user", "hObject": "object",
    "hKey": "key", "hBaseKey": "base", "hWrappingKey": "wrapping", "hUnwrappingKey": "unwrapping",
    "*phSession": "session", "*phObject": "object", "*phNewObject": "object",
    "hPublicKey": "public", "hPrivateKey": "private", "flags": "flags", "type": "mechanism",
    "tokenPresent": "present", "ulMaxObjectCount": "max", "ulObjectCount": "count",
    "*pulCount": "count",
}
# Arguments that are noise on a one-line view.
SKIP = {"pApplication", "Notify", "pInitArgs", "compat", "pVersion", "pInterfaceName",
        "pReserved", "pulCount"}
TEMPLATE_ITEMS = 5
# What says most about an object comes first when a template is cut short.
TELLING = ("CKA_CLASS", "CKA_KEY_TYPE", "CKA_LABEL", "CKA_ID", "CKA_VALUE", "CKA_SUBJECT",
           "CKA_EC_PARAMS", "CKA_MODULUS_BITS", "CKA_CERTIFICATE_TYPE")
# From info blocks (token, slot, session, mechanism info), the fields worth a glance.
INFO_KEYS = ("label", "slotDescription", "state", "min", "max")


def _attr_rank(attr) -> int:
    return TELLING.index(attr.name) if attr.name in TELLING else len(TELLING)


def _short(value: object, limit: int = 24) -> str:
    text = str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _info_text(value: object) -> str:
    return repr(value.strip()) if isinstance(value, str) else str(value)


@lru_cache(maxsize=512)  # the same subjects and curves come back on every lookup
def _described(name: str, value: bytes) -> str | None:
    return der.describe(name, value)


def _attr_text(attr) -> str:
    if isinstance(attr.value, Redacted):
        return str(attr.value)
    if isinstance(attr.value, bytes) and attr.name not in TEXT_ATTRIBUTES:
        described = _described(attr.name, attr.value)  # a subject, a curve, a key size
        if described:
            return _short(described, 120)
    v = attribute_value(attr)
    if isinstance(v, str) and attr.name in TEXT_ATTRIBUTES:
        return _short(repr(v))
    return _short(v)


def _template(arg: Arg, label: str, v) -> str:
    attrs = v or []
    if len(attrs) <= TEMPLATE_ITEMS:  # all shown, in the trace's order
        items = [a.name if a.value is None else f"{a.name}={_attr_text(a)}" for a in attrs]
        return f"{arg.name}{{{', '.join(items)}}}"
    shown = sorted(attrs, key=_attr_rank)[:TEMPLATE_ITEMS]
    items = [a.name if a.value is None else f"{a.name}={_attr_text(a)}"
             for a in attrs if a in shown]  # in the trace's order
    items.append(f"+{len(attrs) - TEMPLATE_ITEMS}")
    return f"{arg.name}{{{', '.join(items)}}}"


def _buffer(arg: Arg, label: str, v) -> str:
    if isinstance(v, bytes):
        return f"{label}[{len(v)}]"
    return f"{label}[{'NULL' if arg.length is None or arg.length >= 0 else 'EMPTY'}]"


# How each kind of argument (but ulong and text) reads: (arg, label, value) -> text.
SHAPES = {
    "mechanism": lambda arg, label, v: f"mech={v.name}" if isinstance(v, Mechanism)
    else "mech=NULL",
    "template": _template,
    "buffer": _buffer,
    "slots": lambda arg, label, v: f"slots={v}" if v is not None
    else f"slots={arg.length} (count)",
    "mechanisms": lambda arg, label, v: f"mechanisms={len(v)}" if v
    else f"mechanisms={arg.length} (count)",
    "objects": lambda arg, label, v: "found=[" + ", ".join(f"0x{h:x}" for h in v) + "]",
    "interfaces": lambda arg, label, v: "interfaces=" + ",".join(str(i.get("name"))
                                                                 for i in v),
}


def format_arg(arg: Arg) -> str | None:
    if arg.name in SKIP:
        return None
    kind = arg.kind
    if kind == "info":
        info = arg.value if isinstance(arg.value, dict) else {}
        shown = [f"{k}={_short(_info_text(info[k]), 40)}" for k in INFO_KEYS if k in info]
        return " ".join(shown) or None
    label = LABELS.get(arg.name, arg.name)
    v = arg.value
    if isinstance(v, Redacted):
        return f"{label}={v}"
    shape = SHAPES.get(kind)
    if shape is not None:
        return shape(arg, label, v)
    if kind == "ulong" and isinstance(v, int):
        if arg.name == "userType":
            return f"{label}={pkcs11.name('CKU', v)}"
        return f"{label}=0x{v:x}"
    if kind == "text" and not v:
        return None
    return f"{label}={_short(v, 40)}"


def _where(event: Event) -> str:
    where = f"p{event.process}" if event.process is not None else "p?"
    if event.pid is not None:
        where += f"/{event.pid}"
    if event.tid is not None:
        where += f".{event.tid[-4:]}"
    return where


def _clock(event: Event) -> str:
    return event.time.split(" ", 1)[-1] if event.time else "-"


def result_text(call: Pkcs11Call) -> str:
    if call.rv is None:
        return "(no result: record cut short)"
    return _rv_text(call.rv)


@lru_cache(maxsize=512)  # a trace returns a handful of codes, thousands of times
def _rv_text(rv: int) -> str:
    name = pkcs11.ckr_name(rv)
    if rv == 0:
        return name
    meaning = pkcs11.ckr_meaning(rv)
    text = f"{name} (0x{rv:x})"
    return f"{text}: {meaning}" if meaning else text


def is_failure(event: Event) -> bool:
    if isinstance(event, Pkcs11Call):
        return event.rv is None or event.rv != 0 or bool(event.torn)
    if isinstance(event, ApduExchange):
        return event.sw is None or not iso7816.status_word(event.sw).ok
    if isinstance(event, DebugLine):
        return debug_failure(event)
    if isinstance(event, PcscCall):
        return bool(event.rv) or event.incomplete or bool(event.problems)
    return isinstance(event, Unparsed)


def debug_failure(line: DebugLine) -> bool:
    """An OpenSC line worth a line of its own: where a failure began, a failed PC/SC
    or PKCS#11 result. The thousands of other lines are only shown by --json."""
    if line.error is not None:
        return line.origin
    return line.what in ("pcsc", "pkcs11") and line.rv not in (None, 0)


def is_shown(event: Event) -> bool:
    return not isinstance(event, DebugLine) or debug_failure(event)


APDU_DATA_SHOWN = 16


def _hex(data: bytes, limit: int = APDU_DATA_SHOWN) -> str:
    text = data[:limit].hex(" ").upper()
    return text + (f" …(+{len(data) - limit})" if len(data) > limit else "")


def format_apdu(apdu: ApduExchange) -> str:
    """SELECT 00 A4 04 00 Lc=07 62 76 01 FF 00 00 00 -> 6A82 file or application not found"""
    parts = []
    if apdu.command:
        try:
            cmd = iso7816.parse_command(apdu.command)
        except ValueError:
            cmd = None
        head = apdu.command[:4]
        name = (iso7816.ins_name(head[1], head[0], None, *head[2:4]) if len(head) == 4
                else "short command")
        parts += [name, head.hex(" ").upper()]
        if apdu.command_data is not None:
            parts += [f"Lc={apdu.command_data.length}", str(apdu.command_data)]
        elif cmd is not None:
            if cmd.data:
                parts += [f"Lc={len(cmd.data)}", _hex(cmd.data)]
            if cmd.le is not None:
                parts.append(f"Le={cmd.le}")
            if cmd.problem:
                parts.append(f"[{cmd.problem}]")
        else:
            parts.append(_hex(apdu.command[4:]))
    else:
        parts.append("(response with no command)")
    parts.append("->")
    if apdu.response is None:
        parts.append("(no response)")
    else:
        data = apdu.response[:-2]
        if apdu.sw is not None:
            parts.append(iso7816.sw_text(apdu.sw))
        if data:
            parts.append(f"data[{len(data)}]")
    if apdu.rv:  # the transport call failed: no response came
        parts.append(f"[{apdu.function or 'transmit'}: {pcsc.name(apdu.rv) or hex(apdu.rv)}]")
    if apdu.duration is not None:
        parts.append(f"{apdu.duration * 1000:.1f} ms")
    if apdu.reader:
        parts.append(f"@{apdu.reader}")
    return " ".join(parts)


# PC/SC arguments worth a glance, by name.
PCSC_SHOWN = ("szReader", "dwShareMode", "dwPreferredProtocols", "dwActiveProtocol",
              "dwDisposition", "dwControlCode", "dwAttrId", "dwTimeout", "phCard", "hCard")


def format_pcsc(call: PcscCall) -> str:
    parts = [call.function]
    for arg in call.args:
        if arg.name in PCSC_SHOWN and arg.value is not None:
            v = f"0x{arg.value:X}" if isinstance(arg.value, int) else repr(arg.value)
            shown = f"{arg.name}={v}"
        elif arg.name == "bAtr" and arg.direction == "out" and arg.value:
            shown = f"ATR={arg.value.hex().upper()}"
        else:
            continue
        if shown not in parts:  # GetStatusChange names each reader twice (in and out)
            parts.append(shown)
    parts.append("->")
    if call.rv is None:
        parts.append("(no result: record cut short)")
    else:
        parts.append(pcsc.name(call.rv) or f"0x{call.rv:08X}")
    if call.duration is not None:
        parts.append(f"{call.duration * 1000:.1f} ms")
    if call.problems:
        parts.append(f"[{'; '.join(call.problems)}]")
    return " ".join(parts)


def format_debug(line: DebugLine) -> str:
    where = f"{line.function or '?'} ({line.file}:{line.src_line})" if line.file else (
        line.function or line.module or "")
    if line.error is not None:
        name = opensc.name(line.error) or "SC_ERROR"
        text = f"{where} failed: {name} ({line.error}) {opensc.text(line.error)}"
        if line.what != "returned":
            text += f" — {line.message.strip()}"
        return text + " [failure began here]"
    if line.what == "pcsc":
        code = pcsc.name(line.rv) if line.rv is not None else None
        return f"{where}: {line.message.strip()} = {code or hex(line.rv or 0)}"
    return f"{where}: {line.message.strip()}"


def _args_text(args: list[Arg]) -> tuple[str, str]:
    """The in (and unnamed) and the out arguments of a call, each on one line. Made
    anew each time: an event redacted in place after it was shown must not show
    what it held (copied records share their argument lists, so no cache by list)."""
    ins: list[str] = []
    outs: list[str] = []
    for a in args:
        text = format_arg(a)
        if text:
            (outs if a.direction == "out" else ins).append(text)
    return " ".join(ins), " ".join(outs)


def format_event(event: Event) -> str:
    head = f"{_clock(event):>12} {_where(event):<10}"
    if isinstance(event, Pkcs11Call):
        seq = f"#{event.seq}" if event.seq is not None else "#?"
        ins, outs = _args_text(event.args)
        parts = [head, f"{seq:>5}", event.function or "(result without call)"]
        if ins:
            parts.append(ins)
        parts += ["->", result_text(event)]
        if outs:
            parts.append(outs)
        if event.torn:
            parts.append(f"[torn: {event.torn}]")
        elif event.incomplete:
            parts.append("[incomplete]")
        if event.problems:
            parts.append(f"[{len(event.problems)} line(s) not understood]")
        return " ".join(parts)
    if isinstance(event, ApduExchange):
        return f"{head}   APDU {format_apdu(event)}"
    if isinstance(event, DebugLine):
        return f"{head}   {format_debug(event)}"
    if isinstance(event, PcscCall):
        return f"{head}   {format_pcsc(event)}"
    if isinstance(event, ProcessStart):
        text = f"{head}   -- process {event.process} loaded {event.module or '?'}"
        if event.errors:
            text += "; " + "; ".join(event.errors)
        return text
    if isinstance(event, Unparsed):
        return f"{head} line {event.line}: not parsed ({event.reason}): {event.raw[0][:200]}"
    return f"{head} {event.kind}"
