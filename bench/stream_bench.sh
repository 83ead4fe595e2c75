#!/usr/bin/env bash
# Portico's TLV stream proxy beside nginx's plain `stream` proxy, in one run: both proxy to the
# same portico-tlv-echo; each proxy alone on cpu0 (Portico with one worker), the load generator
# and the echo share cpu1. Portico decodes and checks every frame (protocol tlv); nginx only
# relays bytes. Rounds are interleaved; besides frames/s it prints each proxy's CPU per frame.
# Then a fixed rate for added latency (minus direct), and the RSS of 9,000 idle connections.
#   usage: bench/stream_bench.sh [BUILD_DIR=build] [SECONDS=5] [ROUNDS=3] [IDLE=9000]
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
SECS=${2:-5}
ROUNDS=${3:-3}
IDLE=${4:-9000}
CONNS=${CONNS:-50}
INFLIGHT=${INFLIGHT:-4}
BODY=${BODY:-256}
RATE=${RATE:-10000}
ECHO_PORT=${ECHO_PORT:-19200}
NGINX_PORT=${NGINX_PORT:-19300}
PORTICO_PORT=${PORTICO_PORT:-19400}
[[ -f /usr/lib/nginx/modules/ngx_stream_module.so ]] ||
  { echo "missing nginx's stream module (apt-get install libnginx-mod-stream)" >&2; exit 1; }
source bench/lib.sh
bench_setup stream
ulimit -n "$(ulimit -Hn)"

setsid taskset -c 1 "$BUILD/portico-tlv-echo" --listen "127.0.0.1:$ECHO_PORT" >"$WORK/logs/echo.log" 2>&1 &
ECHO_PID=$!
PIDS+=($ECHO_PID)
cat >"$WORK/nginx.conf" <<CONF
load_module /usr/lib/nginx/modules/ngx_stream_module.so;
worker_processes 1; daemon off; master_process off; error_log $WORK/logs/nginx.log; pid $WORK/nginx.pid;
worker_rlimit_nofile 40000;
events { worker_connections 20000; }
stream { server { listen 127.0.0.1:$NGINX_PORT; proxy_pass 127.0.0.1:$ECHO_PORT; } }
CONF
setsid taskset -c 0 nginx -p "$WORK" -c "$WORK/nginx.conf" &
NGINX_PID=$!
PIDS+=($NGINX_PID)
cat >"$WORK/config.yaml" <<CONF
node: {listen: ["127.0.0.1:$((PORTICO_PORT + 1))"], stream_listen: ["127.0.0.1:$PORTICO_PORT"], workers: 1}
config: {provider: yaml, file: routes.yaml}
admin: {listen: "127.0.0.1:$((PORTICO_PORT + 2))", keys: [{key: bench-admin-key-0123456789, role: admin}]}
control: {listen: "127.0.0.1:$((PORTICO_PORT + 3))"}
log: {access: "off", error: "$WORK/logs/portico.log", level: warn}
CONF
cat >"$WORK/routes.yaml" <<CONF
stream_routes:
  - id: echo
    upstream: {nodes: {"127.0.0.1:$ECHO_PORT": 1}}
    protocol: {name: tlv}
CONF
setsid taskset -c 0 "$BUILD/portico" start -c "$WORK/config.yaml" >"$WORK/logs/portico.out" 2>&1 &
PORTICO_PID=$!
PIDS+=($PORTICO_PID)
sleep 1

ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }  # CPU time in 1/100 s
us_per_frame() { awk -v t="$1" -v f="$2" 'BEGIN { printf "%.2f", (f > 0 ? t * 10000 / f : 0) }'; }
field() { sed -n "s/.*$1=\([0-9.]*\).*/\1/p" <<<"$2"; }
proxy_pid() { case $1 in "$NGINX_PORT") echo "$NGINX_PID" ;; "$PORTICO_PORT") echo "$PORTICO_PID" ;; *) echo "" ;; esac; }

run() {  # NAME PORT [extra load args]: one measurement, one table row
  local name=$1 port=$2 pid p0=0 p1=0
  shift 2
  pid=$(proxy_pid "$port")
  [[ -n $pid ]] && p0=$(ticks "$pid")
  local e0 e1 out fps frames
  e0=$(ticks "$ECHO_PID")
  out=$(taskset -c 1 "$BUILD/portico-tlv-load" --connect "127.0.0.1:$port" --connections "$CONNS" \
    --inflight "$INFLIGHT" --body "$BODY" --duration "$SECS" --warmup 1 "$@" | tail -1)
  e1=$(ticks "$ECHO_PID")
  [[ -n $pid ]] && p1=$(ticks "$pid")
  fps=$(field frames_per_s "$out")
  frames=$(awk -v f="$fps" -v s="$SECS" 'BEGIN { print f * (s + 1) }')  # ticks include warm-up
  printf "%-8s %10s %8s %8s %8s %9s %9s %10s\n" "$name" "$fps" "$(field p50_us "$out")" \
    "$(field p99_us "$out")" "$(field p999_us "$out")" "$(field load_cpu_us_per_frame "$out")" \
    "$(us_per_frame $((e1 - e0)) "$frames")" \
    "$([[ -n $pid ]] && us_per_frame $((p1 - p0)) "$frames" || echo -)"
}

header() {
  printf "%-8s %10s %8s %8s %8s %9s %9s %10s\n" target frames/s p50_us p99_us p999_us \
    load_us/f echo_us/f proxy_us/f
}

echo "== closed loop: $CONNS connections x $INFLIGHT in flight, $BODY-byte bodies, ${SECS}s rounds"
header
for ((r = 1; r <= ROUNDS; r++)); do
  run direct "$ECHO_PORT"
  run nginx "$NGINX_PORT"
  run portico "$PORTICO_PORT"
done
echo "== fixed rate: $RATE frames/s over $CONNS connections, round-trip latency"
header
for ((r = 1; r <= ROUNDS; r++)); do
  run direct "$ECHO_PORT" --rate "$RATE"
  run nginx "$NGINX_PORT" --rate "$RATE"
  run portico "$PORTICO_PORT" --rate "$RATE"
done
if ((IDLE > 0)); then
  echo "== $IDLE idle client connections (one frame echoed on each, then held)"
  python3 bench/stream_idle.py "$NGINX_PORT" "$NGINX_PID" nginx "$IDLE"
  python3 bench/stream_idle.py "$PORTICO_PORT" "$PORTICO_PID" portico "$IDLE"
fi
