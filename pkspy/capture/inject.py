"""Putting the tracers in a program's path without touching a system file.

* **pkcs11-spy** stands in for the real module wherever the program names
  it: ``pkcs11-tool --module``, ``p11tool``/``certtool --provider``, ``ssh -I``
  or ``-o PKCS11Provider=`` (or ``PKCS11Provider`` from the ssh config, read
  with ``ssh -G``), ``ssh-keygen -D``, any argument that is the real module's
  path (``--lib=...``, ``...module-path=...`` in a PKCS#11 URI), OpenSSL's
  pkcs11 provider and libp11 engine (``PKCS11_PROVIDER_MODULE``,
  ``PKCS11_MODULE_PATH``, and an ``OPENSSL_CONF`` that includes the system
  one and sets ``pkcs11-module-path``/``MODULE_PATH`` again), and p11-kit (a
  user module config in a private ``XDG_CONFIG_HOME`` that mirrors the real
  one). The real module goes into ``PKCS11SPY``.
* **OPENSC_DEBUG**: a copy of the OpenSC config in use with ``debug`` and
  ``debug_file`` put first in every ``app`` block (OpenSC reads the first
  value of a key), pointed at by ``OPENSC_CONF``.
* **libpcscspy**: pcsc-lite >= 2.1 loads it through ``LIBPCSCLITE_DELEGATE``
  (ignored for root); older ones (and root) load it as ``libpcsclite.so.1``
  from a private directory on ``LD_LIBRARY_PATH``, where
  ``libpcsclite_nospy.so.1`` and ``libpcsclite_real.so.1`` lead to the real
  library. It writes to ``$HOME/pcsc-spy``, so HOME becomes a private
  directory whose entries link to the real home's.

Each function writes only into the private temporary directory it is given
and returns the argv and environment changes with a note of what it did.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from pkspy.capture import locate


class CannotPlace(Exception):
    """The spy cannot be put in this program's path: the message says why, plainly."""


@dataclass
class Plan:
    argv: list[str]
    env: dict[str, str | None] = field(default_factory=dict)  # None: remove the variable
    notes: list[str] = field(default_factory=list)
    real: str | None = None  # the real PKCS#11 module
    certain: bool = True  # False: the spy is where the program may look, not where it must


def _same_file(a: str, b: str) -> bool:
    if a == b:
        return True
    try:
        return os.path.exists(a) and os.path.exists(b) and os.path.samefile(a, b)
    except OSError:
        return False


# -- where a program names its module ------------------------------------------------

Found = tuple[int, str, str]  # (argv index, text before the module path, the module path)


def _long_option(argv: list[str], names: tuple[str, ...]) -> list[Found]:
    """``--name X`` and ``--name=X`` anywhere (GNU getopt_long permutes)."""
    out: list[Found] = []
    i = 1
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            break
        for name in names:
            if arg == name and i + 1 < len(argv):
                out.append((i + 1, "", argv[i + 1]))
                i += 1
                break
            if arg.startswith(name + "="):
                out.append((i, name + "=", arg[len(name) + 1:]))
                break
        i += 1
    return out


def _getopt(argv: list[str], optstring: str, operands_between: int = 0):
    """(index, prefix, letter, value) for every option of a BSD getopt command line.

    ``operands_between``: operands after which options may go on (ssh takes
    options after its destination, then stops at the remote command)."""
    takes = {c for i, c in enumerate(optstring) if optstring[i + 1:i + 2] == ":" and c != ":"}
    i, skipped = 1, 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            break
        if not arg.startswith("-") or arg == "-":
            if skipped < operands_between:
                skipped += 1
                i += 1
                continue
            break
        j = 1
        while j < len(arg):
            letter = arg[j]
            if letter in takes:
                if j + 1 < len(arg):
                    yield i, arg[:j + 1], letter, arg[j + 1:]
                elif i + 1 < len(argv):
                    i += 1
                    yield i, "", letter, argv[i]
                break
            yield i, arg[:j + 1], letter, None
            j += 1
        i += 1


SSH_OPTS = "1246ab:c:e:fgi:kl:m:no:p:qstvxAB:CD:E:F:GI:J:KL:MNO:P:Q:R:S:TVw:W:XYy"
SSH_KEYGEN_OPTS = "ABHKLQUXceghiklopquvyC:D:E:F:I:M:N:O:P:R:V:Z:a:b:f:g:j:m:n:r:s:t:w:z:"
SSH_ADD_OPTS = "cCDdKkLlqTvXxE:e:H:h:S:s:t:"
_PROVIDER_OPT = re.compile(r"(?i)^(pkcs11provider\s*(?:=\s*|\s+))(.*)$")


