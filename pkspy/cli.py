"""Command line: options in, one call out. No parsing or formatting lives here."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading

import click

from decoders import NAMESPACES
from pkspy import __version__, errors, formats
from pkspy.pipeline import is_fifo
from pkspy.report import EXPORT_FORMATS, redacted_copy
from pkspy.sources import SourceError

# Each command imports the front end it runs: `pkspy view` starts without the
# explain tables, the exporters or the parallel summary.

FORMAT = click.Choice(formats.names())


def _colour_wanted() -> bool:
    """Colour only on a terminal, and never when NO_COLOR is set (no-color.org)."""
    return sys.stdout.isatty() and not os.environ.get("NO_COLOR")


def _fail(message: str | SourceError, code: int = errors.USAGE) -> None:
    """One line on stderr and the error's exit code (pkspy/errors.py has them all)."""
    errors.fail(str(message), getattr(message, "exit_code", code))


def _stop_on_ctrl_c() -> threading.Event:
    """While following, the first Ctrl-C ends the read where it is, so a record its writer
    never finished is still shown (incomplete); a second one interrupts at once."""
    stopped = threading.Event()

    def first(_signum, _frame) -> None:
        stopped.set()
        signal.signal(signal.SIGINT, signal.default_int_handler)

    signal.signal(signal.SIGINT, first)
    return stopped


_interrupted = errors.interrupted  # `tail` has an option named errors


class _Commands(click.Group):
    """Ctrl-C, a closed pipe and an unexpected exception end any command the same way:
    one line on stderr and the exit code of pkspy/errors.py, never a traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except KeyboardInterrupt:
            errors.interrupted()
        except BrokenPipeError:
            errors.broken_pipe()
        except SourceError as e:  # a command that did not catch its own
            _fail(e)
        except Exception as e:
            errors.internal(e, debug=bool(ctx.meta.get("pkspy.debug")))


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="pkspy")
@click.option("--debug", is_flag=True, help="Show the traceback of an unexpected error.")
@click.pass_context
def main(ctx: click.Context, debug: bool) -> None:
    """Read, decode and safely share PKCS#11 and smart-card traces."""
    ctx.meta["pkspy.debug"] = debug


@main.command()
@click.argument("files", nargs=-1, required=True, type=str)
@click.option("-n", "--lines", "last", type=click.IntRange(min=0), default=None,
              help="Start with the last N calls (default: all with --no-follow, else 10).")
@click.option("--follow/--no-follow", default=True, show_default=True,
              help="Keep reading as the file grows, like tail -F.")
@click.option("--errors", is_flag=True, help="Show only failed, torn and unparsed records.")
@click.option("--format", "fmt", type=FORMAT, default=None, help="Trace format (default: detect).")
@click.option("--json", "as_json", is_flag=True, help="One JSON event per line.")
@click.option("--reveal-secrets", is_flag=True,
              help="Show PINs and key material as they are in the trace (never in exports).")
def tail(files: tuple[str, ...], last: int | None, follow: bool, errors: bool, fmt: str | None,
         as_json: bool, reveal_secrets: bool) -> None:
    """One decoded line per call of FILE ('-' for stdin); follows it by default.
    Several FILEs are merged by time, each line marked with its file."""
    if reveal_secrets:
        click.echo("pkspy: warning: --reveal-secrets: PINs and keys are shown in clear",
                   err=True)
    from pkspy.report import tail as tail_report

    follow = follow and "-" not in files
    stopped = _stop_on_ctrl_c() if follow and not all(map(is_fifo, files)) else None
    try:
        tail_report.run(list(files), last=last, follow=follow,
                        errors_only=errors,
                        fmt=fmt, as_json=as_json, out=sys.stdout, colour=_colour_wanted(),
                        reveal=reveal_secrets, stop=stopped.is_set if stopped else None)
    except SourceError as e:
        if stopped is not None and stopped.is_set():  # stopped before any line came
            _interrupted()
        _fail(e)
    if stopped is not None and stopped.is_set():
        _interrupted()


