#!/usr/bin/env bash
# Repeatable CPU cost: user-space instructions per proxied request, counted by callgrind
# (instruction counts do not move with machine load the way req/s and us/req do), for Portico
# and for nginx as a plain proxy, both in front of the same nginx upstream.
# usage: bench/callgrind.sh [build/portico] [seconds]   (MANY_ROUTES [10000]: the third row's routes)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
BIN=$(realpath "${1:-$HERE/../build/portico}")
SECS=${2:-10}
PATH_Q="/api/v1/users/12345/profile?lang=en&fields=name,avatar,level&page=2"
for b in valgrind callgrind_control callgrind_annotate nginx wrk; do
  command -v "$b" >/dev/null || { echo "missing $b (apt-get install valgrind nginx wrk)" >&2; exit 1; }
done
source "$HERE/lib.sh"
bench_setup cg
write_nginx_proxy 19080 19001
write_portico_config 19300 19001
mkdir -p "$WORK/many"
cp "$WORK/config.yaml" "$WORK/many/config.yaml"
python3 "$HERE/make_routes.py" "${MANY_ROUTES:-10000}" 19001 >"$WORK/many/routes.yaml"

start_upstream 19001
measure() {  # name port cmd...
  local name=$1 port=$2; shift 2
  setsid valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$WORK/cg.$name" "$@" \
    >"$WORK/logs/$name.vg" 2>&1 & local pid=$!
  PIDS+=($pid)
  for _ in $(seq 1 600); do curl -s -o /dev/null "http://127.0.0.1:$port/" && break; sleep 0.2; done
  wrk -t1 -c10 -d2s "http://127.0.0.1:$port$PATH_Q" >/dev/null  # warm-up, not counted
  callgrind_control -i on "$pid" >/dev/null 2>&1
  callgrind_control -z "$pid" >/dev/null 2>&1
  local reqs
  reqs=$(wrk -t1 -c10 -d"${SECS}s" "http://127.0.0.1:$port$PATH_Q" | awk '/requests in/ {print $1}')
  callgrind_control -d "$pid" >/dev/null 2>&1
  callgrind_control -i off "$pid" >/dev/null 2>&1
  sleep 1
  local ir
  ir=$(awk '/^(summary|totals):/ {print $2; exit}' "$WORK/cg.$name.1")
  kill -TERM -- "-$pid" 2>/dev/null || true
  printf '%-8s %9d requests  %8.0f instructions/request\n' "$name" "$reqs" "$(echo "$ir / $reqs" | bc -l)"
}
measure nginx 19080 nginx -p "$WORK" -c "$WORK/proxy.conf"
measure portico 19300 "$BIN" start -c "$WORK/config.yaml"
measure portico_${MANY_ROUTES:-10000}routes 19300 "$BIN" start -c "$WORK/many/config.yaml"
