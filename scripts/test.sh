#!/bin/sh
# Install what the tests need (the real programs the end-to-end tests drive:
# SoftHSM2 and OpenSC's pkcs11-spy / pkcs11-tool / opensc-tool; pcscd with
# vsmartcard's virtual reader and card, and pcsc-lite's spy library; p11tool
# and ssh-keygen, which pkspy run puts the spy behind; tmux, which runs pkspy
# view in a real terminal; lnav, which reads the JSONL export), then run
# the whole suite.
set -eu
cd "$(dirname "$0")/.."
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
need=""
for pkg in softhsm2 opensc opensc-pkcs11 openssl pcscd libpcsclite1 libpcsclite-dev \
           vsmartcard-vpcd python3-virtualsmartcard python3-pycryptodome util-linux \
           gnutls-bin openssh-client p11-kit tmux lnav; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need="$need $pkg"
done
if [ -n "$need" ]; then
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $need >/dev/null
fi
PKSPY_PIP_ARGS="-e .[test]" sh scripts/install.sh
.venv/bin/python -m ruff check .
# one worker per core: each test that needs pcscd or SoftHSM2 makes its own
.venv/bin/python -m pytest -n auto "$@"
