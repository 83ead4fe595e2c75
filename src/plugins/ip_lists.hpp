// The allow and deny lists of the restriction plugins: ip-restriction's `whitelist` /
// `blacklist` (read the same way for routes and stream routes), and the lists and refusal
// message of ua-restriction and referer-restriction.
#pragma once

#include <string>
#include <vector>

#include "config/field_reader.hpp"
#include "router/route_rule.hpp"

namespace portico::plugins {

struct IpLists {
  bool whitelist = true;  // false: the networks are a blacklist
  std::vector<router::Cidr> networks;
  bool allows(const std::array<uint8_t, 16>& client) const {
    bool listed = false;
    for (const auto& c : networks) listed = listed || c.contains(client);
    return listed == whitelist;
  }
};

IpLists read_ip_lists(config::ObjectReader& r);

// Exactly one of two list fields (`first` or `second`), which must not be empty.
struct ChosenList {
  bool first = true;  // the list given is `first`
  const char* field;
  std::vector<std::string> items;
};
ChosenList read_chosen_list(config::ObjectReader& r, const char* first, const char* second,
                            const char* item_kind);
// A refusal's `message`: 1..1024 characters.
std::string read_message(config::ObjectReader& r, std::string fallback);

}  // namespace portico::plugins
