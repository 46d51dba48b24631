"""``pkspy card replay``: a trace's command APDUs sent again to a card, responses compared.

Any trace that holds APDU exchanges will do (pcsc-spy, ``pcscd -a``, OpenSC's
debug log, pkspy's hex APDU text). The commands go out in the recorded order
through pyscard; every exchange is recorded by ``capture.pcsc.Recorder``, so
both sides of the table are redacted events and the replay leaves its own
redacted hex APDU trace.

Never guessed: a command whose data is a redacted secret is rebuilt only for
a plain PIN (VERIFY) of the recorded length, from ``--pin-env``; a VERIFY the
user got wrong is not sent (it would spend a try); PUKs and new PINs are not
sent. Commands that write to the card are refused unless changes are allowed.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

from decoders import iso7816
from pkspy.model import ApduExchange, Redacted

# Instructions that change what the card holds (ISO 7816-4/-8/-9, GlobalPlatform, PIV).
WRITES = {0x0E: "ERASE BINARY", 0x0F: "ERASE BINARY", 0xD0: "WRITE BINARY",
          0xD1: "WRITE BINARY", 0xD2: "WRITE RECORD", 0xD6: "UPDATE BINARY",
          0xD7: "UPDATE BINARY", 0xDC: "UPDATE RECORD", 0xDD: "UPDATE RECORD",
          0xE2: "APPEND RECORD", 0xDA: "PUT DATA", 0xDB: "PUT DATA", 0xE0: "CREATE FILE",
          0xE4: "DELETE FILE", 0xE6: "TERMINATE DF", 0xE8: "TERMINATE EF",
          0x44: "ACTIVATE FILE", 0x04: "DEACTIVATE FILE", 0x46: "GENERATE KEY PAIR",
          0x47: "GENERATE ASYMMETRIC KEY PAIR", 0xD8: "PUT KEY", 0xFE: "TERMINATE CARD USAGE"}
# Answers chance makes differ (a challenge, a signature, a cryptogram): length only.
RANDOM_INS = {0x84: "GET CHALLENGE", 0x87: "GENERAL AUTHENTICATE",
              0x88: "INTERNAL AUTHENTICATE", 0x2A: "PERFORM SECURITY OPERATION"}

# A PIN refused as wrong (63CX) or blocked: sending it again would cost or find nothing.
PIN_BLOCKED = {0x6983, 0x6984}

SAME, DIFFERS, SKIPPED, SENT = "same", "differs", "skipped", "sent"


class CardReplayError(Exception):
    """Stops a card replay before it starts: a one-line message."""


@dataclass
class CardStep:
    recorded: ApduExchange
    command: bytes | None = None  # what to send; None: not sent
    reason: str | None = None  # why not sent
    change: str | None = None
    live: ApduExchange | None = None
    verdict: str = SKIPPED
    why: str | None = None  # why it differs


def _name(cmd: bytes) -> str:
    if len(cmd) < 4:
        return "short command"
    return iso7816.ins_name(cmd[1], cmd[0], None, cmd[2], cmd[3])


def plan(exchanges: list[ApduExchange], pin: str | None, allow_changes: bool) -> list[CardStep]:
    steps = []
    for ex in exchanges:
        step = CardStep(recorded=ex)
        steps.append(step)
        cmd = ex.command
        if not cmd or len(cmd) < 4:
            step.reason = "no command in the trace (a response without its command)"
            continue
        if cmd[1] in WRITES:
            step.change = WRITES[cmd[1]]
        if isinstance(ex.command_data, Redacted):
            kind = ex.secret or ex.command_data.what
            length = ex.command_data.length
            if kind != "PIN":
                step.reason = f"carries the {kind}, redacted in the trace"
                continue
            if ex.sw is not None and (iso7816.status_word(ex.sw).tries_left is not None
                                      or ex.sw in PIN_BLOCKED):
                step.reason = (f"the recorded PIN was refused ({iso7816.sw_text(ex.sw)}): "
                               "pkspy does not send a wrong PIN")
                continue
            if pin is None:
                step.reason = "carries the PIN: give --pin-env VAR"
                continue
            if len(pin.encode()) != length:
                step.reason = (f"the recorded PIN field is {length} bytes, the PIN given is "
                               f"{len(pin.encode())}: padding is not guessed")
                continue
            head = cmd[:ex.command_header_len]
            if len(head) == 4:
                head += bytes([length])
            step.command = head + pin.encode()
        else:
            step.command = cmd
        if step.change and not allow_changes:
            step.reason = f"{step.change} writes to the card: refused without --allow-changes"
            step.command = None
    return steps


def _sw(sw: int | None) -> str:
    return iso7816.sw_text(sw) if sw is not None else "no status word"


def _data(ex: ApduExchange | None) -> bytes | None:
    if ex is None or ex.response is None:
        return None
    return ex.response[:-2] if len(ex.response) >= 2 else b""


def compare(step: CardStep) -> None:
    rec, live = step.recorded, step.live
    if live is None:
        return
    step.verdict = SAME
    if rec.response is None:
        step.verdict, step.why = SENT, None  # nothing recorded to compare with
        return
    if rec.sw != live.sw:
        step.verdict = DIFFERS
        step.why = f"{_sw(rec.sw)} was recorded, the card answered {_sw(live.sw)}"
        return
    a, b = _data(rec), _data(live)
    if a is None or b is None:
        return
    if len(a) != len(b):
        step.verdict, step.why = DIFFERS, f"{len(b)} data bytes where {len(a)} were recorded"
    elif a != b and step.command and step.command[1] not in RANDOM_INS:
        at = next(i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y)
        step.verdict, step.why = DIFFERS, f"the data differs from byte {at} on"


def run(trace: str, reader: str | None, pin_env: str | None, allow_changes: bool,
        dry_run: bool, output: str | None) -> tuple[list[CardStep], str | None]:
    """Plan (and unless ``dry_run``, send) the trace's APDUs; the steps and the live reader."""
    from pkspy.pipeline import open_events

    _fmt, events = open_events(trace)
    exchanges = [e for e in events if isinstance(e, ApduExchange)]
    if not exchanges:
        raise CardReplayError(f"{trace}: no APDU exchange in the trace")
    pin = None
    if pin_env:
        if pin_env not in os.environ:
            raise CardReplayError(f"{pin_env} is not set (--pin-env)")
        pin = os.environ[pin_env]
    steps = plan(exchanges, pin, allow_changes)
    if dry_run:
        return steps, None
    from pkspy.capture import pcsc

    try:
        card_reader = pcsc.pick_reader(reader)
        connection = card_reader.createConnection()
        connection.connect()
    except pcsc.CardError as e:
        raise CardReplayError(str(e)) from None
    except Exception as e:  # pyscard's own errors: no card, reader gone
        raise CardReplayError(f"{reader or 'reader'}: {str(e).splitlines()[0] if str(e) else e!r}"
                              ) from None
    rec = pcsc.Recorder(connection, output)
    try:
        rec.comment(f"pkspy card replay of {os.path.basename(trace)}; reader {card_reader}, "
                    f"ATR {bytes(connection.getATR()).hex(' ').upper()}")
        for step in steps:
            if step.command is None:
                continue
            before = len(rec.exchanges)
            try:
                connection.transmit(list(step.command))
            except Exception as e:  # the card or reader went away: say where, stop
                step.reason = f"transmit failed: {str(e).splitlines()[0] if str(e) else e!r}"
                break
            if len(rec.exchanges) > before:
                step.live = rec.exchanges[-1]
                compare(step)
    finally:
        rec.close()
        with contextlib.suppress(Exception):
            connection.disconnect()
    return steps, str(card_reader)


