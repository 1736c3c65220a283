#!/usr/bin/env bash
# Installs, idempotently, the independent servers the interop suite runs against:
# grpc-js (npm, into tests/interop/node_modules), a grpc-go server built from Debian's packaged
# sources (GOPATH mode, no module proxy) and nginx-light as a TLS HTTP/2 gRPC proxy.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
need=()
command -v go >/dev/null || need+=(golang-go)
[ -d /usr/share/gocode/src/google.golang.org/grpc ] || need+=(golang-google-grpc-dev)
command -v nginx >/dev/null || need+=(nginx-light)
command -v node >/dev/null || need+=(nodejs)
command -v npm >/dev/null || need+=(npm)
command -v openssl >/dev/null || need+=(openssl)
if [ ${#need[@]} -gt 0 ]; then
    sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get -o DPkg::Lock::Timeout=900 install -y --no-install-recommends "${need[@]}" ||
        { $sudo apt-get -o DPkg::Lock::Timeout=900 update &&
          $sudo apt-get -o DPkg::Lock::Timeout=900 install -y --no-install-recommends "${need[@]}"; }
fi
# grpc-js, pinned, project-local (the server uses raw bytes: no proto-loader needed).
if [ ! -f "$here/node_modules/@grpc/grpc-js/package.json" ]; then
    (cd "$here" && npm install --prefix "$here" --no-audit --no-fund --silent \
        >/dev/null)
fi
# The grpc-go server, rebuilt when its source changes.
bin="$here/build/gogrpc_server"
if [ ! -x "$bin" ] || [ "$here/gogrpc_server.go" -nt "$bin" ]; then
    gopath="$here/build/gopath"
    mkdir -p "$gopath/src/interopserver" "$here/build"
    cp "$here/gogrpc_server.go" "$gopath/src/interopserver/main.go"
    (cd "$gopath/src/interopserver" &&
        GO111MODULE=off GOPATH="$gopath:/usr/share/gocode" GOFLAGS= GOPROXY=off GOCACHE="$here/build/gocache" \
        go build -o "$bin" .)
fi
echo "interop servers installed"
