// A stream route compiled for the workers: its match criteria, its upstream targets (balancer,
// health, priority levels, as HTTP routes have them) and, for tlv routes, the shared policy.
// A connection keeps a shared_ptr to its route (not to the snapshot) until it closes.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "plugins/limit/leaky_bucket.hpp"
#include "router/route_rule.hpp"
#include "stream/stream_plugins.hpp"
#include "stream/tlv_policy.hpp"
#include "upstream/upstream_target.hpp"

namespace portico::stream {

struct CompiledSubRoute {
  CmdSet cmds;
  std::shared_ptr<const upstream::UpstreamTarget> target;
  bool hash_on_to = false;
};

struct CompiledStreamRoute {
  std::string id;
  uint16_t server_port = 0;  // 0: any
  std::optional<router::Cidr> remote;
  std::optional<std::array<uint8_t, 16>> server_addr;
  bool has_sni = false;  // never matches until TLS streams exist
  std::shared_ptr<const upstream::UpstreamTarget> upstream;
  std::shared_ptr<const TlvProtocolConfig> tlv;             // null: plain TCP proxy
  std::vector<CompiledSubRoute> sub_routes;                 // in config order; the first match wins
  std::shared_ptr<plugins::LeakyBucketTable> user_buckets;  // per_user rate limit, kept by id
  std::shared_ptr<const StreamPlugins> plugins;             // ip-restriction, limit-conn

  // Index into sub_routes for `cmd`, or -1 (the route's own upstream).
  int sub_route_for(uint32_t cmd) const {
    for (size_t i = 0; i < sub_routes.size(); ++i)
      if (sub_routes[i].cmds.contains(cmd)) return static_cast<int>(i);
    return -1;
  }
  bool matches(uint16_t port, const std::array<uint8_t, 16>& client,
               const std::array<uint8_t, 16>& local) const {
    return !has_sni && (server_port == 0 || server_port == port) &&
           (!remote || remote->contains(client)) && (!server_addr || *server_addr == local);
  }
};

using StreamRoutePtr = std::shared_ptr<const CompiledStreamRoute>;

// The first route (creation order) matching the connection, or null.
inline const StreamRoutePtr* match_stream_route(const std::vector<StreamRoutePtr>& routes,
                                                uint16_t port,
                                                const std::array<uint8_t, 16>& client,
                                                const std::array<uint8_t, 16>& local) {
  for (const auto& r : routes)
    if (r->matches(port, client, local)) return &r;
  return nullptr;
}

}  // namespace portico::stream
