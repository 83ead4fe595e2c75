// Strict HTTP/1.x message-head parsing over a contiguous buffer. Results are views into that
// buffer (no copies, no allocation once the header vector has grown). Everything that could
// make two parsers disagree about where a message ends is rejected (request smuggling).
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

namespace portico::http {

struct Header {
  std::string_view name;
  std::string_view value;
};

enum class ParseStatus { Incomplete, Done, Error };

struct ParseResult {
  ParseStatus status = ParseStatus::Incomplete;
  int error_status = 0;  // HTTP status to answer with when status == Error
  const char* reason = "";
  static ParseResult incomplete() { return {}; }
  static ParseResult done() { return {ParseStatus::Done, 0, ""}; }
  static ParseResult error(int s, const char* r) { return {ParseStatus::Error, s, r}; }
};

struct RequestLimits {
  size_t max_head = 32 * 1024;  // whole head; over it: 431
  size_t max_uri = 8 * 1024;    // request line; over it: 414
  size_t max_headers = 256;     // header count; over it: 431
};

struct RequestHead {
  std::string_view method;
  std::string_view target;  // origin-form (path + query) even when the client sent absolute-form
  std::string_view path;
  std::string_view query;  // without '?'
  int minor_version = 1;
  std::vector<Header> headers;
  std::string_view host;        // Host header or authority of an absolute-form target
  std::string_view connection;  // raw Connection value: names more hop-by-hop headers
  int64_t content_length = -1;  // -1: no Content-Length
  bool chunked = false;
  bool keep_alive = true;
  bool expect_continue = false;
  bool upgrade_websocket = false;  // Upgrade: websocket with Connection: upgrade
  size_t head_size = 0;            // bytes of the head including the final empty line

  bool has_body() const { return chunked || content_length > 0; }
};

struct ResponseHead {
  int status = 0;
  int minor_version = 1;
  std::string_view reason;
  std::vector<Header> headers;
  std::string_view connection;
  int64_t content_length = -1;
  bool chunked = false;
  bool keep_alive = true;
  size_t head_size = 0;
};

ParseResult parse_request(std::string_view buf, const RequestLimits& limits, RequestHead& out);
ParseResult parse_response(std::string_view buf, size_t max_head, ResponseHead& out);

// Case-insensitive ASCII comparison.
bool iequals(std::string_view a, std::string_view b);
// Whether a comma-separated header value lists `token` (case-insensitive).
bool has_token(std::string_view list, std::string_view token);
// Hop-by-hop headers are never forwarded: the fixed RFC 9110 set plus names listed in Connection.
bool is_hop_by_hop(std::string_view name, std::string_view connection_value);

}  // namespace portico::http
