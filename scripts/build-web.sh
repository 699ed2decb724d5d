#!/usr/bin/env bash
# Builds the page `mapper dashboard` serves: `npm ci` (the versions locked in
# cli/dashboard-web/package-lock.json, from the npm registry) and esbuild into
# cli/dashboard-web/dist/, which cli/build.rs embeds into the `mapper` binary. Run it
# before cargo builds the CLI; scripts/test.sh and scripts/demo.sh do. Installs node and
# npm (Debian) when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

ensure_node
WEB=cli/dashboard-web
# npm ci again only when the lock file changed since the last install.
if ! cmp -s "$WEB/package-lock.json" "$WEB/node_modules/.mapper-lock.json"; then
  step "npm ci (cli/dashboard-web)"
  (cd "$WEB" && npm ci --no-audit --no-fund --loglevel=error)
  cp "$WEB/package-lock.json" "$WEB/node_modules/.mapper-lock.json"
fi
step "bundling the dashboard page (esbuild)"
(cd "$WEB" && node build.mjs)
