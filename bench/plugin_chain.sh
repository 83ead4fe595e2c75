#!/usr/bin/env bash
# The seed's plugin chain (real-ip + waf with php-injection over URI, args and a 1 KiB body +
# limit-req + prometheus) on Portico beside nginx (B) and the OpenResty-style Lua gateway (C),
# which runs the same kind of checks, in one anchors.sh run; then plain Portico beside B in a
# second run, so the chain's cost against Portico's own plain proxying is a ratio of ratios to
# B (drift between runs cancels). Figures: bench/README.md. Knobs: anchors.sh's (ROUNDS, ...).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
BIN=$(realpath "${1:-$HERE/../build/portico}")
OUT=$(mktemp -d /tmp/portico-chain.XXXXXX)
export ANCHORS="B C" POST_ANCHORS="B C" LAT_ANCHORS="" MID_ANCHORS="B C" CANDIDATE_LAT=0
PORTICO_CHAIN=1 CANDIDATE_NAME=chain RESULTS_DIR="$OUT/chain" bash "$HERE/run.sh" "$BIN"
ANCHORS="B" POST_ANCHORS="B" MID_ANCHORS="B" PORTICO_CHAIN=0 CANDIDATE_NAME=plain \
  RESULTS_DIR="$OUT/plain" bash "$HERE/run.sh" "$BIN"
python3 - "$OUT" <<'PY'
import csv, statistics, sys
out = sys.argv[1]
def rows(run):
    with open(f"{out}/{run}/runs.tsv") as f:
        return list(csv.DictReader(f, delimiter="\t"))
def med(rs, mode, target, col):
    v = [float(r[col]) for r in rs if r["mode"] == mode and r["target"] == target and r[col]]
    return statistics.median(v) if v else float("nan")
chain, plain = rows("chain"), rows("plain")
print(f"{'suite':6} {'chain rps':>10} {'C rps':>9} {'rps vs C':>8} {'chain us':>9} {'C us':>7} "
      f"{'us vs C':>8} {'chain/plain us (via B)':>24}")
for mode in ("GET", "POST", "MID"):
    cr, br, crr = (med(chain, mode, t, "rps") for t in ("chain", "B", "C"))
    cu, bu, ccu = (med(chain, mode, t, "sut_us_per_req") for t in ("chain", "B", "C"))
    pu, pbu = med(plain, mode, "plain", "sut_us_per_req"), med(plain, mode, "B", "sut_us_per_req")
    own = (cu / bu) / (pu / pbu)
    print(f"{mode:6} {cr:10.0f} {crr:9.0f} {cr / crr:8.2f} {cu:9.1f} {ccu:7.1f} {cu / ccu:8.2f} "
          f"{own:24.2f}")
print(f"results: {out}")
PY
