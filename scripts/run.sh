#!/usr/bin/env bash
# Run the product: build the example guests, the web console and the host, then serve on
# the embedded sled store (./durable-data); the console is at http://127.0.0.1:7700/ui/.
# Extra arguments go to `durable-host serve`
# (e.g. --listen 127.0.0.1:7700 --allow-outbound 127.0.0.1:9000).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/build-guests.sh >/dev/null
bash scripts/build-console.sh
cargo build -p durable-host
cat <<'MSG'

Examples are built. The first start writes an admin API key to <data-dir>/admin.key
(./durable-data/admin.key by default); deploy the examples with it:
  KEY="$(cat durable-data/admin.key)"
  curl -H "Authorization: Bearer $KEY" -X PUT --data-binary @target/wasm/wasm32-wasip2/release/hello.wasm http://127.0.0.1:7700/v1/functions/hello
  curl -H "Authorization: Bearer $KEY" -X PUT --data-binary @target/wasm/wasm32-wasip2/release/user_registration.wasm http://127.0.0.1:7700/v1/functions/user-registration
  curl -H "Authorization: Bearer $KEY" -X PUT --data-binary @target/wasm/wasm32-wasip2/release/approval.wasm http://127.0.0.1:7700/v1/functions/approval
or with the client, which reads ./durable-data/admin.key itself:
  target/debug/durable-host deploy hello target/wasm/wasm32-wasip2/release/hello.wasm
or in the web console, http://127.0.0.1:7700/ui/ (sign in with that key).

MSG
exec target/debug/durable-host serve "$@"
