#!/usr/bin/env bash
# `make run`: the demo backend plus Portico on the embedded default config. Ctrl-C stops both.
set -euo pipefail
BIN=${1:-build/portico}
CONFIG=${2:-conf/config.yaml}
cd "$(dirname "$0")/.."

python3 scripts/demo_backend.py 9100 &
BACKEND=$!
for _ in $(seq 1 50); do
  curl -fs -o /dev/null http://127.0.0.1:9100/ && break
  sleep 0.1
done
"$BIN" start -c "$CONFIG" &
GATEWAY=$!
trap 'kill -TERM $GATEWAY $BACKEND 2>/dev/null; wait $GATEWAY $BACKEND 2>/dev/null; exit 0' INT TERM
trap 'kill -TERM $GATEWAY $BACKEND 2>/dev/null' EXIT

for _ in $(seq 1 50); do
  curl -fs -o /dev/null http://127.0.0.1:9080/hello && break
  sleep 0.1
done
cat <<MSG

Portico is listening on :9080 in front of a demo backend on :9100. Try:

  curl -i http://127.0.0.1:9080/hello
  curl -s http://127.0.0.1:9080/api/v1/chat -d '{"text":"hi"}' -H 'Content-Type: application/json'
  build/portico route-explain -c $CONFIG --method GET --host example.com --uri /users/42

Edit conf/routes.yaml while it runs: changes apply without a restart. Ctrl-C stops everything.

MSG
wait $GATEWAY
