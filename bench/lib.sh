# Shared by the bench scripts: a work dir cleaned up on exit, process groups stopped by PID,
# and a one-worker nginx "return 200 hello" upstream.
# usage: source bench/lib.sh; bench_setup NAME; start_upstream PORT [CPU];
#        write_nginx_proxy PORT UPSTREAM_PORT; write_portico_config PORT UPSTREAM_PORT

bench_setup() {  # NAME: the work dir is /tmp/portico-NAME.XXXXXX, kept when KEEP is set
  WORK=$(mktemp -d "/tmp/portico-$1.XXXXXX")
  PIDS=()
  trap bench_cleanup EXIT
  mkdir -p "$WORK/logs"
}

bench_cleanup() {
  local p
  for p in "${PIDS[@]}"; do kill -TERM -- "-$p" 2>/dev/null || true; done
  sleep 0.5
  [[ -n ${KEEP:-} ]] || rm -rf "$WORK"
}

start_upstream() {  # PORT [CPU]
  local port=$1 cpus=${2:-0-1}
  cat >"$WORK/up.conf" <<CONF
worker_processes 1; daemon off; master_process off; error_log $WORK/logs/up.log; pid $WORK/up.pid;
events { worker_connections 1024; }
http { access_log off; keepalive_requests 1000000;
  server { listen 127.0.0.1:$port; location / { return 200 "hello"; } } }
CONF
  setsid taskset -c "$cpus" nginx -p "$WORK" -c "$WORK/up.conf" &
  PIDS+=($!)
}

write_nginx_proxy() {  # PORT UPSTREAM_PORT: $WORK/proxy.conf, one nginx worker, upstream keepalive
  cat >"$WORK/proxy.conf" <<CONF
worker_processes 1; daemon off; master_process off; error_log $WORK/logs/px.log; pid $WORK/px.pid;
events { worker_connections 1024; }
http { access_log off; keepalive_requests 1000000;
  upstream up { server 127.0.0.1:$2; keepalive 64; }
  server { listen 127.0.0.1:$1; location / { proxy_pass http://up; proxy_http_version 1.1;
    proxy_set_header Connection ""; } } }
CONF
}

write_portico_config() {  # PORT UPSTREAM_PORT: $WORK/config.yaml (one worker) + routes.yaml (1 route)
  cat >"$WORK/config.yaml" <<YAML
node: {listen: ["127.0.0.1:$1"], workers: 1}
log: {access: "off", error: "$WORK/logs/portico.log"}
control: {listen: "127.0.0.1:19390"}
admin: {listen: "127.0.0.1:19391"}
YAML
  python3 "$(dirname "${BASH_SOURCE[0]}")/make_routes.py" 1 "$2" >"$WORK/routes.yaml"
}