def _ssh(argv: list[str]) -> list[Found]:
    out: list[Found] = []
    for i, prefix, letter, value in _getopt(argv, SSH_OPTS, operands_between=1):
        if letter == "I" and value is not None:
            out.append((i, prefix, value))
        elif letter == "o" and value is not None:
            m = _PROVIDER_OPT.match(value)
            if m and m.group(2).lower() != "none":
                out.append((i, prefix + m.group(1), m.group(2)))
    return out


def _ssh_keygen(argv: list[str]) -> list[Found]:
    return [(i, p, v) for i, p, letter, v in _getopt(argv, SSH_KEYGEN_OPTS)
            if letter == "D" and v is not None]


def _ssh_config_provider(argv: list[str]) -> str | None:
    """The PKCS11Provider ssh's configuration gives this command line (``ssh -G``)."""
    exe = shutil.which(argv[0])
    if exe is None:
        return None
    try:
        out = subprocess.run([exe, "-G", *argv[1:]], capture_output=True, text=True, timeout=10,
                             stdin=subprocess.DEVNULL).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    m = re.search(r"(?im)^pkcs11provider\s+(\S+)\s*$", out)
    return m.group(1) if m and m.group(1).lower() != "none" else None


@dataclass(frozen=True)
class Tool:
    find: object  # argv -> list[Found]
    add: tuple[str, ...] = ()  # option to add when the command names no module
    default: object = None  # argv -> the module it loads when none is named
    cannot: str | None = None


TOOLS: dict[str, Tool] = {
    "pkcs11-tool": Tool(find=lambda a: _long_option(a, ("--module",)), add=("--module",),
                        default=lambda a: locate.tool_default_module("pkcs11-tool")),
    "softhsm2-util": Tool(find=lambda a: _long_option(a, ("--module",)), add=("--module",)),
    "p11tool": Tool(find=lambda a: _long_option(a, ("--provider",)), add=("--provider",)),
    "certtool": Tool(find=lambda a: _long_option(a, ("--provider",)), add=("--provider",)),
    "ssh": Tool(find=_ssh, add=("-I",), default=_ssh_config_provider),
    "ssh-keygen": Tool(find=_ssh_keygen, add=("-D",)),
    "ssh-add": Tool(find=lambda a: [], cannot=(
        "ssh-add -s/-e hands the module to ssh-agent, which pkspy did not start and cannot "
        "put the spy in; run the agent under pkspy instead: pkspy run --module REAL.so -- "
        "ssh-agent -d")),
}
# OpenSC's own tools talk to the card through libopensc, not through a PKCS#11 module.
NO_PKCS11 = {"opensc-tool", "opensc-explorer", "pkcs15-tool", "pkcs15-init", "pkcs15-crypt",
             "cardos-tool", "piv-tool", "openpgp-tool", "sc-hsm-tool", "pcsc_scan", "scriptor"}


def _uri_or_assignment(argv: list[str], real: str, spy: str) -> dict[int, str]:
    """Arguments that are the real module's path, or hold it after ``=`` or ``:`` up to
    the end or a ``&``/``;`` (a PKCS#11 URI's module-path): each with the spy instead."""
    out: dict[int, str] = {}
    pattern = re.compile(r"(?<=[=:])" + re.escape(real) + r"(?=$|[&;])")
    for i, arg in enumerate(argv[1:], 1):
        if _same_file(arg, real):
            out[i] = spy
        elif pattern.search(arg):
            out[i] = pattern.sub(lambda _: spy, arg)
    return out


