"""APDUs pasted as hex, one a line: what people put in bug reports and chats.

No program prints exactly this; it is what is left once a trace was copied
and cut down::

    > 00 A4 04 00 07 A0 00 00 00 03 10 10     # SELECT (a comment)
    < 6A 82
    C: 00200081083132333435363738
    R: 63C2

A line is a command or a response by its prefix: ``>``, ``=>``, ``->``,
``C:``, ``Send:`` for commands; ``<``, ``<=``, ``<-``, ``R:``, ``Recv:`` for
responses (letters in any case). Lines with no prefix alternate: a command,
then its response. Bytes are written with spaces, colons or nothing between
them; the response is data and status word together. After the bytes, a
comment may follow (``#``, ``//``, ``;``, ``--``, or any word that is not hex).

A command is emitted when its response comes; a command followed by another
command, or by the end of the text, is emitted incomplete. A line that holds
an odd number of hex digits cannot be read as bytes: it is kept as Unparsed and
still takes its place, so that the next line is not paired with the wrong
command. With no prefix, a line of fewer than four bytes cannot be a command
and is read as a response. Full-line comments are DebugLine events.

Detection (``formats.detect``) runs last: a first line with a prefix and at
least two bytes, or a head in which every non-empty line is a bare hex line
(at least two of them) or a comment.
"""

from __future__ import annotations

import re

from decoders import iso7816
from pkspy.formats._colour import uncoloured
from pkspy.model import ApduExchange, DebugLine, Event, Unparsed

PREFIX = re.compile(r"^\s*(?P<prefix>=>|<=|->|<-|>|<|[CcRr]:|[Ss][Ee][Nn][Dd]:|"
                    r"[Rr][Ee][Cc][Vv]:)\s*")
COMMAND_PREFIXES = frozenset({"=>", "->", ">", "c:", "send:"})
COMMENT_ONLY = re.compile(r"^\s*(?:#|//|;|--)")
COMMENT_MARK = re.compile(r"^(?:#|//|;|--)")
TOKEN_HEX = re.compile(r"^[0-9A-Fa-f]+(?::[0-9A-Fa-f]+)*:?$")
PAIRS = re.compile(r"^[0-9A-Fa-f]{2}(?::?[0-9A-Fa-f]{2})*:?$")
SEPARATED = re.compile(r"^[0-9A-Fa-f]{2}(?:[ :][0-9A-Fa-f]{2})*[ :]?$")

# Detection: a first line with a prefix, or bare hex lines only.
SIGN = re.compile(r"^\s*(?:=>|<=|->|<-|>|<|[CcRr]:|[Ss]end:|[Rr]ecv:)\s*"
                  r"[0-9A-Fa-f]{2}(?:[ :]?[0-9A-Fa-f]{2})+\s*(?:(?:#|//|;|--).*)?$")
PLAIN = re.compile(r"^\s*[0-9A-Fa-f]{2}(?:[ :]?[0-9A-Fa-f]{2})+\s*(?:(?:#|//|;|--).*)?$")


def plain_kind(text: str) -> str | None:
    """For detection: "hex" for a bare hex line, "comment" for a comment line, else None."""
    if PLAIN.match(text):
        return "hex"
    if COMMENT_ONLY.match(text):
        return "comment"
    return None


def read_bytes(body: str) -> tuple[bytes | None, str, str | None]:
    """(bytes, comment, problem) of what follows the prefix.

    The bytes are the leading tokens made of hex digits (and colons); the first
    token with anything else starts the comment. A hex token of odd length makes
    the line unreadable: (None, comment, problem).
    """
    tokens = body.split()
    digits: list[str] = []
    problem = None
    for token in tokens:
        if COMMENT_MARK.match(token) or not TOKEN_HEX.match(token):
            break
        if not PAIRS.match(token):
            problem = f"odd number of hex digits in {token!r}"
        digits.append(token.replace(":", ""))
    comment = " ".join(tokens[len(digits):])
    text = "".join(digits)
    if problem is None and len(text) % 2:
        problem = "odd number of hex digits"
    if problem is not None:
        return None, comment, problem
    return bytes.fromhex(text), comment, None


class HexApduParser:
    format = "hex-apdu"

    def __init__(self) -> None:
        self._open: ApduExchange | None = None  # a command waiting for its response
        self._lost_command = False  # the last command line could not be read

    def feed(self, text: str, lineno: int, offset: int) -> list[Event]:
        out: list[Event] = []
        clean = uncoloured(text)
        if not clean.strip():
            return out
        common = dict(line=lineno, end_line=lineno, offset=offset, raw=[text], process=0)
        if COMMENT_ONLY.match(clean):
            out.append(DebugLine(module="hex", what="message", message=clean.strip(), **common))
            return out
        p = PREFIX.match(clean)
        body = clean[p.end():] if p else clean
        data, comment, problem = read_bytes(body)
        if p:
            role = "command" if p["prefix"].lower() in COMMAND_PREFIXES else "response"
        elif data is not None and len(data) < 4:
            role = "response"  # too short for a command
        else:
            role = "response" if self._open is not None or self._lost_command else "command"
        if data is None or not data:
            reason = problem or "no hex bytes"
            if data is not None and not p:
                out.append(Unparsed(reason="not a hex APDU line", **common))
                return out
            if role == "command":
                out += self._close_open("another command followed")
                self._lost_command = True
            else:
                out += self._close_open("its response line could not be read")
                self._lost_command = False
            out.append(Unparsed(reason=f"{role} line: {reason}", **common))
            return out
        if role == "command":
            out += self._close_open("another command followed")
            self._lost_command = False
            apdu = ApduExchange(command=data, command_row_bytes=0, **common)
            # The redactor masks the bytes of the line in place, except after a comment (it
            # would take it for an ASCII column) or where no separator tells bytes apart.
            if not comment and (p or SEPARATED.match(body.strip())):
                apdu.command_span = (0, 0)
            if comment:
                apdu.header = comment
            apdu.secret = iso7816.pin_apdu(data)
            if len(data) < 4:
                apdu.header = f"{apdu.header or ''} [shorter than a command header]".strip()
            self._open = apdu
            return out
        # a response
        if self._open is None:
            note = ("[its command line could not be read]" if self._lost_command
                    else "[a response with no command]")
            self._lost_command = False
            out.append(ApduExchange(command=b"", response=data, sw=_sw(data),
                                    header=f"{comment} {note}".strip(), **common))
            return out
        apdu, self._open = self._open, None
        apdu.raw.append(text)
        if lineno != apdu.line + 1:  # comments or blank lines came between
            apdu.raw_lines = [apdu.line, lineno]
        apdu.end_line = lineno
        apdu.response = data
        apdu.sw = _sw(data)
        if comment:
            apdu.header = f"{apdu.header} / {comment}" if apdu.header else comment
        out.append(apdu)
        return out

    def close(self) -> list[Event]:
        return self._close_open("the text ended")

    def _close_open(self, why: str) -> list[Event]:
        if self._open is None:
            return []
        apdu, self._open = self._open, None
        apdu.incomplete = True
        note = f"[no response: {why}]"
        apdu.header = f"{apdu.header} {note}" if apdu.header else note
        return [apdu]


def _sw(response: bytes) -> int | None:
    return int.from_bytes(response[-2:], "big") if len(response) >= 2 else None
