// OTLP trace messages (opentelemetry-proto, trace/v1 and collector/trace/v1) in the protobuf
// wire format, for OTLP/HTTP export: spans are written once, at the end of their request, and a
// batch of them is wrapped into one ExportTraceServiceRequest.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "plugins/trace/protobuf_writer.hpp"

namespace portico::plugins::trace::otlp {

// Span's fields (trace.proto).
enum SpanField : uint32_t {
  kTraceId = 1,
  kSpanId = 2,
  kTraceState = 3,
  kParentSpanId = 4,
  kName = 5,
  kKind = 6,
  kStartTime = 7,  // fixed64, nanoseconds since the epoch
  kEndTime = 8,
  kAttributes = 9,
  kStatus = 15,
};
enum SpanKind : uint32_t { kServer = 2 };
enum StatusCode : uint32_t { kStatusError = 2 };

using AttributeValue = std::variant<std::string_view, int64_t, double, bool>;

// Longest text kept in a span's name, trace state or string attribute, in bytes: a request head
// copied into attributes whole would make batches collectors refuse.
constexpr size_t kMaxText = 4096;

// `text` as protobuf strings must be: valid UTF-8 (a byte that does not start or continue a
// valid sequence becomes U+FFFD; a strict collector refuses a whole batch for one bad string),
// cut to at most `max` bytes at a character boundary.
std::string clean_text(std::string_view text, size_t max = kMaxText);

// A KeyValue {key, AnyValue} appended to `message` as its field `field` (a span's or resource's
// attributes); the key and a string value go through clean_text.
void add_attribute(ProtobufWriter& message, uint32_t field, std::string_view key,
                   const AttributeValue& value);

// A span's Status {message, code}.
void add_status(ProtobufWriter& span, StatusCode code, std::string_view message);

// A Resource message with these attributes.
std::string encode_resource(
    const std::vector<std::pair<std::string, std::variant<std::string, double, bool>>>& attributes);

// ExportTraceServiceRequest {ResourceSpans {resource, ScopeSpans {scope {name}, spans}}}: the
// body of a POST to /v1/traces. `spans` are encoded Span messages.
std::string export_request(std::string_view resource, std::string_view scope_name,
                           const std::vector<std::string>& spans);

}  // namespace portico::plugins::trace::otlp