def place_pkcs11_spy(argv: list[str], module: str | None, spy: str, tmp: Path,
                     environ: Mapping[str, str]) -> Plan | None:
    """Put pkcs11-spy in place of the module the command loads.

    Returns None when the command loads no PKCS#11 module pkspy can see and
    none was named with ``module``; raises CannotPlace when there is a module
    but no way to put the spy in its place.
    """
    prog = os.path.basename(argv[0])
    plan = Plan(argv=list(argv))
    if prog in NO_PKCS11:
        if module:
            raise CannotPlace(f"{prog} talks to the card through libopensc, not through a "
                              "PKCS#11 module: trace it with --opensc-debug LEVEL or --pcsc")
        return None
    tool = TOOLS.get(prog)
    if tool is not None and tool.cannot:
        raise CannotPlace(tool.cannot)
    found: list[Found] = tool.find(argv) if tool is not None else []  # type: ignore[operator]
    named = [f for f in found if not _same_file(f[2], spy)]
    if module and named and not all(_same_file(v, module) for _, _, v in named):
        raise CannotPlace(f"{prog} is told to load {named[0][2]}, but --module says {module}; "
                          "drop one of them")
    real = module or (named[0][2] if named else None)
    if real is None and found:  # the command names the spy already
        real = environ.get("PKCS11SPY")
        if not real:
            raise CannotPlace(f"{prog} loads pkcs11-spy itself: say which module it spies "
                              "on with --module REAL.so")
    if real is None and tool is not None and tool.default is not None:
        real = tool.default(argv)  # type: ignore[operator]
        if real:
            plan.notes.append(f"{prog} loads {real} when given no module")
    if real is None and prog == "openssl":
        real = _openssl_module(environ)
    if real is None:
        return None
    if os.path.isabs(real) and not os.path.exists(real):
        raise CannotPlace(f"{real}: no such module")
    if _same_file(real, spy):
        raise CannotPlace("the real module cannot be pkcs11-spy itself")
    plan.real = real
    plan.env.update(PKCS11SPY=real)
    if found:
        for i, prefix, _ in found:
            plan.argv[i] = prefix + spy
        plan.notes.append(f"{prog}: the spy stands in for {real} on the command line")
    elif tool is not None and tool.add:
        plan.argv[1:1] = [*tool.add, spy]
        plan.notes.append(f"{prog}: added {tool.add[0]} {spy} (the spy, in front of {real})")
    elif prog == "openssl":
        _openssl(plan, real, spy, tmp, environ)
    elif (generic := _uri_or_assignment(argv, real, spy)):
        for i, text in generic.items():
            plan.argv[i] = text
        plan.notes.append(f"{prog}: the spy stands in for {real} in its arguments")
    else:
        _elsewhere(plan, prog, real, spy, tmp, environ)
    return plan


# -- OpenSSL: the pkcs11 provider and the libp11 engine ----------------------------------

_OSSL_KEYS = ("pkcs11-module-path", "MODULE_PATH")
_SECTION = re.compile(r"^\s*\[\s*([^\]\s]+)\s*\]")
_OSSL_KEY = re.compile(r"^\s*(pkcs11-module-path|MODULE_PATH)\s*=\s*(.*?)\s*$")


def _openssl_conf_file(environ: Mapping[str, str]) -> str | None:
    if environ.get("OPENSSL_CONF"):
        return environ["OPENSSL_CONF"]
    exe = shutil.which("openssl")
    if exe is not None:
        try:
            out = subprocess.run([exe, "version", "-d"], capture_output=True, text=True,
                                 timeout=10).stdout
            m = re.search(r'OPENSSLDIR: "([^"]+)"', out)
            if m and os.path.isfile(os.path.join(m.group(1), "openssl.cnf")):
                return os.path.join(m.group(1), "openssl.cnf")
        except (OSError, subprocess.SubprocessError):
            pass
    return None


def _openssl_settings(conf: str | None) -> list[tuple[str, str, str]]:
    """(section, key, module) of every module path set in an OpenSSL config (and the
    files it includes)."""
    out: list[tuple[str, str, str]] = []
    seen: set[str] = set()

    def read(path: str) -> None:
        if path in seen or len(seen) > 20:
            return
        seen.add(path)
        try:
            text = Path(path).read_text(errors="replace")
        except OSError:
            return
        section = "default"
        for line in text.splitlines():
            line = line.split("#", 1)[0]
            if m := _SECTION.match(line):
                section = m.group(1)
            elif m := _OSSL_KEY.match(line):
                out.append((section, m.group(1), m.group(2).strip("\"'")))
            elif (inc := re.match(r"^\s*\.include\s*=?\s*(\S+)", line)) is not None:
                target = inc.group(1)
                if not os.path.isabs(target):
                    target = os.path.join(os.path.dirname(path), target)
                if os.path.isdir(target):
                    for f in sorted(os.listdir(target)):
                        if f.endswith((".cnf", ".conf")):
                            read(os.path.join(target, f))
                else:
                    read(target)

    if conf:
        read(conf)
    return out


