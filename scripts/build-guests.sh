#!/usr/bin/env bash
# Builds every guest component (the examples and the conformance test guest) for
# wasm32-wasip2 in one cargo invocation, into target/wasm (kept apart from the host's target
# directory so the two builds do not invalidate each other), and prints the .wasm paths.
# Idempotent: safe to run again; cargo rebuilds only what changed.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

target=wasm32-wasip2
if ! rustup target list --installed | grep -qx "$target"; then
    rustup target add "$target"
fi

cargo build --release --target "$target" --target-dir target/wasm \
    -p hello -p user-registration -p approval -p conformance-guest

out="$root/target/wasm/$target/release"
for name in hello user_registration approval conformance_guest; do
    wasm="$out/$name.wasm"
    if [[ ! -f "$wasm" ]]; then
        echo "missing: $wasm" >&2
        exit 1
    fi
    echo "$wasm"
done
