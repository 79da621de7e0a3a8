#!/usr/bin/env bash
# Build the web console (console/, Preact + TypeScript + Vite) into console/dist, which the
# host embeds at compile time and serves at /ui (host/src/api/ui.rs). `npm ci` installs the
# versions pinned in console/package-lock.json. Skipped when the sources are unchanged since
# the last build (console/dist/.sources holds their digest), so the host is not compiled
# again for nothing. Needs node and npm (node 20 or later); the host itself builds without
# them (it then serves a page saying how to build the console).
#
#   bash scripts/build-console.sh             # build console/dist (installs node if missing)
#   bash scripts/build-console.sh --chromium  # install Debian's chromium for the console's
#                                             # browser test (tests/console.rs), if missing
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root/console"
apt_install() {
    echo "build-console: installing $*" >&2
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}
if [[ "${1:-}" == "--chromium" ]]; then
    [[ -x /usr/bin/chromium ]] || apt_install chromium
    exit 0
fi
if ! command -v npm >/dev/null; then
    apt_install nodejs npm
fi
if ! node -e 'const [a, b] = process.versions.node.split(".").map(Number); process.exit(a > 20 || (a === 20 && b >= 19) ? 0 : 1)'; then
    echo "build-console: node $(node --version) is too old for Vite 8: install node 20.19 or later" >&2
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
