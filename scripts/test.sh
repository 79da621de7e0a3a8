#!/usr/bin/env bash
# Run every test: unit tests of the host, then the end-to-end suites in tests/ (real server
# process, real sled directories, guests built from examples/ and tests/guests/, in Rust and
# in Python, real HTTP), the Python SDK's unit tests, then schemathesis against the server's
# OpenAPI description (scripts/schemathesis.sh).
# Installs what a fresh machine lacks (the wasm32-wasip2 target; python3, componentize-py
# and schemathesis).
# Arguments go to `cargo test`; with any, the Python unit tests and schemathesis are skipped
# (a filtered run).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/build-guests.sh >/dev/null
cargo test -p durable-host "$@"
if [ "$#" -eq 0 ]; then
    # The replay core and the guest SDK (its unit tests, doc examples and local test runner)
    # run natively, and so do the examples' own tests (on the runner: in-process, no wasm).
    cargo test -p durable-journal -p durable-sdk -p hello -p user-registration -p approval -p fan-out -p order-saga
fi
if [ "$#" -eq 0 ]; then
    "$(bash scripts/python-venv.sh)" -m unittest discover -s guest-sdk/python/tests
    bash scripts/schemathesis.sh
fi
