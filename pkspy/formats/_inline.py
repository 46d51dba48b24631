"""What the one-line-per-value tracers (p11-kit ``log-calls``, pkcs11-logger)
share: values printed inside a line, call numbering and secret marking.

pkcs11-spy dumps a buffer on lines of its own, which the redactor masks
whole. p11-kit prints ``  IN: pPin = (4) "1234"`` and pkcs11-logger
``   *pValue: HEX(31323334)``: the value is part of a line that says more, so
the parser records where it was printed (``PrintedBytes.at``) and the
redactor masks those columns only.
"""

from __future__ import annotations

from decoders import pkcs11
from pkspy.formats.spy import SECRET_BUFFERS, _check_lengths, _learn_classes, _mark_secrets
from pkspy.model import Arg, Attribute, Pkcs11Call, Redacted

__all__ = ["SECRET_BUFFERS", "PrintedBytes", "already_redacted", "extend", "finish_call",
           "printed", "typed_value"]


class PrintedBytes(bytes):
    """Bytes and where they were printed: (index in the event's raw, first column, end)."""

    at: tuple[int, int, int] | None = None


def printed(data: bytes, index: int, start: int, end: int) -> PrintedBytes:
    value = PrintedBytes(data)
    value.at = (index, start, end)
    return value


def typed_value(attr: Attribute, data: bytes, idx: int, start: int, end: int) -> object:
    """An attribute value as the spy shows it: booleans and enums (class, key type...)
    by value, everything else as the bytes printed at raw[idx][start:end]."""
    kind = pkcs11.ATTRIBUTE_KINDS.get(attr.type if attr.type is not None else -1)
    if kind == "bool" and len(data) == 1:
        return data != b"\0"
    if kind in pkcs11.ENUM_KINDS and len(data) in (4, 8):
        group, context = pkcs11.ENUM_KINDS[kind]
        return pkcs11.name(group, pkcs11.ulong_from_le(data), context)
    return printed(data, idx, start, end)


def already_redacted(text: str, length: int | None, what: str = "secret") -> Redacted | None:
    """The marker for a value a redacted copy (``pkspy redact``) overwrote with ``*``."""
    if text and not text.strip("*"):
        return Redacted(f"{what} (already redacted)", length)
    return None


def finish_call(call: Pkcs11Call, classes: dict[int, int],
                secrets: dict[tuple[str, str], str], check_lengths: bool = True) -> None:
    """Mark secrets as the spy parser does: buffers by (function, argument), and
    each template's object class for the redactor's attribute allow-list.
    ``check_lengths``: say so when a value is shorter than its declared length
    (not for tracers that cut long values on purpose)."""
    for arg in call.args:
        what = secrets.get((call.function or "", arg.name))
        if what and arg.kind == "buffer":
            arg.secret = what
    try:
        if check_lengths:
            _check_lengths(call)
        if not call.torn:
            _learn_classes(call, classes)
        _mark_secrets(call, classes)
    except (ValueError, TypeError, AttributeError, KeyError) as e:
        # a value of a shape these checks do not expect: the call is kept, and says so
        call.problems.append(f"checks not done: {type(e).__name__}: {e}")


def extend(item: Arg | Attribute, idx: int) -> None:
    start = item.span[0] if item.span else idx
    item.span = (start, max(idx, item.span[1] if item.span else idx))
