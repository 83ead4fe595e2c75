#!/usr/bin/env bash
# `make run`: the demo backend plus Portico on the embedded default config. Ctrl-C stops both.
set -euo pipefail
BIN=${1:-build/portico}
CONFIG=${2:-conf/config.yaml}
cd "$(dirname "$0")/.."

python3 scripts/demo_backend.py 9100 &
BACKEND=$!
"$(dirname "$BIN")/portico-im-demo" --listen 127.0.0.1:9201 --name im-demo >/dev/null &
IM_BACKEND=$!
for _ in $(seq 1 50); do
  curl -fs -o /dev/null http://127.0.0.1:9100/ && break
  sleep 0.1
done
# The gateway writes a generated Admin API key into its config file on first start: it runs on a
# copy under build/ (routes still come from conf/routes.yaml, watched), so the repo stays clean.
if [[ "$CONFIG" == conf/config.yaml ]]; then
  RUN_CONFIG=build/demo/config.yaml
  mkdir -p build/demo
  # A copy older than conf/config.yaml is made again (a new key is then generated).
  if [[ ! -f $RUN_CONFIG || conf/config.yaml -nt $RUN_CONFIG ]]; then
    sed "s|^\(  file: \)routes.yaml|\1$PWD/conf/routes.yaml|" conf/config.yaml >"$RUN_CONFIG"
  fi
  CONFIG=$RUN_CONFIG
fi
"$BIN" start -c "$CONFIG" &
GATEWAY=$!
trap 'kill -TERM $GATEWAY $BACKEND $IM_BACKEND 2>/dev/null; wait $GATEWAY $BACKEND $IM_BACKEND 2>/dev/null; exit 0' INT TERM
trap 'kill -TERM $GATEWAY $BACKEND $IM_BACKEND 2>/dev/null' EXIT

for _ in $(seq 1 50); do
  curl -fs -o /dev/null http://127.0.0.1:9080/hello && break
  sleep 0.1
done
cat <<MSG

Portico is listening on :9080 in front of a demo backend on :9100. Try:

  curl -i http://127.0.0.1:9080/hello
  curl -s http://127.0.0.1:9080/api/v1/chat -d '{"text":"hi"}' -H 'Content-Type: application/json'
  build/portico route-explain -c $CONFIG --method GET --host example.com --uri /users/42
  curl -s http://127.0.0.1:9090/v1/health          # control API; /metrics for Prometheus
  curl -s http://127.0.0.1:9180/apisix/admin/routes -H "X-API-KEY: \$(grep -m1 -o '[0-9a-f]\{32\}' $CONFIG)"

IM chat through the TLV stream gateway (:9200 -> portico-im-demo on :9201), two terminals:

  python3 demo/im_chat.py --connect 127.0.0.1:9200 --uid 1001    # then type: 1002 hello
  python3 demo/im_chat.py --connect 127.0.0.1:9200 --uid 1002

and a web user, JSON over WebSocket through the tlv-bridge route (docs/bridge.md):

  /usr/bin/python3 demo/im_web_chat.py --url ws://127.0.0.1:9080/im/ws --uid 1003

Edit conf/routes.yaml while it runs: changes apply without a restart. Ctrl-C stops everything.

MSG
wait $GATEWAY
