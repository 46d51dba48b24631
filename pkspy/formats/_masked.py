"""Bytes that a redacted copy overwrote with ``**``, read back by every parser.

``pkspy redact`` writes each secret byte of a dump as ``**`` (and its ASCII
as ``*``), so its copy keeps the layout. When pkspy reads such a copy, the
bytes before the first mask are real and the rest is only a length: secrets
come at the end of what they are in (a PIN after the APDU header).
"""

from __future__ import annotations

from pkspy.model import Redacted

MASKED_PAIR = "**"


class MaskedBytes(bytes):
    """The readable prefix of a value, with the number of masked bytes that followed."""

    masked: int = 0


def from_pairs(pairs: list[str]) -> bytes:
    """Bytes from hex pairs, where ``**`` pairs stand for redacted ones."""
    if MASKED_PAIR not in pairs:
        return bytes.fromhex("".join(pairs))
    first = pairs.index(MASKED_PAIR)
    value = MaskedBytes(bytes.fromhex("".join(pairs[:first])))
    value.masked = len(pairs) - first
    return value


def redacted(value: bytes, what: str = "secret") -> Redacted | None:
    """The marker for a value read from a redacted copy, or None for real bytes."""
    masked = getattr(value, "masked", 0)
    return Redacted(f"{what} (already redacted)", len(value) + masked) if masked else None