@main.command()
@click.argument("files", nargs=-1, required=True)
@click.option("-f", "--to", "to", type=click.Choice(EXPORT_FORMATS), default="md",
              show_default=True, help="Markdown, plain text, HTML page or JSON lines.")
@click.option("-o", "--output", type=str, default=None,
              help="Where to write it (default: standard output).")
@click.option("--format", "fmt", type=FORMAT, default=None, help="Trace format (default: detect).")
def export(files: tuple[str, ...], to: str, output: str | None, fmt: str | None) -> None:
    """A decoded, redacted report of FILE... to attach to a bug report."""
    from pkspy.report import export as export_report

    if output is not None and any(redacted_copy.same_file(f, output) for f in files):
        _fail(f"{output}: is an input; write the report somewhere else")
    try:
        if output is None:
            export_report.export(list(files), to, sys.stdout, fmt)
        else:
            tmp = f"{output}.pkspy-tmp"
            with open(tmp, "w", encoding="utf-8") as out:
                export_report.export(list(files), to, out, fmt)
            os.replace(tmp, output)
    except SourceError as e:
        _fail(e)
    except BrokenPipeError:
        raise  # stdout's reader went away: _Commands ends quietly
    except OSError as e:
        _fail(f"{e.filename or output}: {e.strerror}")


@main.command()
@click.argument("a", type=str)
@click.argument("b", type=str)
@click.option("--format", "fmt", type=FORMAT, default=None, help="Trace format (default: detect).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable comparison.")
def diff(a: str, b: str, fmt: str | None, as_json: bool) -> None:
    """Where trace B of a program leaves trace A of the same program (e.g. a working and a
    failing run): handles, pointers, times, pids aside. Exit 0 same, 1 differ, 2 trouble."""
    from pkspy import diff as trace_diff
    from pkspy.report import diff as diff_report

    try:
        result = trace_diff.diff(a, b, fmt)
    except SourceError as e:
        _fail(str(e), errors.USAGE)  # 2 for any trouble, as diff(1)
        return
    if as_json:
        click.echo(json.dumps(diff_report.to_json(result), indent=2, ensure_ascii=False))
    else:
        click.echo(diff_report.render(result), nl=False)
    sys.exit(0 if result.same else 1)


@main.command()
@click.argument("file", type=str)
@click.option("-o", "--output", type=str, default=None,
              help="Where to write the copy (default: standard output).")
@click.option("--format", "fmt", type=FORMAT, default=None, help="Trace format (default: detect).")
def redact(file: str, output: str | None, fmt: str | None) -> None:
    """A copy of FILE in its own format with every secret overwritten in place."""
    if output is not None and redacted_copy.same_file(file, output):
        _fail(f"{output}: is the input; write the redacted copy somewhere else")
    try:
        if output is None:
            stats = redacted_copy.write_redacted(file, sys.stdout.buffer, fmt=fmt)
        else:
            tmp = f"{output}.pkspy-tmp"
            with open(tmp, "wb") as out:
                stats = redacted_copy.write_redacted(file, out, fmt=fmt)
            os.replace(tmp, output)
    except SourceError as e:
        _fail(e)
        return
    except BrokenPipeError:
        raise  # stdout's reader went away: _Commands ends quietly
    except OSError as e:
        _fail(f"{e.filename or output}: {e.strerror}")
        return
    click.echo(f"pkspy: {stats['format']}: {stats['lines_changed']} line(s) redacted, "
               f"{stats['secrets']} distinct secret(s)", err=True)


