"""Cards through pyscard: list readers and cards, send APDUs, record a connection.

Every exchange becomes an ``ApduExchange`` event and goes through the
redactor before it is shown or written, so the data of a VERIFY (and of every
other command ``decoders.iso7816.pin_apdu`` knows carries a secret) is masked
in both. The record is pkspy's hex APDU text (format ``hex-apdu``): ``>``
a command, ``<`` its response, ``#`` comments; the redactor masks a
command's data bytes in place with ``**``::

    # reader Virtual PCD 00 00, ATR 3B 95 13 81 01 80 73 FF 01 00 0B
    > 00 A4 00 0C 02 3F 00
    < 90 00
    > 00 20 00 81 06 ** ** ** ** ** **
    < 63 C2

For a Python program::

    from smartcard.System import readers
    from pkspy.capture.pcsc import Recorder

    connection = readers()[0].createConnection()
    with Recorder(connection, "exchanges.txt") as rec:   # file mode 0600
        connection.connect()
        connection.transmit([0x00, 0xA4, 0x00, 0x0C, 0x02, 0x3F, 0x00])
    rec.exchanges      # the redacted ApduExchange events
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Callable

from decoders import atr as atr_decoder
from decoders import iso7816
from pkspy.capture.streams import open_private
from pkspy.model import ApduExchange
from pkspy.redact import Redactor


class CardError(Exception):
    """No reader, no card, a bad APDU: a one-line message for the user."""


def parse_apdu(text: str) -> bytes:
    """Hex with or without spaces or colons: ``00A4000C023F00``, ``00 a4 00 0c``."""
    digits = re.sub(r"[\s:]", "", text)
    if not digits or len(digits) % 2 or not re.fullmatch(r"[0-9A-Fa-f]+", digits):
        raise CardError(f"not an APDU in hex: {text!r}")
    data = bytes.fromhex(digits)
    if len(data) < 4:
        raise CardError(f"an APDU has at least 4 bytes (CLA INS P1 P2): {text!r}")
    return data


def script_apdus(text: str) -> list[bytes]:
    """A script: one APDU a line; ``#`` starts a comment; blank lines are skipped."""
    out = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            out.append(parse_apdu(line))
    return out


class Recorder:
    """A pyscard CardConnection observer that records every exchange, redacted.

    ``path``: where to write the hex record (mode 0600); ``on_exchange``: called
    with each redacted ApduExchange. ``close()`` (or leaving the ``with``) stops
    observing and closes the file.
    """

    def __init__(self, connection, path: str | None = None,
                 on_exchange: Callable[[ApduExchange], None] | None = None,
                 redactor: Redactor | None = None) -> None:
        from smartcard.CardConnectionObserver import CardConnectionObserver

        recorder = self

        class _Observer(CardConnectionObserver):
            def update(self, cardconnection, ccevent) -> None:
                recorder._update(ccevent)

        self.connection = connection
        self.redact = redactor or Redactor()
        self.on_exchange = on_exchange
        self.exchanges: list[ApduExchange] = []
        self.out = open_private(path) if path else None
        self.line = 0
        self._command: tuple[bytes, float] | None = None
        self._reader = str(getattr(connection, "getReader", lambda: None)() or "")
        self._observer = _Observer()
        connection.addObserver(self._observer)

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def comment(self, text: str) -> None:
        """A ``#`` line in the record (what reader, what card)."""
        if self.out is not None:
            self.out.write(f"# {text}\n")
            self.out.flush()
        self.line += 1

    def _update(self, ccevent) -> None:
        if ccevent.type == "command":
            self._command = (bytes(ccevent.args[0]), time.monotonic())
        elif ccevent.type == "response" and self._command is not None:
            data, sw1, sw2 = ccevent.args[0], ccevent.args[-2], ccevent.args[-1]
            command, start = self._command
            self._command = None
            self.record(command, bytes(data) + bytes([sw1, sw2]), time.monotonic() - start)

    def record(self, command: bytes, response: bytes | None,
               duration: float | None = None) -> ApduExchange:
        """Record one exchange (the observer calls this; so can a program)."""
        lines = [command.hex(" ").upper()]
        if response is not None:
            lines.append(response.hex(" ").upper() if response else "")
        event = ApduExchange(line=self.line + 1, end_line=self.line + len(lines), offset=0,
                             raw=lines, command=command, response=response,
                             sw=int.from_bytes(response[-2:], "big")
                             if response and len(response) >= 2 else None,
                             reader=self._reader or None, command_span=(0, 0),
                             command_row_bytes=0, function="SCardTransmit",
                             duration=round(duration, 6) if duration is not None else None,
                             secret=iso7816.pin_apdu(command))
        event = self.redact(event)
        self.line += len(lines)
        if self.out is not None:
            # "> " and "< " go on after redaction: the redactor masks bytes in rows that
            # start with them, and pkspy recognises the prefixed form by its first line
            marks = ("> ", "< ")
            self.out.write("".join(f"{m}{x}\n" for m, x in zip(marks, event.raw, strict=False)))
            self.out.flush()
        self.exchanges.append(event)
        if self.on_exchange is not None:
            self.on_exchange(event)
        return event

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.connection.deleteObserver(self._observer)
        if self.out is not None:
            self.out.close()
            self.out = None


