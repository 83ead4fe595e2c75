#include "plugins/ip_lists.hpp"

namespace portico::plugins {

ChosenList read_chosen_list(config::ObjectReader& r, const char* first, const char* second,
                            const char* item_kind) {
  ChosenList out;
  bool has_first = r.has(first), has_second = r.has(second);
  if (has_first == has_second)
    r.error(first, std::string("exactly one of ") + first + " or " + second + " is required");
  out.first = has_first;
  out.field = has_first ? first : second;
  out.items = r.string_list(out.field);
  if ((has_first || has_second) && out.items.empty())
    r.error(out.field, std::string("must list at least one ") + item_kind);
  r.ignore(has_first ? second : first);  // known, even when both are given
  return out;
}

std::string read_message(config::ObjectReader& r, std::string fallback) {
  std::string message = r.string_or("message", std::move(fallback));
  if (message.empty() || message.size() > 1024) r.error("message", "must be 1..1024 characters");
  return message;
}

IpLists read_ip_lists(config::ObjectReader& r) {
  IpLists out;
  ChosenList list = read_chosen_list(r, "whitelist", "blacklist", "address");
  out.whitelist = list.first;
  for (const auto& a : list.items) {
    router::Cidr c;
    if (!router::Cidr::parse(a, c))
      r.error(list.field, "invalid IP or CIDR \"" + a + "\"");
    else
      out.networks.push_back(c);
  }
  return out;
}

}  // namespace portico::plugins