@main.command()
@click.argument("file", type=str)
@click.option("--format", "fmt", type=FORMAT, default=None, help="Trace format (default: detect).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable summary.")
def summary(file: str, fmt: str | None, as_json: bool) -> None:
    """What happened in FILE: processes, calls, failures, sessions, logins, lookups."""
    from pkspy.report import summary as summary_report

    try:
        result = summary_report.summarize(file, fmt=fmt)
    except SourceError as e:
        _fail(e)
        return
    if as_json:
        click.echo(json.dumps(result, indent=2))
    else:
        click.echo(summary_report.render(result))


@main.command()
@click.argument("files", nargs=-1, required=True)
@click.option("--format", "fmt", type=FORMAT, default=None, help="Trace format (default: detect).")
@click.option("--follow", is_flag=True, help="Keep reading the files as they grow.")
@click.option("--reveal-secrets", is_flag=True,
              help="Show PINs and key material as they are in the traces (a banner says so).")
def view(files: tuple[str, ...], fmt: str | None, follow: bool, reveal_secrets: bool) -> None:
    """Browse FILE... in a terminal UI: timeline, sessions, logins, objects, APDUs, errors."""
    from pkspy.tui.app import REVEAL_WARNING, run  # Textual loads only for this command

    if reveal_secrets:
        click.echo(f"pkspy: warning: {REVEAL_WARNING}", err=True)
    try:
        run(list(files), fmt=fmt, follow=follow, reveal=reveal_secrets)
    except SourceError as e:
        _fail(e)


@main.command(context_settings={"ignore_unknown_options": True,
                                "allow_interspersed_args": False})
@click.option("--module", type=str, default=None,
              help="The real PKCS#11 module (default: the one the command names).")
@click.option("--spy", type=str, default=None, help="pkcs11-spy.so (default: found).")
@click.option("--opensc-debug", type=click.IntRange(1, 9), default=None, metavar="LEVEL",
              help="Also capture OpenSC's debug log at LEVEL (PIN APDUs from 8 or 9).")
@click.option("--pcsc", is_flag=True, help="Also capture PC/SC calls and APDUs (libpcscspy).")
@click.option("-o", "--output", type=str, default=None,
              help="Write the redacted trace here (mode 0600; one file per tracer).")
@click.option("--quiet", is_flag=True, help="No live decoded tail.")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def run(module: str | None, spy: str | None, opensc_debug: int | None, pcsc: bool,
        output: str | None, quiet: bool, command: tuple[str, ...]) -> None:
    """Run COMMAND under pkcs11-spy (and OpenSC's debug log, the PC/SC spy), through
    FIFOs: a live decoded tail, a redacted trace, the raw PIN never on disk."""
    from pkspy.capture import run as capture

    opts = capture.RunOptions(command=list(command), module=module, spy=spy,
                              opensc_debug=opensc_debug, pcsc=pcsc, output=output, quiet=quiet)
    try:
        outcome = capture.run(opts)
    except capture.CaptureError as e:
        _fail(str(e))
        return
    sys.exit(capture.exit_like(outcome.status))


@main.command()
@click.option("--module", type=str, required=True, help="The real PKCS#11 module.")
@click.option("--spy", type=str, default=None, help="pkcs11-spy.so (default: found).")
@click.option("--output", type=str, default=None, help="PKCS11SPY_OUTPUT (default: a FIFO path).")
@click.option("--shell", type=click.Choice(["sh", "fish"]), default="sh", show_default=True)
def env(module: str, spy: str | None, output: str | None, shell: str) -> None:
    """What to export to run a program under pkcs11-spy by hand (services started elsewhere)."""
    from pkspy.capture import env as capture_env
    from pkspy.capture.locate import NotFound

    try:
        text, warning = capture_env.exports(module, spy=spy, output=output, shell=shell)
    except NotFound as e:
        _fail(str(e))
        return
    click.echo(warning, err=True)
    click.echo(text, nl=False)


