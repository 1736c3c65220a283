#!/usr/bin/env bash
# Installs Debian's headless Chromium and its WebDriver for the viewer's browser tests (tests/devtools/test_viewer_browser.py).
# Idempotent: does nothing when both are there. Needs root (CI runs as root); otherwise it says so and leaves the
# tests to skip with that reason. Never downloads a browser build of its own: only Debian's packages.
set -euo pipefail
have() { command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; }
if have; then exit 0; fi
if [ "$(id -u)" != 0 ]; then
  echo "install-chromium: not root, cannot apt-get install chromium chromium-driver (the browser tests will skip)" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt_get() { apt-get -o DPkg::Lock::Timeout=900 "$@"; }
if ! apt_get install -y -q --no-install-recommends chromium chromium-driver fonts-dejavu-core >/dev/null; then
  apt_get update -q >/dev/null
  apt_get install -y -q --no-install-recommends chromium chromium-driver fonts-dejavu-core >/dev/null
fi
have || { echo "install-chromium: chromium or chromedriver still missing after apt-get" >&2; exit 1; }
