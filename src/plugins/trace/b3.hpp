// Zipkin's B3 propagation (https://github.com/openzipkin/b3-propagation) as APISIX's zipkin
// plugin reads it: the `b3` single header, or the X-B3-* headers.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace portico::plugins::trace {

struct B3Context {
  std::string trace_id;   // 16 or 32 lower-case hex digits; empty: no caller's trace
  std::string span_id;    // the caller's span (16 hex digits)
  std::string parent_id;  // the caller's parent, when sent (not reported: the caller's own)
  // The caller's decision: "1"/"true" (or "d", debug) sample, "0"/"false" do not; none: ours.
  std::optional<bool> sampled;
  bool debug = false;  // the single header's "d" (X-B3-Flags: 1 is read by the plugin)
};

// A B3 id: 16 hex digits, or 32 when `trace` (either case), not all zero; lower-cased, or
// nothing.
std::optional<std::string> b3_id(std::string_view text, bool trace);

// The `b3` single header ("trace-span[-sampled[-parent]]", or just "0", "1" or "d"): nothing
// when it is neither (APISIX answers 400); invalid or empty ids give a context with the
// decision only (a new trace, as APISIX's codec does).
std::optional<B3Context> parse_b3_single(std::string_view value);

// The X-B3-TraceId / SpanId / ParentSpanId / Sampled values (empty when absent); invalid ids
// leave the trace empty; a trace id without a span id is kept, with no parent (as APISIX).
B3Context parse_b3_multi(std::string_view trace, std::string_view span, std::string_view parent,
                         std::string_view sampled);

}  // namespace portico::plugins::trace
