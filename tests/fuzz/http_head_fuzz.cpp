// libFuzzer target: the request and response head parsers and the chunked decoder must never
// crash, read out of bounds or loop, whatever bytes arrive; and a parse must be a pure function
// of its input (the proxy re-parses after compacting its buffer and relies on that).
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#include "http/chunked_decoder.hpp"
#include "http/http_parser.hpp"

using namespace portico::http;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);

  RequestLimits limits;
  limits.max_head = 4096;
  limits.max_uri = 1024;
  RequestHead a, b;
  ParseResult ra = parse_request(in, limits, a);
  std::string copy(in);  // the same bytes somewhere else must parse the same way
  ParseResult rb = parse_request(copy, limits, b);
  if (ra.status != rb.status || ra.error_status != rb.error_status) __builtin_trap();
  if (ra.status == ParseStatus::Done) {
    if (a.head_size > size || a.headers.size() != b.headers.size() || a.chunked != b.chunked ||
        a.content_length != b.content_length || (a.chunked && a.content_length >= 0))
      __builtin_trap();
  }

  ResponseHead r;
  ParseResult rr = parse_response(in, 4096, r);
  if (rr.status == ParseStatus::Done && r.head_size > size) __builtin_trap();

  // Chunked bodies fed in pieces of varying size must consume exactly what they were given.
  ChunkedDecoder dec;
  size_t pos = 0, step = size ? (data[0] % 7) + 1 : 1;
  while (pos < size) {
    std::string_view piece = in.substr(pos, step);
    while (!piece.empty()) {
      auto s = dec.feed(piece);
      if (s.consumed > piece.size()) __builtin_trap();
      if (s.status == ChunkedDecoder::Status::Data && s.data.size() > piece.size())
        __builtin_trap();
      if (s.status == ChunkedDecoder::Status::Error || s.status == ChunkedDecoder::Status::Done)
        return 0;
      if (s.consumed == 0 && s.status != ChunkedDecoder::Status::Data) __builtin_trap();  // stuck
      piece.remove_prefix(s.consumed);
    }
    pos += step;
  }
  return 0;
}
