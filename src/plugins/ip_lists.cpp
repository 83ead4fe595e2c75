#include "plugins/ip_lists.hpp"

namespace portico::plugins {

IpLists read_ip_lists(config::ObjectReader& r) {
  IpLists out;
  bool has_white = r.has("whitelist"), has_black = r.has("blacklist");
  if (has_white == has_black)
    r.error("whitelist", "exactly one of whitelist or blacklist is required");
  out.whitelist = has_white;
  const char* field = has_white ? "whitelist" : "blacklist";
  auto list = r.string_list(field);
  if ((has_white || has_black) && list.empty()) r.error(field, "must list at least one address");
  for (const auto& a : list) {
    router::Cidr c;
    if (!router::Cidr::parse(a, c))
      r.error(field, "invalid IP or CIDR \"" + a + "\"");
    else
      out.networks.push_back(c);
  }
  r.string_list(has_white ? "blacklist" : "whitelist");  // known, even when both are given
  return out;
}

}  // namespace portico::plugins
