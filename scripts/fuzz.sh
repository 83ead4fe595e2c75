#!/usr/bin/env bash
# Builds the libFuzzer targets under tests/fuzz with clang (ASan + UBSan) and runs each for a
# while. Not part of `make test` (it needs clang and takes minutes); run it after touching a
# parser.   usage: scripts/fuzz.sh [seconds per target, default 60]
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-60}
command -v clang++ >/dev/null || { echo "needs clang (apt-get install clang)" >&2; exit 1; }
OUT=build-fuzz
mkdir -p "$OUT"
FLAGS="-std=c++20 -O1 -g -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -Isrc"
clang++ $FLAGS tests/fuzz/http_head_fuzz.cpp src/http/http_parser.cpp src/http/chunked_decoder.cpp \
  -o "$OUT/http_head_fuzz"
mkdir -p "$OUT/corpus-http_head"
cp -n tests/fuzz/corpus/http_head/* "$OUT/corpus-http_head/" 2>/dev/null || true
"$OUT/http_head_fuzz" -max_total_time="$SECS" -max_len=8192 "$OUT/corpus-http_head"

clang++ $FLAGS tests/fuzz/proxy_protocol_fuzz.cpp src/stream/proxy_protocol.cpp \
  -o "$OUT/proxy_protocol_fuzz"
mkdir -p "$OUT/corpus-proxy_protocol"
cp -n tests/fuzz/corpus/proxy_protocol/* "$OUT/corpus-proxy_protocol/" 2>/dev/null || true
"$OUT/proxy_protocol_fuzz" -max_total_time="$SECS" -max_len=2048 "$OUT/corpus-proxy_protocol"

clang++ $FLAGS tests/fuzz/tlv_decoder_fuzz.cpp src/stream/tlv_codec.cpp -o "$OUT/tlv_decoder_fuzz"
mkdir -p "$OUT/corpus-tlv_decoder"
cp -n tests/fuzz/corpus/tlv_decoder/* "$OUT/corpus-tlv_decoder/" 2>/dev/null || true
"$OUT/tlv_decoder_fuzz" -max_total_time="$SECS" -max_len=4096 "$OUT/corpus-tlv_decoder"

# tlv-bridge: WebSocket frames and JSON envelopes (with the demo proto's types) from browsers.
clang++ $FLAGS tests/fuzz/tlv_bridge_fuzz.cpp src/bridge/*.cpp src/stream/tlv_codec.cpp \
  src/core/base64.cpp -lprotobuf -lprotoc -lcrypto -o "$OUT/tlv_bridge_fuzz"
mkdir -p "$OUT/corpus-tlv_bridge"
cp -n tests/fuzz/corpus/tlv_bridge/* "$OUT/corpus-tlv_bridge/" 2>/dev/null || true
"$OUT/tlv_bridge_fuzz" -max_total_time="$SECS" -max_len=4096 "$OUT/corpus-tlv_bridge"