def _openssl_module(environ: Mapping[str, str]) -> str | None:
    for var in ("PKCS11_PROVIDER_MODULE", "PKCS11_MODULE_PATH"):
        if environ.get(var):
            return environ[var]
    settings = _openssl_settings(_openssl_conf_file(environ))
    if settings:
        return settings[0][2]
    proxy = next((str(Path(d, "p11-kit-proxy.so")) for d in locate.lib_dirs()
                  if Path(d, "p11-kit-proxy.so").is_file()), None)
    return proxy


def _openssl(plan: Plan, real: str, spy: str, tmp: Path, environ: Mapping[str, str]) -> None:
    """The pkcs11 provider reads PKCS11_PROVIDER_MODULE before its config; the libp11
    engine reads PKCS11_MODULE_PATH, but a MODULE_PATH in the config wins: that one is
    set again in a config that includes the system one (OpenSSL keeps the last value)."""
    plan.env.update(PKCS11_PROVIDER_MODULE=spy, PKCS11_MODULE_PATH=spy)
    conf = _openssl_conf_file(environ)
    settings = _openssl_settings(conf)
    if conf and settings:
        lines = [f".include {conf}"]
        for section, key, _ in settings:
            lines += [f"[{section}]", f"{key} = {spy}"]
        path = tmp / "openssl.cnf"
        path.write_text("\n".join(lines) + "\n")
        plan.env["OPENSSL_CONF"] = str(path)
        keys = ", ".join(sorted({f"[{s}] {k}" for s, k, _ in settings}))
        plan.notes.append(f"openssl: {keys} of {conf} set to the spy in a private copy")
    plan.notes.append(f"openssl: the pkcs11 provider and the libp11 engine load the spy in "
                      f"front of {real}")


# -- p11-kit, and programs that do not name their module ---------------------------------


def _p11kit_name(real: str, user_modules: Path | None) -> str | None:
    """The name of the p11-kit module config that loads ``real``, if one does."""
    configs, module_path = locate.p11kit_module_dirs()
    dirs = [str(user_modules)] if user_modules and user_modules.is_dir() else []
    for d in [*dirs, *configs]:
        try:
            names = sorted(os.listdir(d))
        except OSError:
            continue
        for name in names:
            if not name.endswith(".module"):
                continue
            try:
                text = Path(d, name).read_text(errors="replace")
            except OSError:
                continue
            m = re.search(r"(?m)^\s*module\s*:\s*(\S.*?)\s*$", text)
            if not m:
                continue
            path = m.group(1)
            if not os.path.isabs(path) and module_path:
                path = os.path.join(module_path, path)
            if _same_file(path, real):
                return name
    return None


def _mirror(real_dir: Path, into: Path, skip: str) -> None:
    """``into`` holds a link to every entry of ``real_dir`` but ``skip``."""
    into.mkdir(mode=0o700, exist_ok=True)
    try:
        entries = os.listdir(real_dir)
    except OSError:
        return
    for name in entries:
        if name != skip:
            os.symlink(real_dir / name, into / name)


def p11kit_config(real: str, spy: str, tmp: Path, environ: Mapping[str, str]) -> str:
    """A private XDG_CONFIG_HOME in which p11-kit loads the spy in place of ``real``
    (or besides the other modules, when no config names ``real``). Returns the note."""
    if os.geteuid() == 0 or os.getuid() == 0:
        raise CannotPlace("p11-kit skips user configuration for root")
    if Path("/etc/pkcs11/pkcs11.conf").is_file() and re.search(
            r"(?m)^\s*user-config\s*:\s*none", Path("/etc/pkcs11/pkcs11.conf").read_text()):
        raise CannotPlace("/etc/pkcs11/pkcs11.conf forbids user configuration (user-config: "
                          "none)")
    home = environ.get("HOME") or os.path.expanduser("~")
    real_config = Path(environ.get("XDG_CONFIG_HOME") or os.path.join(home, ".config"))
    config = tmp / "config"
    _mirror(real_config, config, "pkcs11")
    _mirror(real_config / "pkcs11", config / "pkcs11", "modules")
    modules = config / "pkcs11" / "modules"
    _mirror(real_config / "pkcs11" / "modules", modules, "")
    name = _p11kit_name(real, real_config / "pkcs11" / "modules")
    target = modules / (name or "pkspy-spy.module")
    text = ""
    if name is not None:
        src = target.resolve() if target.is_symlink() else None
        if src is None:
            src = next((Path(d, name) for d in locate.p11kit_module_dirs()[0]
                        if Path(d, name).is_file()), None)
        text = src.read_text(errors="replace") if src else ""
        if target.is_symlink():
            target.unlink()
    lines = [ln for ln in text.splitlines() if not re.match(r"^\s*module\s*:", ln)]
    target.write_text(f"module: {spy}\n" + "\n".join(lines) + "\n")
    what = f"in place of its module config {name}" if name else "as one more module"
    return f"p11-kit loads the spy {what} (a private XDG_CONFIG_HOME)"


