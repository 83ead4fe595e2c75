#include "plugins/trace/b3.hpp"

#include "core/ascii.hpp"

namespace portico::plugins::trace {
namespace {

// X-B3-Sampled's values; the single header also takes "d" (debug).
std::optional<bool> sampled_flag(std::string_view s) {
  if (s == "1" || s == "true") return true;
  if (s == "0" || s == "false") return false;
  return std::nullopt;
}

// Fills the ids of `out`, or leaves it without a trace when one of them is invalid. A trace
// without a span id is kept as the caller's trace, with no parent (as APISIX does).
void set_ids(B3Context& out, std::string_view trace, std::string_view span,
             std::string_view parent) {
  auto t = b3_id(trace, true);
  auto s = span.empty() ? std::optional<std::string>("") : b3_id(span, false);
  auto p = parent.empty() ? std::optional<std::string>("") : b3_id(parent, false);
  if (!t || !s || !p) return;
  out.trace_id = std::move(*t);
  out.span_id = std::move(*s);
  out.parent_id = std::move(*p);
}

}  // namespace

std::optional<std::string> b3_id(std::string_view text, bool trace) {
  if (!(text.size() == 16 || (trace && text.size() == 32))) return std::nullopt;
  bool zero = true;
  for (char c : text) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')))
      return std::nullopt;
    zero = zero && c == '0';
  }
  if (zero) return std::nullopt;  // (Zipkin refuses all-zero ids, and a batch with them)
  return ascii_lower(text);
}

std::optional<B3Context> parse_b3_single(std::string_view value) {
  B3Context out;
  if (value.find('-') == std::string_view::npos) {  // only a decision: "0", "1" or "d"
    if (value != "0" && value != "1" && value != "d") return std::nullopt;
    out.sampled = value != "0";
    out.debug = value == "d";
    return out;
  }
  // trace-span[-sampled[-parent]]: the parent is the rest (an extra '-' makes it invalid).
  std::string_view parts[4];
  size_t n = 0;
  for (std::string_view rest = value; n < 4; ++n) {
    size_t dash = n == 3 ? std::string_view::npos : rest.find('-');
    parts[n] = rest.substr(0, dash);
    if (dash == std::string_view::npos) {
      ++n;
      break;
    }
    rest.remove_prefix(dash + 1);
  }
  if (n >= 3) {
    out.debug = parts[2] == "d";
    out.sampled = out.debug ? std::optional<bool>(true) : sampled_flag(parts[2]);
  }
  if (parts[1].empty()) return out;  // an empty span id: not a caller, a new trace
  set_ids(out, parts[0], parts[1], n == 4 ? parts[3] : std::string_view());
  if (out.span_id.empty()) out.trace_id.clear();  // (the single header needs both)
  return out;
}

B3Context parse_b3_multi(std::string_view trace, std::string_view span, std::string_view parent,
                         std::string_view sampled) {
  B3Context out;
  out.sampled = sampled_flag(sampled);
  if (!trace.empty()) set_ids(out, trace, span, parent);
  return out;
}

}  // namespace portico::plugins::trace
