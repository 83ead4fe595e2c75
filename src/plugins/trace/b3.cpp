#include "plugins/trace/b3.hpp"

#include "core/ascii.hpp"

namespace portico::plugins::trace {
namespace {

std::optional<bool> sampled_flag(std::string_view s) {
  if (s == "1" || s == "true" || s == "d") return true;
  if (s == "0" || s == "false") return false;
  return std::nullopt;
}

// Fills the ids of `out`, or leaves it without a trace when one of them is invalid.
void set_ids(B3Context& out, std::string_view trace, std::string_view span,
             std::string_view parent) {
  auto t = b3_id(trace, true), s = b3_id(span, false);
  std::optional<std::string> p =
      parent.empty() ? std::optional<std::string>("") : b3_id(parent, false);
  if (!t || !s || !p) return;
  out.trace_id = std::move(*t);
  out.span_id = std::move(*s);
  out.parent_id = std::move(*p);
}

}  // namespace

std::optional<std::string> b3_id(std::string_view text, bool trace) {
  if (!(text.size() == 16 || (trace && text.size() == 32))) return std::nullopt;
  for (char c : text)
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')))
      return std::nullopt;
  return ascii_lower(text);
}

std::optional<B3Context> parse_b3_single(std::string_view value) {
  B3Context out;
  std::string_view parts[4];
  size_t n = 0;
  while (n < 4) {
    size_t dash = value.find('-');
    parts[n++] = value.substr(0, dash);
    if (dash == std::string_view::npos) break;
    value.remove_prefix(dash + 1);
  }
  if (n >= 3 || n == 1) out.debug = parts[n == 1 ? 0 : 2] == "d";
  if (n == 1) {  // only a decision: "0", "1" or "d"
    out.sampled = sampled_flag(parts[0]);
    if (!out.sampled) return std::nullopt;
    return out;
  }
  if (parts[1].empty()) return std::nullopt;
  if (n >= 3) out.sampled = sampled_flag(parts[2]);
  set_ids(out, parts[0], parts[1], n == 4 ? parts[3] : std::string_view());
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
