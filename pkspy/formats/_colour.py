"""Colour codes (SGR escapes) that OpenSC, pcsc-spy and pcscd print to a terminal,
and that stay in traces saved with ``script`` or pasted from one."""

from __future__ import annotations

import re

SGR = re.compile(r"\x1b\[[0-9;]*m")


def uncoloured(text: str) -> str:
    """The line without its colour codes; most lines have none, so no regex runs."""
    return SGR.sub("", text) if "\x1b" in text else text