def _elsewhere(plan: Plan, prog: str, real: str, spy: str, tmp: Path,
               environ: Mapping[str, str]) -> None:
    """The command does not name its module: put the spy where it may look."""
    plan.certain = False
    plan.env.update(PKCS11_PROVIDER_MODULE=spy, PKCS11_MODULE_PATH=spy)
    places = ["OpenSSL's pkcs11 provider (PKCS11_PROVIDER_MODULE)",
              "the libp11 engine (PKCS11_MODULE_PATH)"]
    try:
        plan.notes.append(p11kit_config(real, spy, tmp, environ))
        plan.env["XDG_CONFIG_HOME"] = str(tmp / "config")
        places.append("p11-kit")
    except CannotPlace as e:
        plan.notes.append(f"not through p11-kit: {e}")
    plan.notes.append(f"{prog} does not name {real} on its command line; the spy waits "
                      f"where {', '.join(places)} look. If {prog} loads its module another "
                      "way, pass it the module's path as an argument.")


# -- OpenSC debug log ---------------------------------------------------------------------

_APP_BLOCK = re.compile(r"(?m)^(\s*app\s+[\w.-]+\s*\{)")


def opensc_conf(level: int, fifo: str, tmp: Path) -> tuple[str, str]:
    """Write a copy of the OpenSC config in use whose every ``app`` block logs at
    ``level`` to ``fifo``; returns its path and a note."""
    source = locate.opensc_conf_path()
    text = ""
    if source:
        try:
            text = Path(source).read_text(errors="replace")
        except OSError:
            text = ""
    settings = f'\n\tdebug = {level};\n\tdebug_file = "{fifo}";\n\tdisable_colors = true;'
    # Comments are lines that start with #; a block opener inside one is left alone.
    out, found_default = [], False
    for line in text.splitlines(keepends=True):
        if not line.lstrip().startswith("#") and (m := _APP_BLOCK.match(line)):
            found_default = found_default or re.match(r"\s*app\s+default\b", line) is not None
            line = m.group(1) + settings + line[m.end():]
        out.append(line)
    body = "".join(out)
    if not found_default:
        body = f"app default {{{settings}\n}}\n" + body
    path = tmp / "opensc.conf"
    path.write_text(body)
    origin = f"a copy of {source}" if source else "a new config"
    return str(path), f"OpenSC logs at level {level} ({origin}, OPENSC_CONF)"


# -- PC/SC spy -------------------------------------------------------------------------------


def pcsc_spy(tmp: Path, environ: Mapping[str, str]) -> tuple[dict[str, str | None], str, str]:
    """Environment to load libpcscspy, the path it will write to ($HOME/pcsc-spy), and a
    note. The caller makes that path a FIFO."""
    spy, real = locate.find_pcsc_spy()
    env: dict[str, str | None] = {}
    real_home = environ.get("HOME") or os.path.expanduser("~")
    home = tmp / "home"
    _mirror(Path(real_home), home, "pcsc-spy")
    env["HOME"] = str(home)
    root = os.geteuid() == 0 or os.getuid() == 0
    if locate.pcsc_has_delegate(real) and not root:
        env["LIBPCSCLITE_DELEGATE"] = spy
        env["LIBPCSCLITE_SPY_DELEGATE"] = real
        how = "LIBPCSCLITE_DELEGATE"
    else:
        lib = tmp / "lib"
        lib.mkdir(mode=0o700)
        os.symlink(spy, lib / "libpcsclite.so.1")
        for name in ("libpcsclite_nospy.so.1", "libpcsclite_real.so.1"):
            os.symlink(real, lib / name)
        old = environ.get("LD_LIBRARY_PATH")
        env["LD_LIBRARY_PATH"] = f"{lib}:{old}" if old else str(lib)
        env["LIBPCSCLITE_SPY_DELEGATE"] = real
        env["LIBPCSCLITE_DELEGATE"] = None  # the real library must not load the spy again
        how = "a private libpcsclite.so.1 on LD_LIBRARY_PATH"
    note = (f"libpcscspy in front of {real} ({how}); HOME is a private directory whose "
            f"entries link to {real_home}'s")
    return env, str(home / "pcsc-spy"), note
