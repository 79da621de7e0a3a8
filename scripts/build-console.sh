#!/usr/bin/env bash
# Build the web console (console/, Preact + TypeScript + Vite) into console/dist, which the
# host embeds at compile time and serves at /ui (host/src/api/ui.rs). `npm ci` installs the
# versions pinned in console/package-lock.json. Skipped when the sources are unchanged since
# the last build (console/dist/.sources holds their digest), so the host is not compiled
# again for nothing. Needs node and npm (node 20 or later); the host itself builds without
# them (it then serves a page saying how to build the console).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root/console"
if ! command -v npm >/dev/null; then
    echo "build-console: npm is missing: install node 20+ (apt-get install nodejs npm)" >&2
    exit 1
fi
digest="$(find package.json package-lock.json tsconfig.json vite.config.ts index.html src -type f -print0 \
    | sort -z | xargs -0 sha256sum | sha256sum | cut -d' ' -f1)"
if [[ -f dist/index.html && "$(cat dist/.sources 2>/dev/null)" == "$digest" && -d node_modules ]]; then
    exit 0
fi
npm ci --no-audit --no-fund --loglevel=error
npm run --silent build >/dev/null
echo "$digest" >dist/.sources
echo "build-console: built console/dist" >&2
