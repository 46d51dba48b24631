"""The detail of one event: every decoded argument, the hint for a failure, and
the raw lines it came from with their numbers. Events arrive redacted; this
module only formats them (Rich ``Text``, no Textual).
"""

from __future__ import annotations

from rich.style import Style
from rich.text import Text

from decoders import der, iso7816
from pkspy.analysis import TEXT_ATTRIBUTES, attribute_value
from pkspy.model import (
    ApduExchange,
    Arg,
    Attribute,
    DebugLine,
    Event,
    Mechanism,
    PcscCall,
    Pkcs11Call,
    ProcessStart,
    Redacted,
    Unparsed,
)
from pkspy.report.lines import format_apdu, format_debug, result_text

KINDS = {"call": "PKCS#11 call", "apdu": "APDU exchange", "pcsc": "PC/SC call",
         "debug": "OpenSC log line", "process": "process start", "unparsed": "not parsed"}
HEX_SHOWN = 64  # bytes of a buffer shown in hex
RAW_SHOWN = 400  # raw lines shown


def _hex(data: bytes) -> str:
    text = data[:HEX_SHOWN].hex(" ").upper()
    return text + (f" …(+{len(data) - HEX_SHOWN} bytes)" if len(data) > HEX_SHOWN else "")


def _printable(data: bytes) -> str | None:
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        return None
    return repr(text) if text.isprintable() else None


def _attr(attr: Attribute) -> str:
    v = attr.value
    if isinstance(v, Redacted):
        return str(v)
    if v is None:
        return f"(not given{f', {attr.length} bytes' if attr.length is not None else ''})"
    if isinstance(v, bytes):
        if attr.name in TEXT_ATTRIBUTES:
            return repr(v.decode("utf-8", "backslashreplace"))
        described = der.describe(attr.name, v)
        plain = attribute_value(attr)
        if described:
            return f"{described}  [{_hex(v)}]"
        return str(plain) if isinstance(plain, int) else _hex(v)
    return str(attribute_value(attr))


def _value(arg: Arg) -> str:
    v = arg.value
    if isinstance(v, Redacted):
        return str(v)
    if isinstance(v, bytes):
        text = _printable(v)
        return f"[{len(v)}] {_hex(v)}" + (f"  {text}" if text else "")
    if arg.kind == "buffer" and v is None:
        return f"NULL / {arg.length}" if arg.length is not None else "NULL"
    if isinstance(v, int) and not isinstance(v, bool) and arg.kind == "ulong":
        return f"0x{v:x} ({v})"
    if arg.kind == "objects" and isinstance(v, list):
        return "[" + ", ".join(f"0x{h:x}" for h in v) + "]"
    if isinstance(v, list) and arg.kind in ("slots", "mechanisms"):
        return ", ".join(f"0x{x:x}" if isinstance(x, int) else str(x) for x in v)
    return str(v)


def _args(out: Text, args: list[Arg], indent: str = "  ") -> None:
    for arg in args:
        where = f"[{arg.direction}] " if arg.direction else ""
        if arg.kind == "template" and isinstance(arg.value, list):
            out.append(f"{indent}{where}{arg.name} ({len(arg.value)} attributes)\n")
            for a in arg.value:
                out.append(f"{indent}    {a.name} = ", style="dim")
                out.append(_attr(a) + "\n", style="yellow" if a.secret else "")
        elif arg.kind == "mechanism" and isinstance(arg.value, Mechanism):
            out.append(f"{indent}{where}{arg.name} = {arg.value.name}\n")
            _args(out, arg.value.params, indent + "    ")
        elif arg.kind == "info" and isinstance(arg.value, dict):
            out.append(f"{indent}{where}{arg.name}\n")
            for k, v in arg.value.items():
                out.append(f"{indent}    {k} = {v.strip() if isinstance(v, str) else v}\n")
        else:
            out.append(f"{indent}{where}{arg.name} = ", style="dim")
            out.append(_value(arg) + "\n", style="yellow" if arg.secret else "")


def _hint(out: Text, text: str, namespace: str) -> None:
    from decoders.explain import explain  # its tables load with the first failure shown

    matches = explain(text, namespace)
    if matches and matches[0].hint:
        out.append("  hint: ", style="bold")
        out.append(matches[0].hint + "\n")


def _apdu(out: Text, apdu: ApduExchange) -> None:
    out.append(f"  {format_apdu(apdu)}\n", style="bold")
    out.append(f"  command  {_hex(apdu.command)}")
    if apdu.command_data is not None:
        out.append(f" {apdu.command_data}", style="yellow")
    out.append("\n")
    if apdu.response is not None:
        out.append(f"  response {_hex(apdu.response)}\n")
        for cert in der.find_certificates(apdu.response[:-2])[:3]:
            out.append(f"  certificate at {cert.offset}: {cert.summary}\n")
    if apdu.sw is not None:
        sw = iso7816.status_word(apdu.sw)
        out.append(f"  SW {apdu.sw:04X}: {sw.meaning}\n", style="" if sw.ok else "red")
        if not sw.ok:
            _hint(out, f"{apdu.sw:04X}", "sw")
    for name in ("reader", "header", "function"):
        if getattr(apdu, name):
            out.append(f"  {name} = {getattr(apdu, name)}\n")


