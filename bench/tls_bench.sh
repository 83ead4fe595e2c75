#!/usr/bin/env bash
# HTTPS termination: Portico beside nginx, each alone on cpu0 with one worker, the same
# certificate (ECDSA P-256) and the same "return 200 hello" nginx upstream on cpu1; wrk on cpu1.
#   keep-alive  requests on 50 open TLS connections: CPU per request (record layer + proxying)
#   handshake   one request per connection (Connection: close): CPU per new TLS connection
#   upstream    plain HTTP clients, HTTPS to the upstream (an nginx `listen ssl` on cpu1) over
#               kept-alive TLS connections: CPU per request of the proxy's client side of TLS
# CPU comes from /proc/PID/stat (user + system ticks) over the counted seconds.
#   usage: bench/tls_bench.sh [build/portico] [seconds=5] [rounds=2]
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
BIN=$(realpath "${1:-$HERE/../build/portico}")
SECS=${2:-5}
ROUNDS=${3:-2}
for b in nginx wrk openssl; do
  command -v "$b" >/dev/null || { echo "missing $b (apt-get install nginx wrk openssl)" >&2; exit 1; }
done
source "$HERE/lib.sh"
bench_setup tls
start_upstream 19001 1
# wrk sends the URL's host as SNI: the certificate is for 127.0.0.1, as a name.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
  -keyout "$WORK/cert.key" -out "$WORK/cert.pem" -subj /CN=127.0.0.1 2>/dev/null
cat >"$WORK/up-tls.conf" <<CONF
worker_processes 1; daemon off; master_process off; error_log $WORK/logs/up-tls.log; pid $WORK/up-tls.pid;
events { worker_connections 1024; }
http { access_log off; keepalive_requests 1000000;
  server { listen 127.0.0.1:19002 ssl; ssl_certificate $WORK/cert.pem;
    ssl_certificate_key $WORK/cert.key; location / { return 200 "hello"; } } }
CONF
setsid taskset -c 1 nginx -p "$WORK" -c "$WORK/up-tls.conf" &
PIDS+=($!)
write_portico_config 19300 19001
python3 - "$WORK" <<'PY'
import json, sys
w = sys.argv[1]
cfg = open(f"{w}/config.yaml").read().replace(
    'listen: ["127.0.0.1:19300"]',
    'listen: ["127.0.0.1:19301", {addr: "127.0.0.1:19443", ssl: true}]')
open(f"{w}/config.yaml", "w").write(cfg)
ssl = {"id": "bench", "snis": ["127.0.0.1"], "cert": open(f"{w}/cert.pem").read(),
       "key": open(f"{w}/cert.key").read()}
tls_up = {"id": "tls-up", "uri": "/tls-up/*", "upstream": {
    "scheme": "https", "nodes": {"127.0.0.1:19002": 1},
    "keepalive_pool": {"size": 64, "requests": 1000000}}}
with open(f"{w}/routes.yaml") as f:
    text = f.read()
text = text.replace("routes:\n", "routes:\n  - " + json.dumps(tls_up) + "\n", 1)
with open(f"{w}/routes.yaml", "w") as f:
    f.write(text + "ssls:\n  - " + json.dumps(ssl) + "\n")
PY
cat >"$WORK/proxy.conf" <<CONF
worker_processes 1; daemon off; master_process off; error_log $WORK/logs/px.log; pid $WORK/px.pid;
events { worker_connections 1024; }
http { access_log off; keepalive_requests 1000000;
  upstream up { server 127.0.0.1:19001; keepalive 64; }
  server { listen 127.0.0.1:19444 ssl; ssl_certificate $WORK/cert.pem;
    ssl_certificate_key $WORK/cert.key; ssl_protocols TLSv1.2 TLSv1.3;
    location / { proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection ""; } }
  upstream up_tls { server 127.0.0.1:19002; keepalive 64; }
  server { listen 127.0.0.1:19445;
    location / { proxy_pass https://up_tls; proxy_http_version 1.1; proxy_set_header Connection "";
      proxy_ssl_session_reuse on; } } }
CONF
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
HZ=$(getconf CLK_TCK)

run() {  # NAME PID PORT SUITE
  local extra=() url="https://127.0.0.1:$3/api/v1/users/12345/profile"
  [[ $4 == handshake ]] && extra=(-H "Connection: close")
  [[ $4 == upstream ]] && url="http://127.0.0.1:$3/tls-up/x"
  taskset -c 1 wrk -t1 -c50 -d"$((SECS + 2))"s "${extra[@]}" "$url" >"$WORK/wrk.$1.$4" &
  local load=$!
  sleep 1
  local t0 r0 t1 r1
  t0=$(ticks "$2"); r0=$(date +%s.%N)
  sleep "$SECS"
  t1=$(ticks "$2"); r1=$(date +%s.%N)
  wait "$load"
  local rps errors
  rps=$(awk '/Requests\/sec/ {print $2}' "$WORK/wrk.$1.$4")
  errors=$(awk '/Non-2xx|Socket errors/ {print}' "$WORK/wrk.$1.$4" | tr '\n' ' ')
  awk -v n="$1" -v s="$4" -v rps="$rps" -v t="$((t1 - t0))" -v hz="$HZ" -v r0="$r0" -v r1="$r1" \
    -v e="$errors" 'BEGIN { cpu = t / hz; printf "%-8s %-10s %10.0f %12.1f  %s\n", n, s, rps,
      cpu / (rps * (r1 - r0)) * 1e6, e }'
}

setsid taskset -c 0 "$BIN" start -c "$WORK/config.yaml" >"$WORK/logs/portico.out" 2>&1 &
PORTICO=$!
PIDS+=($PORTICO)
setsid taskset -c 0 nginx -p "$WORK" -c "$WORK/proxy.conf" &
NGINX=$!
PIDS+=($NGINX)
sleep 1
printf "%-8s %-10s %10s %12s\n" proxy suite req/s "CPU us/req"
for round in $(seq "$ROUNDS"); do
  for suite in keep-alive handshake; do
    run portico "$PORTICO" 19443 "$suite"
    run nginx "$NGINX" 19444 "$suite"
  done
  run portico "$PORTICO" 19301 upstream
  run nginx "$NGINX" 19445 upstream
done