@main.command()
@click.option("--module", type=str, required=True, help="The PKCS#11 module to probe.")
@click.option("--slot", type=int, default=None, help="Only this slot (its number, as listed).")
@click.option("--login", is_flag=True, help="Log in as the user to list private objects too.")
@click.option("--pin-env", type=str, default=None, metavar="VAR",
              help="Take the PIN from this environment variable (default: ask, no echo).")
@click.option("-o", "--output", type=str, default="pkspy-probe.md", show_default=True,
              help="The Markdown report; the redacted spy trace goes beside it.")
@click.option("--spy", type=str, default=None, help="pkcs11-spy.so (default: found).")
def probe(module: str, slot: int | None, login: bool, pin_env: str | None, output: str,
          spy: str | None) -> None:
    """A read-only look at a module (PyKCS11, under the spy), as a report for a bug report."""
    from pkspy.capture import probe as capture_probe
    from pkspy.capture import run as capture

    opts = capture_probe.ProbeOptions(module=module, slot=slot, login=login, pin_env=pin_env,
                                      output=output, spy=spy)
    try:
        outcome, _trace = capture_probe.probe(opts)
    except capture.CaptureError as e:
        _fail(str(e))
        return
    click.echo(f"pkspy: wrote {output}", err=True)
    sys.exit(capture.exit_like(outcome.status))


@main.command("replay")
@click.argument("trace", type=str)
@click.option("--module", type=str, required=True, help="The PKCS#11 module to replay against.")
@click.option("--slot", type=int, default=None, help="Live slot ID for every recorded slot.")
@click.option("--process", type=int, default=None,
              help="Which process of the trace (default: the first that opened a session).")
@click.option("--until", type=int, default=None, metavar="SEQ",
              help="Stop after the recorded call numbered SEQ.")
@click.option("--pin-env", type=str, default=None, metavar="VAR",
              help="User PIN from this environment variable (default: ask, no echo).")
@click.option("--so-pin-env", type=str, default=None, metavar="VAR",
              help="SO PIN from this environment variable (default: ask, no echo).")
@click.option("--dry-run", is_flag=True, help="Print the plan; touch no module.")
@click.option("--allow-changes", is_flag=True,
              help="Also make calls that change the token (asks on the terminal).")
@click.option("-o", "--output", type=str, default="pkspy-replay.log", show_default=True,
              help="The replay's own redacted pkcs11-spy trace.")
@click.option("--spy", type=str, default=None, help="pkcs11-spy.so (default: found).")
@click.option("--all", "all_rows", is_flag=True, help="Show every step after the first divergence.")
def replay_cmd(trace: str, module: str, slot: int | None, process: int | None,
               until: int | None, pin_env: str | None, so_pin_env: str | None, dry_run: bool,
               allow_changes: bool, output: str, spy: str | None, all_rows: bool) -> None:
    """Make the recorded calls of TRACE again against --module and compare them call by call."""
    from pkspy.capture.run import CaptureError
    from pkspy.replay import runner
    from pkspy.replay.plan import PlanError

    if redacted_copy.same_file(trace, output):
        _fail(f"{output}: is the trace; write the replay trace somewhere else")
    opts = runner.ReplayOptions(trace=trace, module=module, slot=slot, process=process,
                                until=until, pin_env=pin_env, so_pin_env=so_pin_env,
                                dry_run=dry_run, allow_changes=allow_changes, output=output,
                                spy=spy, all_rows=all_rows)
    try:  # a closed pipe (| head) ends in _Commands, as for every command
        sys.exit(runner.replay(opts, sys.stdout, sys.stderr))
    except (SourceError, PlanError, runner.ReplayError, CaptureError) as e:
        _fail(str(e))


@main.group()
def card() -> None:
    """Readers and cards through pyscard: list them, send APDUs (PINs redacted)."""


@card.command("list")
def card_list() -> None:
    """Every PC/SC reader and its card: ATR, decoded, and the card's name."""
    from pkspy.capture import pcsc

    try:
        click.echo(pcsc.render_list(pcsc.card_list()))
    except pcsc.CardError as e:
        _fail(str(e))


