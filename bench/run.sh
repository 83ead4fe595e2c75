#!/usr/bin/env bash
# `make bench`: Portico beside nginx (B), the OpenResty-style Lua gateway (C) and haproxy (D),
# same upstream, same pinning, one run (../shared/bench/anchors.sh). Figures: bench/README.md.
# Knobs are anchors.sh's (ROUNDS, DURATION, ANCHORS, ...), plus:
#   PORTICO_ROUTES [1]   number of routes loaded (mixed exact/prefix/param/host; the bench
#                        path is matched by the last one, so the index does real work)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
BIN=$(realpath "${1:-$HERE/../build/portico}")
ANCHORS_SH=${ANCHORS_SH:-$HERE/../../shared/bench/anchors.sh}
PORTICO_ROUTES=${PORTICO_ROUTES:-1}
export CANDIDATE_PORT=${CANDIDATE_PORT:-9300}
export UPSTREAM_PORT=${UPSTREAM_PORT:-9001}

WORK=$(mktemp -d /tmp/portico-bench.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
cat >"$WORK/config.yaml" <<YAML
node:
  listen: ["127.0.0.1:$CANDIDATE_PORT"]
  workers: 1
config: {provider: yaml, file: routes.yaml}
log: {access: "off", error: "$WORK/error.log"}
YAML
python3 "$HERE/make_routes.py" "$PORTICO_ROUTES" "$UPSTREAM_PORT" >"$WORK/routes.yaml"

export CANDIDATE_NAME=${CANDIDATE_NAME:-portico}
export CANDIDATE_CMD="$BIN start -c $WORK/config.yaml"
"$ANCHORS_SH"
