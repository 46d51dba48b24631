#!/bin/sh
# Install pkspy into ./.venv on Debian/Ubuntu: the system packages its
# dependencies build against (pyscard compiles against libpcsclite), then pkspy.
set -eu
cd "$(dirname "$0")/.."
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
need=""
for pkg in python3-venv python3-dev gcc swig libpcsclite-dev; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need="$need $pkg"
done
if [ -n "$need" ]; then
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $need >/dev/null
fi
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
# shellcheck disable=SC2086 # PKSPY_PIP_ARGS holds several words on purpose
.venv/bin/python -m pip install -q ${PKSPY_PIP_ARGS:-.}
