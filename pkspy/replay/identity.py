"""What a trace says about each recorded object, to find the same object on another token.

A lookup that matches several objects is answered in the token's own order, so
a recorded handle is matched to the live object with the class, key type,
certificate type, id and label the trace showed for it: in a C_GetAttributeValue
answer, or in the template that created or generated it. Values are kept as
the bytes the live module returns (CK_ULONGs in this platform's size and byte
order, CK_BBOOL one byte).
"""

from __future__ import annotations

import ctypes
import sys

from decoders import pkcs11 as names
from pkspy.replay import plan as planning

# Attributes that tell objects apart, as the trace shows them; room to read them back.
IDENTIFYING = ("CKA_CLASS", "CKA_KEY_TYPE", "CKA_CERTIFICATE_TYPE", "CKA_ID", "CKA_LABEL")
IDENTIFY_ROOM = 256
ULONG_SIZE = ctypes.sizeof(ctypes.c_ulong)  # CK_ULONG of the live module's platform


def _raw(attr) -> bytes | None:
    """An attribute value as the bytes the live module returns."""
    if isinstance(attr.value, bool):
        return bytes([attr.value])
    if isinstance(attr.value, str):
        n = names.value(attr.value)
        return n.to_bytes(ULONG_SIZE, sys.byteorder) if n is not None else None
    return attr.value if isinstance(attr.value, bytes) and attr.value else None


def identities(steps: list[planning.Step]) -> dict[int, dict[int, bytes]]:
    """What the trace says about each recorded object: attribute type -> value."""
    out: dict[int, dict[int, bytes]] = {}
    for step in steps:
        c = step.call
        if c.rv != 0:
            continue
        pairs = []
        if c.function == "C_GetAttributeValue":
            pairs = [("hObject", c.arg("pTemplate", "out"))]
        elif c.function == "C_CreateObject":
            pairs = [("*phObject", c.arg("pTemplate"))]
        elif c.function == "C_GenerateKeyPair":
            pairs = [("hPublicKey", c.arg("pPublicKeyTemplate")),
                     ("hPrivateKey", c.arg("pPrivateKeyTemplate"))]
        for handle_name, tmpl in pairs:
            h = c.arg(handle_name)
            if h is None or not isinstance(h.value, int) or tmpl is None:
                continue
            for a in tmpl.value or []:
                raw = _raw(a) if a.name in IDENTIFYING and a.type is not None else None
                if raw is not None:
                    out.setdefault(h.value, {})[a.type] = raw
    return out
