#!/usr/bin/env bash
# A Python venv under target/ with one pinned PyPI requirement, for the project's Python
# tools; prints the venv's python. Installs python3 with venv through apt-get on a machine
# that lacks them. Idempotent: the venv is made again only when its requirement changed.
#
#   bash scripts/python-venv.sh                       # target/python-venv, componentize-py
#   bash scripts/python-venv.sh NAME REQUIREMENT      # target/NAME with REQUIREMENT
#
# The default is the guests' toolchain: componentize-py, pinned because it bundles the
# CPython that runs inside every Python component (the pin is what production runs). The
# SDK itself (guest-sdk/python/src) is used from the checkout, not installed, so an edit to
# it is in the next build. scripts/schemathesis.sh makes its venv here too.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

venv="$root/target/${1:-python-venv}"
requirement="${2:-componentize-py==0.25.1}"
stamp="$venv/.requirement"

if [[ "$(cat "$stamp" 2>/dev/null)" != "$requirement" ]] || [[ ! -x "$venv/bin/python" ]]; then
    if ! command -v python3 >/dev/null || ! python3 -c 'import ensurepip, venv' 2>/dev/null; then
        echo "python-venv: installing python3 and python3-venv" >&2
        apt-get update -qq >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 python3-venv >/dev/null
    fi
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check "$requirement"
    echo "$requirement" >"$stamp"
fi
echo "$venv/bin/python"
