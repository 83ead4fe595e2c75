# Shared by the bench scripts: a work dir cleaned up on exit, process groups stopped by PID,
# and a one-worker nginx "return 200 hello" upstream.
# usage: source bench/lib.sh; bench_setup NAME; start_upstream PORT [CPU]

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