# -- the table ------------------------------------------------------------------------------

def _command_text(ex: ApduExchange) -> str:
    cmd = ex.command or b""
    text = f"{_name(cmd)} {cmd[:4].hex(' ').upper()}"
    if isinstance(ex.command_data, Redacted):
        return f"{text} {ex.command_data}"
    return text + (f" +{len(cmd) - 4}" if len(cmd) > 4 else "")


def _answer(ex: ApduExchange | None) -> str:
    if ex is None:
        return ""
    if ex.response is None:
        return "(no response)"
    data = _data(ex) or b""
    return _sw(ex.sw) + (f" data[{len(data)}]" if data else "")


def first_divergence(steps: list[CardStep]) -> CardStep | None:
    return next((s for s in steps if s.verdict == DIFFERS), None)


def render_plan(steps: list[CardStep], trace: str) -> str:
    out = [f"Card replay plan for {trace}: {len(steps)} exchange(s)."]
    for n, step in enumerate(steps, 1):
        what = "send" if step.command is not None else "skip"
        line = f"  {what} {n}. {_command_text(step.recorded)} -> {_answer(step.recorded)}"
        out.append(line + (f"  — {step.reason}" if step.reason else ""))
    return "\n".join(out)


def render(steps: list[CardStep], trace: str, reader: str | None, output: str | None,
           all_rows: bool = False) -> str:
    if reader is None:
        return render_plan(steps, trace)
    first = first_divergence(steps)
    out = [f"  {'recorded command':<44} {'recorded':<32} | replayed", "  " + "-" * 90]
    for n, step in enumerate(steps, 1):
        mark = ">" if step is first else {SAME: "=", DIFFERS: "≠", SENT: "+"}.get(step.verdict,
                                                                               "-")
        cmd = f"{n}. {_command_text(step.recorded)}"
        right = _answer(step.live) if step.live is not None else \
            f"(skipped: {step.reason or 'not sent'})"
        out.append(f"{mark} {cmd[:44]:<44} {_answer(step.recorded)[:32]:<32} | {right}")
        if step.verdict == DIFFERS:
            out.append(f"  {'':<44} {'':<32}   ≠ {step.why}")
        if step is first and not all_rows:
            out.append(f"  ... {len(steps) - n} more exchange(s) after the first divergence "
                       "(--all shows them)")
            break
    sent = sum(1 for s in steps if s.live is not None)
    skipped = [(n, s) for n, s in enumerate(steps, 1) if s.live is None]
    out.append("")
    if reader:
        out.append(f"Sent {sent} of {len(steps)} command(s) to {reader}.")
    if first is None:
        out.append("No divergence: every status word and response matched the recording.")
    else:
        n = steps.index(first) + 1
        out.append(f"First divergence: exchange {n}, {_name(first.recorded.command)} (line "
                   f"{first.recorded.line} of {trace}): {first.why}.")
    if skipped:
        out.append(f"{len(skipped)} command(s) not sent:")
        out += [f"  {n}. {_name(s.recorded.command or b'')}: {s.reason}" for n, s in skipped]
    if output and reader:
        out.append(f"Replay exchanges (redacted): {output}")
    return "\n".join(out)


def confirm_changes(trace: str, err) -> bool:
    """Ask on the terminal before commands that write to the card are sent."""
    import sys

    from pkspy.pipeline import open_events

    writes = [e for e in open_events(trace)[1] if isinstance(e, ApduExchange)
              and len(e.command or b"") >= 4 and e.command[1] in WRITES]
    if not writes:
        return True
    if not sys.stdin.isatty():
        return False
    err.write(f"pkspy: this replay sends {len(writes)} command(s) that write to the card:\n")
    for e in writes:
        err.write(f"  line {e.line}: {_command_text(e)}\n")
    err.write("Go on? [y/N] ")
    err.flush()
    return sys.stdin.readline().strip().lower() in ("y", "yes")
