"""Where the tracers and the libraries they stand in for live, on the usual systems.

Debian and Ubuntu put libraries under ``/usr/lib/<multiarch triplet>``
(pkcs11-spy.so in its ``pkcs11/`` directory), Fedora and RHEL under
``/usr/lib64``, Arch under ``/usr/lib``, Homebrew under ``/opt/homebrew``
(Apple silicon) or ``/usr/local`` (Intel), and the OpenSC installer for macOS
under ``/Library/OpenSC``.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
import sysconfig
from pathlib import Path

# Debian multiarch triplets by machine name, the running one first.
_TRIPLETS = {
    "x86_64": "x86_64-linux-gnu", "amd64": "x86_64-linux-gnu", "aarch64": "aarch64-linux-gnu",
    "arm64": "aarch64-linux-gnu", "armv7l": "arm-linux-gnueabihf", "i686": "i386-linux-gnu",
    "i386": "i386-linux-gnu", "ppc64le": "powerpc64le-linux-gnu", "s390x": "s390x-linux-gnu",
    "riscv64": "riscv64-linux-gnu",
}
HOMEBREW = ["/opt/homebrew", "/usr/local"]


def lib_dirs() -> list[str]:
    """Library directories to look in, most specific first."""
    triplet = sysconfig.get_config_var("MULTIARCH") or _TRIPLETS.get(platform.machine(), "")
    dirs = []
    if triplet:
        dirs += [f"/usr/lib/{triplet}", f"/lib/{triplet}"]
    dirs += ["/usr/lib64", "/usr/lib", "/usr/local/lib", "/usr/local/lib64"]
    for brew in HOMEBREW:
        dirs += [f"{brew}/lib", f"{brew}/opt/opensc/lib", f"{brew}/opt/pcsc-lite/lib"]
    dirs += ["/Library/OpenSC/lib"]
    return dirs


def _first(paths) -> str | None:
    return next((str(p) for p in paths if os.path.isfile(p)), None)


def spy_candidates() -> list[str]:
    names = ("pkcs11-spy.so", "pkcs11-spy.dylib")
    return [str(Path(d, sub, n)) for d in lib_dirs() for sub in ("pkcs11", "") for n in names]


class NotFound(Exception):
    """A tracer that is not installed: the message says where pkspy looked and what to install."""


def find_spy(explicit: str | None = None) -> str:
    """pkcs11-spy.so: ``explicit`` (``--spy``), else the first of the usual places."""
    if explicit:
        if not os.path.isfile(explicit):
            raise NotFound(f"{explicit}: no such file (--spy)")
        return os.path.abspath(explicit)
    found = _first(spy_candidates())
    if found is None:
        raise NotFound(
            "pkcs11-spy.so not found (looked in the pkcs11/ directories of "
            + ", ".join(dict.fromkeys(lib_dirs())) + "); install OpenSC's PKCS#11 module "
            "(Debian/Ubuntu: opensc-pkcs11; Fedora/RHEL/Arch: opensc; macOS: brew install "
            "opensc) or give --spy PATH")
    return found


def find_pcsc_spy() -> tuple[str, str]:
    """libpcscspy.so.0 and the real libpcsclite.so.1 beside it (resolved, so no link loops)."""
    for d in lib_dirs():
        spy = Path(d, "libpcscspy.so.0")
        real = Path(d, "libpcsclite.so.1")
        if spy.is_file() and real.is_file():
            return str(spy), str(real.resolve())
    if platform.system() == "Darwin":
        raise NotFound("--pcsc needs pcsc-lite's libpcscspy; macOS's PC/SC framework has "
                       "no spy library")
    raise NotFound("libpcscspy.so.0 (pcsc-lite's spy) not found beside libpcsclite.so.1; "
                   "install it (Debian/Ubuntu: libpcsclite-dev; Fedora/RHEL: pcsc-lite-devel; "
                   "Arch: pcsclite)")


def pcsc_has_delegate(real_lib: str) -> bool:
    """pcsc-lite >= 2.1 reads LIBPCSCLITE_DELEGATE: its name is in the library."""
    try:
        return b"LIBPCSCLITE_DELEGATE" in Path(real_lib).read_bytes()
    except OSError:
        return False


def tool_default_module(tool: str) -> str | None:
    """The module pkcs11-tool loads without --module, from its own --help."""
    exe = shutil.which(tool)
    if exe is None:
        return None
    try:
        out = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=10,
                             stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError):
        return None
    m = re.search(r"--module\b[^\n]*\(default:\s*([^)\s]+)\)", out.stdout + out.stderr)
    return m.group(1) if m else None


def opensc_conf_path() -> str | None:
    """The OpenSC configuration file in use: OPENSC_CONF, else the usual places."""
    env = os.environ.get("OPENSC_CONF")
    if env:
        return env
    places = ["/etc/opensc/opensc.conf", "/etc/opensc.conf", "/usr/local/etc/opensc.conf",
              *(f"{b}/etc/opensc.conf" for b in HOMEBREW), "/Library/OpenSC/etc/opensc.conf"]
    return _first(places)


def p11kit_module_dirs() -> tuple[list[str], str | None]:
    """p11-kit's system module config directories, and the directory relative module
    paths are loaded from (pkg-config p11-kit-1 where it is installed)."""
    configs = ["/etc/pkcs11/modules", "/usr/share/p11-kit/modules", "/usr/local/etc/pkcs11/modules",
               *(f"{b}/etc/pkcs11/modules" for b in HOMEBREW)]
    module_path = None
    pkg = shutil.which("pkg-config")
    if pkg:
        for var, into in (("p11_module_configs", "configs"), ("p11_module_path", "path")):
            try:
                out = subprocess.run([pkg, f"--variable={var}", "p11-kit-1"], capture_output=True,
                                     text=True, timeout=10).stdout.strip()
            except (OSError, subprocess.SubprocessError):
                out = ""
            if out and into == "configs" and out not in configs:
                configs.insert(1, out)
            elif out and into == "path":
                module_path = out
    if module_path is None:
        module_path = next((str(Path(d, "pkcs11")) for d in lib_dirs()
                            if Path(d, "pkcs11").is_dir()), None)
    return configs, module_path
