#!/usr/bin/env bash
# tinyproxy, the real HTTP CONNECT proxy tests/transport/test_proxy.py runs against (skipped without it,
# except in CI).  Idempotent; installs only as root (CI and this project's machines run as root).
set -euo pipefail
if command -v tinyproxy >/dev/null 2>&1 || [ -x /usr/bin/tinyproxy ]; then
    exit 0
fi
if [ "$(id -u)" != 0 ]; then
    echo "tinyproxy is not installed; as root: apt-get install tinyproxy-bin" >&2
    exit 0
fi
apt() { apt-get -o DPkg::Lock::Timeout=900 "$@"; }
# tinyproxy-bin is the program without the system service; older releases ship only tinyproxy.
apt install -y tinyproxy-bin || apt install -y tinyproxy || {
    apt update && { apt install -y tinyproxy-bin || apt install -y tinyproxy; }
}
