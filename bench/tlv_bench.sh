#!/usr/bin/env bash
# TLV frame throughput and latency: portico-tlv-load straight to portico-tlv-echo, and through a
# plain nginx `stream` proxy (the yardstick for Portico's TLV gateway). nginx alone on cpu0; the
# load generator and the echo backend share cpu1. Rounds are interleaved; besides frames/s it
# prints each process's CPU cost per frame, which the machine's other load disturbs far less.
#   usage: bench/tlv_bench.sh [BUILD_DIR=build] [SECONDS=5] [ROUNDS=3]
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
SECS=${2:-5}
ROUNDS=${3:-3}
CONNS=${CONNS:-50}
INFLIGHT=${INFLIGHT:-4}
BODY=${BODY:-256}
RATE=${RATE:-10000}
ECHO_PORT=${ECHO_PORT:-19200}
NGINX_PORT=${NGINX_PORT:-19300}
source bench/lib.sh
bench_setup tlv

setsid taskset -c 1 "$BUILD/portico-tlv-echo" --listen "127.0.0.1:$ECHO_PORT" >"$WORK/logs/echo.log" 2>&1 &
ECHO_PID=$!
PIDS+=($ECHO_PID)
cat >"$WORK/nginx.conf" <<CONF
load_module /usr/lib/nginx/modules/ngx_stream_module.so;
worker_processes 1; daemon off; master_process off; error_log $WORK/logs/nginx.log; pid $WORK/nginx.pid;
events { worker_connections 4096; }
stream { server { listen 127.0.0.1:$NGINX_PORT; proxy_pass 127.0.0.1:$ECHO_PORT; } }
CONF
setsid taskset -c 0 nginx -p "$WORK" -c "$WORK/nginx.conf" &
NGINX_PID=$!
PIDS+=($NGINX_PID)
sleep 0.5

ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }  # CPU time in 1/100 s
us_per_frame() { awk -v t="$1" -v f="$2" 'BEGIN { printf "%.2f", (f > 0 ? t * 10000 / f : 0) }'; }
field() { sed -n "s/.*$1=\([0-9.]*\).*/\1/p" <<<"$2"; }

run() {  # NAME PORT [extra load args]: one measurement, one table row
  local name=$1 port=$2
  shift 2
  local e0 n0 e1 n1 out fps frames
  e0=$(ticks "$ECHO_PID")
  n0=$(ticks "$NGINX_PID")
  out=$(taskset -c 1 "$BUILD/portico-tlv-load" --connect "127.0.0.1:$port" --connections "$CONNS" \
    --inflight "$INFLIGHT" --body "$BODY" --duration "$SECS" --warmup 1 "$@" | tail -1)
  e1=$(ticks "$ECHO_PID")
  n1=$(ticks "$NGINX_PID")
  fps=$(field frames_per_s "$out")
  frames=$(awk -v f="$fps" -v s="$SECS" 'BEGIN { print f * (s + 1) }')  # ticks include warm-up
  printf "%-8s %10s %8s %8s %8s %9s %9s %9s\n" "$name" "$fps" "$(field p50_us "$out")" \
    "$(field p99_us "$out")" "$(field p999_us "$out")" "$(field load_cpu_us_per_frame "$out")" \
    "$(us_per_frame $((e1 - e0)) "$frames")" \
    "$([[ $port == "$NGINX_PORT" ]] && us_per_frame $((n1 - n0)) "$frames" || echo -)"
}

header() {
  printf "%-8s %10s %8s %8s %8s %9s %9s %9s\n" target frames/s p50_us p99_us p999_us \
    load_us/f echo_us/f proxy_us/f
}

echo "== closed loop: $CONNS connections x $INFLIGHT in flight, $BODY-byte bodies, ${SECS}s rounds"
header
for ((r = 1; r <= ROUNDS; r++)); do
  run direct "$ECHO_PORT"
  run nginx "$NGINX_PORT"
done
echo "== fixed rate: $RATE frames/s over $CONNS connections, round-trip latency"
header
for ((r = 1; r <= ROUNDS; r++)); do
  run direct "$ECHO_PORT" --rate "$RATE"
  run nginx "$NGINX_PORT" --rate "$RATE"
done
