#!/usr/bin/env bash
# Makes sure the console's browser test (tests/tests/e2e/console.rs) can run: Debian's Chromium at
# /usr/bin/chromium (apt-get, when missing and this is root on a Debian-like machine), and
# playwright-core, pinned in tests/console/package-lock.json, in tests/console/node_modules (npm
# ci). playwright-core drives the system Chromium; it downloads no browser of its own.
set -euo pipefail

cd "$(dirname "$0")/.."
CHROMIUM=${CHROMIUM_BIN:-/usr/bin/chromium}

if [ ! -x "$CHROMIUM" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "ensure-chromium: installing chromium (apt-get)" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  fi
  if [ ! -x "$CHROMIUM" ]; then
    echo "ensure-chromium: no Chromium at $CHROMIUM: install it (e.g. sudo apt-get install chromium)" >&2
    echo "                 or set CHROMIUM_BIN" >&2
    exit 1
  fi
fi

if ! command -v npm >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "ensure-chromium: installing nodejs and npm (apt-get)" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null
  else
    echo "ensure-chromium: node and npm are missing: install Node.js 18 or later" >&2
    exit 1
  fi
fi

# `npm ci` installs exactly the lock file's version; skip it when that one is there already.
pkg=tests/console/node_modules/playwright-core/package.json
wanted=$(node -p 'require("./tests/console/package.json").dependencies["playwright-core"]')
have=$(node -p "require('./$pkg').version" 2>/dev/null || true)
if [ "$have" != "$wanted" ]; then
  echo "ensure-chromium: npm ci in tests/console (playwright-core $wanted)" >&2
  (cd tests/console && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --silent)
fi