@card.command("send")
@click.argument("apdus", nargs=-1)
@click.option("--script", type=click.Path(exists=True, dir_okay=False), default=None,
              help="APDUs from a file, one a line ('#' starts a comment).")
@click.option("-r", "--reader", type=str, default=None,
              help="Reader index or name (default: the first with a card).")
@click.option("-o", "--output", type=str, default=None,
              help="Record the exchanges here, redacted, as hex APDU text (mode 0600).")
def card_send(apdus: tuple[str, ...], script: str | None, reader: str | None,
              output: str | None) -> None:
    """Send APDU... (hex) to a card and show each exchange decoded."""
    from pathlib import Path

    from pkspy.capture import pcsc
    from pkspy.report.lines import format_apdu

    try:
        commands = [pcsc.parse_apdu(a) for a in apdus]
        if script:
            commands += pcsc.script_apdus(Path(script).read_text())
        if not commands:
            raise pcsc.CardError("no APDU to send (give APDU... or --script FILE)")
        pcsc.send(commands, reader, output, show=lambda e: click.echo(format_apdu(e)))
    except pcsc.CardError as e:
        _fail(str(e))


@card.command("replay")
@click.argument("trace", type=str)
@click.option("-r", "--reader", type=str, default=None,
              help="Reader index or name (default: the first with a card).")
@click.option("--pin-env", type=str, default=None, metavar="VAR",
              help="The PIN for recorded VERIFY commands (else they are not sent).")
@click.option("--dry-run", is_flag=True, help="Show what would be sent; touch no card.")
@click.option("--allow-changes", is_flag=True, help="Also send commands that write to the card.")
@click.option("-o", "--output", type=str, default="pkspy-card-replay.txt", show_default=True,
              help="The replay's exchanges, redacted, as hex APDU text (mode 0600).")
@click.option("--all", "all_rows", is_flag=True,
              help="Show every exchange after the first divergence.")
def card_replay(trace: str, reader: str | None, pin_env: str | None, dry_run: bool,
                allow_changes: bool, output: str, all_rows: bool) -> None:
    """Send the command APDUs of TRACE to a card again; compare status words and data."""
    from pkspy.replay import card as card_replayer

    if redacted_copy.same_file(trace, output):
        _fail(f"{output}: is the trace; write the replay somewhere else")
    try:
        if allow_changes and not dry_run and not card_replayer.confirm_changes(trace, sys.stderr):
            _fail("commands that write to the card need a confirmation on a terminal; "
                  "nothing was sent")
        steps, live_reader = card_replayer.run(trace, reader, pin_env, allow_changes, dry_run,
                                               output)
    except (SourceError, card_replayer.CardReplayError) as e:
        _fail(str(e))
        return
    click.echo(card_replayer.render(steps, trace, live_reader, output, all_rows))
    sys.exit(1 if card_replayer.first_divergence(steps) else 0)


@main.command(context_settings={"ignore_unknown_options": True})
@click.argument("codes", nargs=-1, required=True)
@click.option("--namespace", type=click.Choice([*NAMESPACES, "iso7816"],
                                               case_sensitive=False),
              help="Read the codes in this namespace only.")
@click.option("--gskit", is_flag=True, help="Read numbers as IBM GSKit return codes.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable answers.")
def explain(codes: tuple[str, ...], namespace: str | None, gskit: bool, as_json: bool) -> None:
    """What a code means: 0xA0, -1208, 6982, 0x8010001F, GSK 408, CKM_ECDSA, an ATR ..."""
    if gskit and namespace not in (None, "gskit"):
        raise click.UsageError("--gskit and --namespace name different namespaces")
    from pkspy.report import explain as explain_report

    sys.exit(explain_report.run(codes, "gskit" if gskit else namespace, as_json,
                                out=sys.stdout, err=sys.stderr))
