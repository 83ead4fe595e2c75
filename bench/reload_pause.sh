#!/usr/bin/env bash
# Does a config reload with many routes pause the workers? wrk runs against Portico twice with
# N routes loaded (default 50,000): once quietly, once while routes.yaml is rewritten every
# INTERVAL seconds (each rewrite is parsed, validated and compiled on the control thread, then swapped in).
# Compare the latency percentiles of the two runs.
# usage: bench/reload_pause.sh [build/portico] [routes] [seconds]
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
BIN=$(realpath "${1:-$HERE/../build/portico}")
ROUTES=${2:-50000}
SECS=${3:-15}
INTERVAL=${INTERVAL:-2}  # seconds between two rewrites of routes.yaml
PATH_Q="/api/v1/users/12345/profile?lang=en"
source "$HERE/lib.sh"
bench_setup reload
cat >"$WORK/config.yaml" <<YAML
node: {listen: ["127.0.0.1:19301"], workers: 1}
log: {access: "off", error: "$WORK/logs/portico.log"}
YAML
python3 "$HERE/make_routes.py" "$ROUTES" 19002 >"$WORK/routes.yaml"
start_upstream 19002 1
setsid "$BIN" start -c "$WORK/config.yaml" & PIDS+=($!)
for _ in $(seq 1 200); do curl -s -o /dev/null "http://127.0.0.1:19301$PATH_Q" && break; sleep 0.1; done
run() { taskset -c 1 wrk -t1 -c20 -d"${SECS}s" --latency "http://127.0.0.1:19301$PATH_Q" |
        awk '/Requests\/sec/ {rps=$2} / 50%/ {p50=$2} / 99%/ {p99=$2} /Latency/ {max=$4}
             END {printf "req/s %s  p50 %s  p99 %s  max %s\n", rps, p50, p99, max}'; }
echo "routes loaded: $ROUTES"
echo "quiet:          $(run)"
# Control: no reload, but an unrelated process burning one core for the same share of time.
# On a 2-vCPU VM this alone moves p99, which tells what part of the effect is the machine.
( for i in $(seq 1 $((SECS / INTERVAL))); do timeout 1.8 sh -c 'while :; do :; done'; sleep 0.2; done ) &
SPIN=$!
echo "CPU spinner:    $(run)"
wait "$SPIN" || true
( for i in $(seq 1 $((SECS / INTERVAL))); do echo "# reload $i" >>"$WORK/routes.yaml"; sleep "$INTERVAL"; done ) &
LOOP=$!
echo "reload each ${INTERVAL}s: $(run)"
wait "$LOOP"
sleep 3  # the last reload finishes
grep -c "config reloaded" "$WORK/logs/portico.log" | sed 's/^/reloads applied: /'
grep "config reloaded" "$WORK/logs/portico.log" | sed -n 's/.*compiled in \([0-9]*\) ms.*/\1/p' |
  sort -n | awk '{a[NR]=$1} END {if (NR) printf "compile time per reload: median %d ms, max %d ms\n", a[int((NR+1)/2)], a[NR]}'
grep "config reloaded" "$WORK/logs/portico.log" | sed -n 's/.*stall meanwhile \([0-9]*\) ms.*/\1/p' |
  sort -n | tail -1 | sed 's/^/longest worker event-loop stall during reloads (ms): /'
