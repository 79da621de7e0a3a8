#!/usr/bin/env bash
# The Python toolchain for guests: a venv under target/python-venv with componentize-py
# (PyPI, pinned: it bundles the CPython that runs inside every Python component, so the
# pin is what production runs). Installs python3 with venv through apt-get on a machine
# that lacks them (as scripts/schemathesis.sh does). Idempotent; prints the venv's python.
# The SDK itself (guest-sdk/python/src) is used from the checkout, not installed, so an
# edit to it is in the next build.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

version=0.25.1
venv="$root/target/python-venv"
tool="$venv/bin/componentize-py"

if ! "$tool" --version 2>/dev/null | grep -qF "componentize-py $version"; then
    if ! command -v python3 >/dev/null || ! python3 -c 'import ensurepip, venv' 2>/dev/null; then
        echo "python-venv: installing python3 and python3-venv" >&2
        apt-get update -qq >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 python3-venv >/dev/null
    fi
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check "componentize-py==$version"
fi
echo "$venv/bin/python"
