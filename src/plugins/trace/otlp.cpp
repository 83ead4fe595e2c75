#include "plugins/trace/otlp.hpp"

#include <algorithm>

namespace portico::plugins::trace::otlp {
namespace {

// AnyValue's oneof (common.proto).
enum AnyValueField : uint32_t { kString = 1, kBool = 2, kInt = 3, kDouble = 4 };

// The length of the valid UTF-8 sequence at the start of `s` (RFC 3629: no overlong forms, no
// surrogates, nothing above U+10FFFF), or 0.
size_t utf8_sequence(std::string_view s) {
  auto byte = [&](size_t i) { return static_cast<unsigned char>(s[i]); };
  unsigned char b = byte(0);
  if (b < 0x80) return 1;
  size_t n = b >= 0xc2 && b <= 0xdf   ? 2
             : b >= 0xe0 && b <= 0xef ? 3
             : b >= 0xf0 && b <= 0xf4 ? 4
                                      : 0;
  if (n == 0 || s.size() < n) return 0;
  for (size_t i = 1; i < n; ++i)
    if ((byte(i) & 0xc0) != 0x80) return 0;
  if (b == 0xe0 && byte(1) < 0xa0) return 0;  // overlong
  if (b == 0xed && byte(1) > 0x9f) return 0;  // surrogates
  if (b == 0xf0 && byte(1) < 0x90) return 0;  // overlong
  if (b == 0xf4 && byte(1) > 0x8f) return 0;  // above U+10FFFF
  return n;
}

}  // namespace

std::string clean_text(std::string_view text, size_t max) {
  std::string out;
  out.reserve(std::min(text.size(), max));
  while (!text.empty()) {
    size_t n = utf8_sequence(text);
    std::string_view piece = n ? text.substr(0, n) : std::string_view("\xef\xbf\xbd");
    if (out.size() + piece.size() > max) break;
    out += piece;
    text.remove_prefix(n ? n : 1);
  }
  return out;
}

void add_attribute(ProtobufWriter& message, uint32_t field, std::string_view key,
                   const AttributeValue& value) {
  ProtobufWriter any;
  if (const auto* s = std::get_if<std::string_view>(&value))
    any.bytes_field(kString, clean_text(*s));
  else if (const auto* i = std::get_if<int64_t>(&value))
    any.varint_field(kInt, static_cast<uint64_t>(*i));
  else if (const auto* d = std::get_if<double>(&value))
    any.double_field(kDouble, *d);
  else
    any.varint_field(kBool, std::get<bool>(value) ? 1 : 0);
  ProtobufWriter kv;
  kv.bytes_field(1, clean_text(key, 256));
  kv.bytes_field(2, any.bytes());
  message.bytes_field(field, kv.bytes());
}

void add_status(ProtobufWriter& span, StatusCode code, std::string_view message) {
  ProtobufWriter status;
  status.bytes_field(2, message);
  status.varint_field(3, code);
  span.bytes_field(kStatus, status.bytes());
}

std::string encode_resource(
    const std::vector<std::pair<std::string, std::variant<std::string, double, bool>>>&
        attributes) {
  ProtobufWriter resource;
  for (const auto& [key, value] : attributes) {
    if (const auto* s = std::get_if<std::string>(&value))
      add_attribute(resource, 1, key, std::string_view(*s));
    else if (const auto* d = std::get_if<double>(&value))
      add_attribute(resource, 1, key, *d);
    else
      add_attribute(resource, 1, key, std::get<bool>(value));
  }
  return resource.take();
}

std::string export_request(std::string_view resource, std::string_view scope_name,
                           const std::vector<std::string>& spans) {
  ProtobufWriter scope;
  scope.bytes_field(1, scope_name);
  ProtobufWriter scope_spans;
  scope_spans.bytes_field(1, scope.bytes());
  for (const auto& span : spans) scope_spans.bytes_field(2, span);
  ProtobufWriter resource_spans;
  resource_spans.bytes_field(1, resource);
  resource_spans.bytes_field(2, scope_spans.bytes());
  ProtobufWriter request;
  request.bytes_field(1, resource_spans.bytes());
  return request.take();
}

}  // namespace portico::plugins::trace::otlp
