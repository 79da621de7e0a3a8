#!/usr/bin/env bash
# Builds every guest component (the examples and the conformance test guest) for
# wasm32-wasip2 in one cargo invocation, into target/wasm (kept apart from the host's target
# directory so the two builds do not invalidate each other), then the Python examples and the
# Python conformance guest into target/wasm/python, and prints the .wasm paths.
# Idempotent: safe to run again; cargo rebuilds only what changed.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

target=wasm32-wasip2
if ! rustup target list --installed | grep -qx "$target"; then
    rustup target add "$target"
fi

cargo build --release --target "$target" --target-dir target/wasm \
    -p hello -p user-registration -p approval -p conformance-guest -p fan-out \
    -p order-saga -p payment -p inventory -p echo-target

out="$root/target/wasm/$target/release"
for name in hello user_registration approval conformance_guest fan_out order_saga payment inventory echo_target; do
    wasm="$out/$name.wasm"
    if [[ ! -f "$wasm" ]]; then
        echo "missing: $wasm" >&2
        exit 1
    fi
    echo "$wasm"
done

# The Python guests (guest-sdk/python, componentize-py pinned in scripts/python-venv.sh):
# the examples into target/wasm/python/, the Python conformance guest beside them. Each is
# built once and again only when its sources, the SDK or the WIT changed (a build takes
# several seconds: componentize-py snapshots a whole interpreter).
python="$(bash "$root/scripts/python-venv.sh")"
pyout="$root/target/wasm/python"
mkdir -p "$pyout"
sdk="$root/guest-sdk/python/src"
newest() { find "$@" -type f \( -name '*.py' -o -name '*.wit' \) -printf '%T@\n' | sort -n | tail -1; }
build_python() { # <output name> <module> <dir> [sources...]
    local out="$pyout/$1.wasm" module="$2" dir="$3"
    shift 3
    local src
    src="$(newest "$sdk/durable" "$root/wit" "$@")"
    if [[ ! -f "$out" ]] || [[ "$(stat -c %Y "$out")" -lt "${src%.*}" ]]; then
        (cd "$dir" && PYTHONPATH="$sdk" DURABLE_WIT="$root/wit" "$python" -m durable.build "$module" -o "$out")
        # The tests' shared artifacts (tests/support: deploy_precompiled) of older builds
        # are 35 MB each and never used again.
        rm -rf "$root/target/tmp/artifact-cache"
    fi
    echo "$out"
}
ex="$root/examples/python"
build_python hello hello "$ex" "$ex/hello.py"
build_python user_registration user_registration "$ex" "$ex/user_registration.py"
build_python approval approval "$ex" "$ex/approval.py"
build_python fan_out fan_out "$ex" "$ex/fan_out.py"
build_python conformance_guest conformance "$root/tests/guests/python" "$root/tests/guests/python"
