#!/usr/bin/env bash
# make demo: start the local receiver on a free port, run every example against it, show what arrived.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
tmp=$(mktemp -d)
trap 'kill "$rx" 2>/dev/null || true; wait "$rx" 2>/dev/null || true; rm -rf "$tmp"' EXIT

"$BIN/highlight-logging" serve --port 0 --ready-file "$tmp/port" --jsonl "$tmp/received.jsonl" >"$tmp/receiver.log" 2>&1 &
rx=$!
for _ in $(seq 100); do [ -s "$tmp/port" ] && break; sleep 0.1; done
[ -s "$tmp/port" ] || { echo "receiver did not start"; cat "$tmp/receiver.log"; exit 1; }
port=$(cat "$tmp/port")
export OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:$port"
export OTEL_SERVICE_NAME="highlight-logging-demo"

for example in examples/*_app.py; do
  echo "== running $example"
  "$BIN/python" "$example"
done

kill -TERM "$rx"; wait "$rx" || true
echo
echo "== what the local receiver got (OTLP/gRPC on 127.0.0.1:$port)"
cat "$tmp/receiver.log"
echo
echo "== $(grep -c '"kind": *"log"' "$tmp/received.jsonl" || true) log records and $(grep -c '"kind": *"span"' "$tmp/received.jsonl" || true) exception spans arrived"
