#include "stream/tlv_policy.hpp"

#include <algorithm>
#include <charconv>
#include <optional>

#include "config/object_parser.hpp"

namespace portico::stream {
namespace {

using config::Errors;
using config::json;
using config::ObjectReader;

constexpr uint32_t kMaxCmd = 0xFFFFFFFF;

FrameRate read_rate(ObjectReader& parent, std::string_view key) {
  FrameRate out;
  const json* v = parent.raw(key);
  if (!v) return out;
  ObjectReader r(*v, parent.child_path(key), parent.errors());
  auto number = [&](const char* name, double max) -> double {
    const json* n = r.raw(name);
    if (!n) return -1;
    if (!n->is_number() || n->get<double>() < 0 || n->get<double>() > max) {
      r.error(name, "must be a number 0.." + std::to_string(static_cast<int64_t>(max)));
      return -1;
    }
    return n->get<double>();
  };
  double rate = number("rate", 1e6);
  double burst = number("burst", 1e6);
  if (!r.has("rate") && r.valid()) r.error("rate", "is required");
  // Thousandths of a frame in integers: below 0.001 the rate would round to none at all.
  if (r.has("rate") && rate >= 0 && rate < 0.001) r.error("rate", "must be at least 0.001");
  r.finish();
  if (rate > 0) {
    out.rate_milli = static_cast<int64_t>(rate * 1000);
    out.burst_milli = burst > 0 ? static_cast<int64_t>(burst * 1000) : 0;
  }
  return out;
}

Refusal read_refusal(ObjectReader& r, Refusal fallback) {
  std::string action = r.string_or("action", fallback.reply ? "reply" : "drop");
  if (action != "reply" && action != "drop") r.error("action", "must be reply or drop");
  fallback.reply = action == "reply";
  fallback.status = static_cast<uint32_t>(r.integer_or("status", fallback.status, 1, 65535));
  return fallback;
}

void add_named(std::vector<uint32_t>& named, const CmdSet& set) {
  for (const auto& r : set.ranges())
    if (r.last - r.first < 16)  // single values and small ranges; wide ranges label as "other"
      for (uint64_t c = r.first; c <= r.last; ++c) named.push_back(static_cast<uint32_t>(c));
}

std::optional<uint32_t> parse_number(std::string_view s) {
  while (!s.empty() && s.front() == ' ') s.remove_prefix(1);
  while (!s.empty() && s.back() == ' ') s.remove_suffix(1);
  int base = 10;
  if (s.size() > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
    s.remove_prefix(2);
    base = 16;
  }
  uint64_t v = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v, base);
  if (ec != std::errc() || end != s.data() + s.size() || s.empty() || v > kMaxCmd)
    return std::nullopt;
  return static_cast<uint32_t>(v);
}

}  // namespace

std::optional<uint32_t> read_cmd(const json& v) {
  if (v.is_number_unsigned() || (v.is_number_integer() && v.get<int64_t>() >= 0)) {
    uint64_t n = v.get<uint64_t>();
    if (n <= kMaxCmd) return static_cast<uint32_t>(n);
    return std::nullopt;
  }
  if (v.is_string()) return parse_number(v.get<std::string>());
  return std::nullopt;
}

bool CmdSet::contains(uint32_t cmd) const {
  auto it = std::upper_bound(ranges_.begin(), ranges_.end(), cmd,
                             [](uint32_t c, const Range& r) { return c < r.first; });
  return it != ranges_.begin() && cmd <= std::prev(it)->last;
}

void CmdSet::add(uint32_t first, uint32_t last) {
  ranges_.push_back({first, last});
  std::sort(ranges_.begin(), ranges_.end(),
            [](const Range& a, const Range& b) { return a.first < b.first; });
  std::vector<Range> merged;
  for (const Range& r : ranges_) {
    if (!merged.empty() && uint64_t{r.first} <= uint64_t{merged.back().last} + 1)
      merged.back().last = std::max(merged.back().last, r.last);
    else
      merged.push_back(r);
  }
  ranges_ = std::move(merged);
}