def _body(out: Text, event: Event) -> None:
    if isinstance(event, Pkcs11Call):
        out.append(f"  {event.function or '(result without call)'}", style="bold")
        out.append(f"  #{event.seq}\n" if event.seq is not None else "\n")
        _args(out, event.args)
        failed = event.rv not in (None, 0)
        out.append(f"  -> {result_text(event)}\n", style="bold red" if failed else "bold")
        if failed:
            _hint(out, f"0x{event.rv:x}", "pkcs11")
        for note in ([f"torn: {event.torn}"] if event.torn else []) + event.problems:
            out.append(f"  ! {note}\n", style="yellow")
    elif isinstance(event, ApduExchange):
        _apdu(out, event)
    elif isinstance(event, PcscCall):
        out.append(f"  {event.function}\n", style="bold")
        _args(out, event.args)
        if event.rv is not None:
            out.append(f"  -> 0x{event.rv:08X}\n", style="bold red" if event.rv else "bold")
            if event.rv:
                _hint(out, f"0x{event.rv:08X}", "pcsc")
    elif isinstance(event, DebugLine):
        where = f"{event.file}:{event.src_line}" if event.file else ""
        out.append(f"  [{event.module}] {where} {event.function or ''}\n", style="bold")
        out.append(f"  {event.message.strip()}\n")
        if event.error is not None:
            out.append(f"  error {event.error}", style="red")
            out.append(" (the failure began here)\n" if event.origin else "\n")
            _hint(out, str(event.error), "opensc")
    elif isinstance(event, ProcessStart):
        out.append(f"  process {event.process} ({event.tool}) loaded {event.module or '?'}\n")
        for e in event.errors:
            out.append(f"  ! {e}\n", style="yellow")
    elif isinstance(event, Unparsed):
        out.append(f"  not parsed: {event.reason}\n", style="yellow")


def monochrome(text: Text) -> Text:
    """The same text with colours dropped, bold and dim kept (NO_COLOR): red on a
    grey scale would come out dimmer than the rest, so it becomes bold."""
    def plain(style: str | Style) -> Style:
        style = Style.parse(style) if isinstance(style, str) else style
        red = style.color is not None and style.color.name == "red"
        return Style(bold=bool(style.bold) or red, dim=style.dim)

    text.spans = [span._replace(style=plain(span.style)) for span in text.spans]
    return text


def _linked(out: Text, events: list[Event], where: str) -> None:
    """The debug log's APDUs and failures a call caused, with their line numbers."""
    out.append(f"{len(events)} linked from {where}\n", style="bold")
    width = len(str(max(e.line for e in events)))
    for e in events[:RAW_SHOWN]:
        text = (f"APDU {format_apdu(e)}" if isinstance(e, ApduExchange)
                else format_debug(e) if isinstance(e, DebugLine) else e.kind)
        failed = (isinstance(e, ApduExchange) and e.sw is not None
                  and not iso7816.status_word(e.sw).ok) or isinstance(e, DebugLine)
        out.append(f"{e.line:>{width}} ", style="dim")
        out.append(text + "\n", style="red" if failed else "")
    if len(events) > RAW_SHOWN:
        out.append(f"… {len(events) - RAW_SHOWN} more\n", style="dim")


def render(event: Event, file: str | None = None, linked: list[Event] | None = None,
           linked_from: str = "", during: Pkcs11Call | None = None) -> Text:
    """Everything pkspy knows about one event, then its raw lines. ``linked``: the
    APDUs and failures of another trace (``linked_from``) this call caused;
    ``during``: the call of another trace this event happened in."""
    out = Text(no_wrap=False)
    where = f"{file}:" if file else "line "
    span = f"{event.line}" + (f"-{event.end_line}" if event.end_line != event.line else "")
    head = [f"{where}{span}", KINDS.get(event.kind, event.kind)]
    if event.process is not None:
        head.append(f"process {event.process}")
    if event.pid is not None:
        head.append(f"pid {event.pid}" + (f" thread {event.tid}" if event.tid else ""))
    if event.time:
        head.append(event.time)
    out.append("  ".join(head) + "\n", style="dim")
    _body(out, event)
    if during is not None:
        out.append(f"  during {linked_from} line {during.line}: #{during.seq} "
                   f"{during.function} -> {result_text(during)}\n", style="bold")
    if linked:
        _linked(out, linked, linked_from)
    numbers = event.source_lines() if hasattr(event, "source_lines") else list(
        range(event.line, event.line + len(event.raw)))
    if event.raw:
        out.append("raw (redacted)\n", style="bold dim")
    width = len(str(max(numbers, default=0)))
    for n, line in list(zip(numbers, event.raw, strict=False))[:RAW_SHOWN]:
        out.append(f"{n:>{width}} ", style="dim")
        out.append(line + "\n")
    if len(event.raw) > RAW_SHOWN:
        out.append(f"… {len(event.raw) - RAW_SHOWN} more lines\n", style="dim")
    out.rstrip()
    return out