# -- pkspy card list / send -----------------------------------------------------------------


def _readers():
    try:
        from smartcard.System import readers
        return readers()
    except Exception as e:  # no pcscd, no libpcsclite: pyscard raises its own types
        raise CardError(f"cannot list PC/SC readers: {e}") from None


def card_list() -> list[dict]:
    """Every reader, and the card in it: ATR, its decoding and the card's names."""
    out = []
    for reader in _readers():
        item: dict = {"reader": str(reader), "atr": None}
        connection = reader.createConnection()
        try:
            connection.connect()
            raw = bytes(connection.getATR())
            item.update(atr=raw.hex(" ").upper(), decoded=atr_decoder.describe(raw),
                        names=atr_decoder.card_names(raw))
        except Exception as e:  # no card, card mute, reader busy
            item["error"] = str(e).splitlines()[0] if str(e) else type(e).__name__
        finally:
            with contextlib.suppress(Exception):
                connection.disconnect()
        out.append(item)
    return out


def render_list(items: list[dict]) -> str:
    if not items:
        return "no PC/SC reader"
    lines = []
    for i, item in enumerate(items):
        lines.append(f"{i}: {item['reader']}")
        if item["atr"] is None:
            lines.append(f"   no card ({item.get('error', 'absent')})")
            continue
        lines.append(f"   ATR {item['atr']}")
        lines.append(f"       {item['decoded']}")
        for name in item["names"] or ["(not in smartcard_list.txt)"]:
            lines.append(f"       {name}")
    return "\n".join(lines)


def pick_reader(name: str | None):
    """A reader by index, by exact name or by a part of its name; else the first one with
    a card."""
    readers = _readers()
    if not readers:
        raise CardError("no PC/SC reader")
    if name is not None:
        if name.isdigit() and int(name) < len(readers):
            return readers[int(name)]
        exact = [r for r in readers if str(r) == name]
        partial = [r for r in readers if name.lower() in str(r).lower()]
        found = exact or partial
        if len(found) != 1:
            raise CardError(f"{len(found)} readers match {name!r}: "
                            + ", ".join(map(str, readers)))
        return found[0]
    for reader in readers:
        connection = reader.createConnection()
        try:
            connection.connect()
            return reader
        except Exception:
            continue
        finally:
            with contextlib.suppress(Exception):
                connection.disconnect()
    raise CardError("no card in any reader: " + ", ".join(map(str, readers)))


def send(apdus: list[bytes], reader_name: str | None, path: str | None,
         show: Callable[[ApduExchange], None]) -> list[ApduExchange]:
    """Send APDUs to a card; every exchange redacted, shown and recorded."""
    reader = pick_reader(reader_name)
    connection = reader.createConnection()
    try:
        connection.connect()
    except Exception as e:
        raise CardError(f"{reader}: {str(e).splitlines()[0] if str(e) else e!r}") from None
    rec = Recorder(connection, path, on_exchange=show)
    try:
        atr = bytes(connection.getATR()).hex(" ").upper()
        rec.comment(f"reader {reader}, ATR {atr}")
        for apdu in apdus:
            try:
                connection.transmit(list(apdu))
            except Exception as e:
                raise CardError(f"transmit failed: {e}") from None
    finally:
        rec.close()
        with contextlib.suppress(Exception):
            connection.disconnect()
    return rec.exchanges