CmdSet parse_cmd_set(const json& value, const std::string& path, Errors& errors) {
  CmdSet set;
  if (!value.is_array()) {
    errors.add(path, "must be a list of commands (0x4001) or ranges (\"0x4000-0x4fff\")");
    return set;
  }
  for (size_t i = 0; i < value.size(); ++i) {
    const json& item = value[i];
    std::string item_path = path + "[" + std::to_string(i) + "]";
    if (item.is_string()) {
      const std::string& s = item.get_ref<const std::string&>();
      size_t dash = s.find('-');
      if (dash != std::string::npos) {
        auto first = parse_number(std::string_view(s).substr(0, dash));
        auto last = parse_number(std::string_view(s).substr(dash + 1));
        if (!first || !last || *first > *last)
          errors.add(item_path, "must be a range \"first-last\" with first <= last");
        else
          set.add(*first, *last);
        continue;
      }
    }
    if (auto cmd = read_cmd(item))
      set.add(*cmd, *cmd);
    else
      errors.add(item_path, "must be a command 0..4294967295 (a number or \"0x...\")");
  }
  return set;
}

std::shared_ptr<const TlvProtocolConfig> parse_tlv_protocol(const json* value,
                                                            const std::string& path,
                                                            Errors& errors) {
  auto c = std::make_shared<TlvProtocolConfig>();
  if (!value) return c;
  ObjectReader r(*value, path, errors);
  if (!r.valid()) return c;
  if (const json* f = r.raw("framing"))
    c->framing = parse_tlv_framing(*f, r.child_path("framing"), errors);
  c->idle_timeout = r.duration_or("idle_timeout", c->idle_timeout, 1, 7 * 86400);
  c->stall_timeout = r.duration_or("stall_timeout", c->stall_timeout, 0.1, 3600);
  c->send_proxy_protocol = r.boolean_or("send_proxy_protocol", false);

  if (const json* hb = r.raw("heartbeat")) {
    ObjectReader h(*hb, r.child_path("heartbeat"), errors);
    if (const json* cmd = h.raw("cmd")) {
      if (auto v = read_cmd(*cmd))
        c->heartbeat_cmd = *v;
      else
        h.error("cmd", "must be a command (a number or \"0x...\")");
    }
    c->heartbeat_local = h.boolean_or("answer_locally", false);
    h.finish();
  }
  if (const json* rl = r.raw("rate_limit")) {
    ObjectReader l(*rl, r.child_path("rate_limit"), errors);
    c->per_connection = read_rate(l, "per_connection");
    c->per_user = read_rate(l, "per_user");
    c->rate_refusal = read_refusal(l, c->rate_refusal);
    if (l.valid() && !l.has("per_connection") && !l.has("per_user"))
      l.error("per_connection", "per_connection or per_user is required");
    l.finish();
  }
  if (const json* cmds = r.raw("commands")) {
    ObjectReader p(*cmds, r.child_path("commands"), errors);
    if (const json* a = p.raw("allow")) c->allow = parse_cmd_set(*a, p.child_path("allow"), errors);
    if (const json* d = p.raw("deny")) c->deny = parse_cmd_set(*d, p.child_path("deny"), errors);
    c->command_refusal = read_refusal(p, c->command_refusal);
    p.finish();
  }
  if (const json* routes = r.raw("routes")) {
    std::string rpath = r.child_path("routes");
    if (!routes->is_array()) errors.add(rpath, "must be a list of {cmds, upstream | upstream_id}");
    for (size_t i = 0; routes->is_array() && i < routes->size(); ++i) {
      ObjectReader s((*routes)[i], rpath + "[" + std::to_string(i) + "]", errors);
      if (!s.valid()) continue;
      TlvSubRouteSpec sub;
      if (const json* cmds = s.raw("cmds"))
        sub.cmds = parse_cmd_set(*cmds, s.child_path("cmds"), errors);
      else
        s.error("cmds", "is required");
      if (const json* up = s.raw("upstream"))
        sub.upstream = config::parse_upstream(*up, s.child_path("upstream"), errors);
      sub.upstream_id = s.id("upstream_id").value_or("");
      if (!sub.upstream && sub.upstream_id.empty())
        s.error("upstream", "upstream or upstream_id is required");
      if (auto h = s.string("hash_on")) {
        if (*h == "to")
          sub.hash_on_to = true;
        else
          s.error("hash_on", "must be \"to\"");
      }
      s.finish();
      c->routes.push_back(std::move(sub));
    }
  }
  r.finish();

  auto& named = c->named_cmds;
  named.push_back(c->heartbeat_cmd);
  add_named(named, c->allow);
  add_named(named, c->deny);
  for (const auto& sub : c->routes) add_named(named, sub.cmds);
  size_t n = named.size();
  for (size_t i = 0; i < n; ++i)
    if (named[i] != kMaxCmd) named.push_back(named[i] + 1);  // the replies
  std::sort(named.begin(), named.end());
  named.erase(std::unique(named.begin(), named.end()), named.end());
  return c;
}

}  // namespace portico::stream
