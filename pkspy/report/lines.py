"""One readable line per event, for ``pkspy tail``.

    14:16:11.872 p1/2635 #7  C_Login session=0x1 user=CKU_USER pPin=‹PIN redacted, 10 bytes›
                                 -> CKR_PIN_INCORRECT (0xa0) the PIN is wrong   [all on one line]

The arguments shown are the ones that tell the story (slot, session, user,
mechanism, handles, templates); buffers show only their length.
"""

from __future__ import annotations

from decoders import pkcs11
from pkspy.analysis import TEXT_ATTRIBUTES, attribute_value
from pkspy.model import Arg, Event, Mechanism, Pkcs11Call, ProcessStart, Redacted, Unparsed

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
TEMPLATE_ITEMS = 4
# From info blocks (token, slot, session, mechanism info), the fields worth a glance.
INFO_KEYS = ("label", "slotDescription", "state", "min", "max")


def _short(value: object, limit: int = 24) -> str:
    text = str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _info_text(value: object) -> str:
    return repr(value.strip()) if isinstance(value, str) else str(value)


def _attr_text(attr) -> str:
    if isinstance(attr.value, Redacted):
        return str(attr.value)
    v = attribute_value(attr)
    if isinstance(v, str) and attr.name in TEXT_ATTRIBUTES:
        return _short(repr(v))
    return _short(v)


def format_arg(arg: Arg) -> str | None:
    if arg.name in SKIP:
        return None
    if arg.kind == "info":
        info = arg.value if isinstance(arg.value, dict) else {}
        shown = [f"{k}={_short(_info_text(info[k]), 40)}" for k in INFO_KEYS if k in info]
        return " ".join(shown) or None
    label = LABELS.get(arg.name, arg.name)
    v = arg.value
    if isinstance(v, Redacted):
        return f"{label}={v}"
    if arg.kind == "mechanism":
        return f"mech={v.name}" if isinstance(v, Mechanism) else "mech=NULL"
    if arg.kind == "template":
        items = [a.name if a.value is None else f"{a.name}={_attr_text(a)}"
                 for a in (v or [])[:TEMPLATE_ITEMS]]
        more = len(v or []) - TEMPLATE_ITEMS
        if more > 0:
            items.append(f"+{more}")
        return f"{arg.name}{{{', '.join(items)}}}"
    if arg.kind == "buffer":
        if isinstance(v, bytes):
            return f"{label}[{len(v)}]"
        return f"{label}[{'NULL' if arg.length is None or arg.length >= 0 else 'EMPTY'}]"
    if arg.kind == "slots":
        return f"slots={v}" if v is not None else f"slots={arg.length} (count)"
    if arg.kind == "mechanisms":
        return f"mechanisms={len(v)}" if v else f"mechanisms={arg.length} (count)"
    if arg.kind == "objects":
        return "found=[" + ", ".join(f"0x{h:x}" for h in v) + "]"
    if arg.kind == "interfaces":
        return "interfaces=" + ",".join(str(i.get("name")) for i in v)
    if arg.kind == "ulong" and isinstance(v, int):
        if arg.name in ("userType",):
            return f"{label}={pkcs11.name('CKU', v)}"
        return f"{label}=0x{v:x}"
    if arg.kind == "text" and not v:
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
    name = pkcs11.ckr_name(call.rv)
    if call.rv == 0:
        return name
    meaning = pkcs11.ckr_meaning(call.rv)
    text = f"{name} (0x{call.rv:x})"
    return f"{text}: {meaning}" if meaning else text


def is_failure(event: Event) -> bool:
    if isinstance(event, Pkcs11Call):
        return event.rv is None or event.rv != 0 or bool(event.torn)
    return isinstance(event, Unparsed)


def format_event(event: Event) -> str:
    head = f"{_clock(event):>12} {_where(event):<10}"
    if isinstance(event, Pkcs11Call):
        seq = f"#{event.seq}" if event.seq is not None else "#?"
        ins = [format_arg(a) for a in event.args if a.direction != "out"]
        outs = [format_arg(a) for a in event.args if a.direction == "out"]
        parts = [head, f"{seq:>5}", event.function or "(result without call)",
                 *filter(None, ins), "->", result_text(event), *filter(None, outs)]
        if event.torn:
            parts.append(f"[torn: {event.torn}]")
        elif event.incomplete:
            parts.append("[incomplete]")
        if event.problems:
            parts.append(f"[{len(event.problems)} line(s) not understood]")
        return " ".join(parts)
    if isinstance(event, ProcessStart):
        text = f"{head}   -- process {event.process} loaded {event.module or '?'}"
        if event.errors:
            text += "; " + "; ".join(event.errors)
        return text
    if isinstance(event, Unparsed):
        return f"{head} line {event.line}: not parsed ({event.reason}): {event.raw[0][:200]}"
    return f"{head} {event.kind}"
