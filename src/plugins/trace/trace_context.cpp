#include "plugins/trace/trace_context.hpp"

#include "core/hex.hpp"
#include "core/thread_rng.hpp"

namespace portico::plugins::trace {
namespace {

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;  // (upper case is not valid in a traceparent)
}

// `text` is exactly 2 x out.size() lower-case hex digits.
template <size_t N>
bool read_hex(std::string_view text, std::array<uint8_t, N>& out) {
  if (text.size() != 2 * N) return false;
  for (size_t i = 0; i < N; ++i) {
    int hi = hex_value(text[2 * i]), lo = hex_value(text[2 * i + 1]);
    if (hi < 0 || lo < 0) return false;
    out[i] = static_cast<uint8_t>(hi << 4 | lo);
  }
  return true;
}

template <size_t N>
bool all_zero(const std::array<uint8_t, N>& a) {
  for (uint8_t b : a)
    if (b) return false;
  return true;
}

template <size_t N>
std::array<uint8_t, N> random_id() {
  std::mt19937_64& rng = thread_rng();
  std::array<uint8_t, N> out{};
  do {
    for (size_t i = 0; i < N; i += 8) {
      uint64_t word = rng();
      for (size_t j = 0; j < 8 && i + j < N; ++j)
        out[i + j] = static_cast<uint8_t>(word >> (8 * j));
    }
  } while (all_zero(out));
  return out;
}

bool sample_kind(Sampler::Kind kind, double fraction, const TraceId& trace) {
  switch (kind) {
    case Sampler::Kind::AlwaysOn:
      return true;
    case Sampler::Kind::TraceIdRatio: {
      if (fraction >= 1) return true;
      uint32_t n = uint32_t{trace[0]} << 24 | uint32_t{trace[1]} << 16 | uint32_t{trace[2]} << 8 |
                   uint32_t{trace[3]};
      return static_cast<double>(n) < fraction * 4294967295.0;
    }
    default:
      return false;
  }
}

}  // namespace

std::optional<TraceParent> parse_traceparent(std::string_view value) {
  // Leading and trailing blanks are a header's optional whitespace.
  while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) value.remove_prefix(1);
  while (!value.empty() && (value.back() == ' ' || value.back() == '\t')) value.remove_suffix(1);
  if (value.size() < 55 || value[2] != '-' || value[35] != '-' || value[52] != '-') return {};
  std::array<uint8_t, 1> version{}, flags{};
  if (!read_hex(value.substr(0, 2), version) || version[0] == 0xff) return {};
  if (version[0] == 0 ? value.size() != 55 : value.size() > 55 && value[55] != '-') return {};
  TraceParent out;
  if (!read_hex(value.substr(3, 32), out.trace_id) || all_zero(out.trace_id)) return {};
  if (!read_hex(value.substr(36, 16), out.span_id) || all_zero(out.span_id)) return {};
  if (!read_hex(value.substr(53, 2), flags)) return {};
  out.flags = flags[0];
  return out;
}

bool valid_tracestate(std::string_view value) {
  if (value.size() > 512) return false;
  int members = 0;
  while (true) {
    size_t comma = value.find(',');
    std::string_view member = value.substr(0, comma);
    while (!member.empty() && (member.front() == ' ' || member.front() == '\t'))
      member.remove_prefix(1);
    while (!member.empty() && (member.back() == ' ' || member.back() == '\t'))
      member.remove_suffix(1);
    if (!member.empty()) {
      size_t eq = member.find('=');
      if (eq == 0 || eq == std::string_view::npos || ++members > 32) return false;
      for (char c : member)
        if (c < 0x20 || c > 0x7e) return false;
    }
    if (comma == std::string_view::npos) return true;
    value.remove_prefix(comma + 1);
  }
}

std::string format_traceparent(const TraceId& trace, const SpanId& span, uint8_t flags) {
  std::string out = "00-";
  out.reserve(55);
  hex::append(out, trace.data(), trace.size());
  out += '-';
  hex::append(out, span.data(), span.size());
  out += '-';
  hex::append(out, &flags, 1);
  return out;
}

TraceId random_trace_id() { return random_id<16>(); }
SpanId random_span_id() { return random_id<8>(); }

std::optional<TraceId> trace_id_from_request_id(std::string_view id) {
  std::string digits;
  if (id.size() == 36 && id[8] == '-' && id[13] == '-' && id[18] == '-' && id[23] == '-') {
    for (size_t i = 0; i < id.size(); ++i)
      if (i != 8 && i != 13 && i != 18 && i != 23) digits += id[i];
  } else if (id.size() == 32) {
    digits.assign(id);
  } else {
    return {};
  }
  for (char& c : digits)
    if (c >= 'A' && c <= 'F') c = static_cast<char>(c - 'A' + 'a');
  TraceId out{};
  if (!read_hex(digits, out) || all_zero(out)) return {};
  return out;
}

bool Sampler::sample(const TraceId& trace, const std::optional<TraceParent>& parent) const {
  if (kind != Kind::ParentBased) return sample_kind(kind, fraction, trace);
  if (parent) return parent->sampled();
  return sample_kind(root, root_fraction, trace);
}

std::optional<Sampler::Kind> sampler_kind(std::string_view name, bool allow_parent) {
  if (name == "always_on") return Sampler::Kind::AlwaysOn;
  if (name == "always_off") return Sampler::Kind::AlwaysOff;
  if (name == "trace_id_ratio") return Sampler::Kind::TraceIdRatio;
  if (name == "parent_base" && allow_parent) return Sampler::Kind::ParentBased;
  return {};
}

}  // namespace portico::plugins::trace
