#!/usr/bin/env bash
# make demo: start the local receiver with its viewer on free ports, run every example against it, show what
# arrived, and leave the viewer running for the browser (Ctrl-C stops it; DEMO_WAIT=0 stops at once).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
tmp=$(mktemp -d)
trap 'kill "$rx" 2>/dev/null || true; wait "$rx" 2>/dev/null || true; rm -rf "$tmp"' EXIT

# --ui-port 0 picks a free port (8686 may be taken); the address is printed below.
"$BIN/highlight-logging" serve --ui --print --port 0 --http-port 0 --ui-port "${DEMO_UI_PORT:-0}" \
  --ready-file "$tmp/port" --jsonl "$tmp/received.jsonl" >"$tmp/receiver.log" 2>&1 &
rx=$!
for _ in $(seq 100); do [ -s "$tmp/port" ] && grep -q '^ui ' "$tmp/port" && break; sleep 0.1; done
[ -s "$tmp/port" ] || { echo "receiver did not start"; cat "$tmp/receiver.log"; exit 1; }
port=$(head -n 1 "$tmp/port")
ui=$(sed -n 's/^ui //p' "$tmp/port")
export OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:$port"
export OTEL_SERVICE_NAME="highlight-logging-demo"

for example in examples/*_app.py; do
  echo "== running $example"
  "$BIN/python" "$example"
done

echo
echo "== what the local receiver got (OTLP/gRPC on 127.0.0.1:$port)"
cat "$tmp/receiver.log"
echo
echo "== $(grep -c '"kind": *"log"' "$tmp/received.jsonl" || true) log records and $(grep -c '"kind": *"span"' "$tmp/received.jsonl" || true) exception spans arrived"
echo
echo "== open the viewer: $ui"
echo "   Logs (filters, live tail), Errors (grouped, with stack traces) and Requests (everything of one request)."
echo "   Run your own app against it: OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:$port python app.py"
if [ "${DEMO_WAIT:-}" != 0 ] && [ -t 0 ]; then
  echo "   Press Ctrl-C to stop."
  wait "$rx" || true
fi
