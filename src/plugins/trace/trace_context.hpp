// W3C Trace Context (https://www.w3.org/TR/trace-context/): the `traceparent` a request arrives
// with and the one sent on upstream, new trace and span ids, and OpenTelemetry's samplers as
// APISIX's opentelemetry plugin configures them.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace portico::plugins::trace {

using TraceId = std::array<uint8_t, 16>;
using SpanId = std::array<uint8_t, 8>;

struct TraceParent {
  TraceId trace_id{};
  SpanId span_id{};  // the caller's span: the parent of ours
  uint8_t flags = 0;
  bool sampled() const { return flags & 1; }
};

// A valid `traceparent` value, or nothing: version 00 exactly (55 characters), a later version
// with at least those fields (more may follow after a '-'), version ff refused; ids in lower-case
// hex and not all zero. Any flags are read (APISIX's library refuses flags above 02 and starts a
// new trace instead); which of them go on is the caller's choice.
std::optional<TraceParent> parse_traceparent(std::string_view value);

// A `tracestate` (its lines joined by ","): at most 512 characters of printable ASCII, at most
// 32 list members, each `key=value` with a key (empty members, blanks around them, are allowed).
// An invalid one is dropped whole, as APISIX's library does.
bool valid_tracestate(std::string_view value);

// "00-<trace id>-<span id>-<flags>".
std::string format_traceparent(const TraceId& trace, const SpanId& span, uint8_t flags);

// Random ids, never all zero, from a per-thread generator.
TraceId random_trace_id();
SpanId random_span_id();

// A trace id from a request id: 32 hex digits, or a UUID (36 characters, hyphens where a UUID
// has them, as the request-id plugin makes them) with its hyphens dropped; nothing otherwise.
std::optional<TraceId> trace_id_from_request_id(std::string_view id);

// OpenTelemetry's samplers, by APISIX's names: always_on, always_off, trace_id_ratio (the trace
// id's first four bytes, big-endian, below fraction x 2^32-1, as APISIX's library reads them)
// and parent_base (the parent's sampled flag when there is a parent, else the root sampler,
// which is one of the other three).
struct Sampler {
  enum class Kind { AlwaysOn, AlwaysOff, TraceIdRatio, ParentBased };
  Kind kind = Kind::AlwaysOff;
  double fraction = 0;
  Kind root = Kind::AlwaysOff;  // ParentBased only
  double root_fraction = 0;

  bool sample(const TraceId& trace, const std::optional<TraceParent>& parent) const;
};

// Parses a sampler name; nothing when unknown (ParentBased only when `allow_parent`).
std::optional<Sampler::Kind> sampler_kind(std::string_view name, bool allow_parent);

}  // namespace portico::plugins::trace
