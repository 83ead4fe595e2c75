#!/usr/bin/env bash
# System calls per proxied HTTP request, Portico beside nginx, counted by the kernel's syscall
# tracepoints (perf stat) under the same wrk load. On this VM a system call costs several times
# its native price, so their count decides most of the CPU a request costs; unlike req/s it does
# not move with the machine's load.
#   usage: bench/syscalls.sh [build/portico] [connections=50]
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
BIN=$(realpath "${1:-$HERE/../build/portico}")
CONNS=${2:-50}
for b in perf nginx wrk; do
  command -v "$b" >/dev/null || { echo "missing $b (apt-get install linux-perf nginx wrk)" >&2; exit 1; }
done
source "$HERE/lib.sh"
bench_setup syscalls
start_upstream 19001 1
write_portico_config 19300 19001
write_nginx_proxy 19080 19001
setsid taskset -c 0 "$BIN" start -c "$WORK/config.yaml" >"$WORK/logs/portico.out" 2>&1 &
PORTICO=$!
PIDS+=($PORTICO)
setsid taskset -c 0 nginx -p "$WORK" -c "$WORK/proxy.conf" &
NGINX=$!
PIDS+=($NGINX)
sleep 1
EVENTS=recvfrom,sendmsg,sendto,writev,readv,read,write,epoll_wait,epoll_ctl
printf "%-8s %8s" proxy requests
for e in ${EVENTS//,/ }; do printf " %10s" "$e"; done
printf " %10s\n" "all/req"
for target in "portico $PORTICO 19300" "nginx $NGINX 19080"; do
  set -- $target
  taskset -c 1 wrk -t1 -c"$CONNS" -d6s "http://127.0.0.1:$3/api/v1/users/12345/profile" \
    >"$WORK/wrk.$1" &
  load=$!
  sleep 1.5
  perf stat -x, -e "$(sed 's/\([a-z_]*\)/syscalls:sys_enter_\1/g' <<<"$EVENTS")" -p "$2" \
    -o "$WORK/stat.$1" -- sleep 3
  wait "$load"
  rps=$(awk '/Requests\/sec/ {print $2}' "$WORK/wrk.$1")
  reqs=$(awk -v r="$rps" 'BEGIN { printf "%d", r * 3 }')  # requests in the 3 s counted
  printf "%-8s %8s" "$1" "$reqs"
  awk -F, -v reqs="$reqs" '/syscalls:/ { n = $1 + 0; total += n; printf " %10.2f", n / reqs }
    END { printf " %10.2f\n", total / reqs }' "$WORK/stat.$1"
done
echo "(per request; requests estimated from wrk's req/s over the 3 counted seconds)"
