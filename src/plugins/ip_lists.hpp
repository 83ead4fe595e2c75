// ip-restriction's `whitelist` / `blacklist` (exactly one of them), read the same way for
// routes and stream routes.
#pragma once

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

}  // namespace portico::plugins
