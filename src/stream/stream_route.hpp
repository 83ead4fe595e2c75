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
  // Matches TLS connections whose client asked for this name (lower case; "*.example.com" takes
  // one label more); empty: any connection.
  std::string sni;
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
               const std::array<uint8_t, 16>& local, std::string_view server_name) const {
    return sni_matches(server_name) && (server_port == 0 || server_port == port) &&
           (!remote || remote->contains(client)) && (!server_addr || *server_addr == local);
  }
  bool sni_matches(std::string_view server_name) const {
    if (sni.empty()) return true;
    if (sni.size() > 2 && sni[0] == '*' && sni[1] == '.') {
      std::string_view suffix = std::string_view(sni).substr(1);  // ".example.com"
      if (server_name.size() <= suffix.size() || !server_name.ends_with(suffix)) return false;
      return server_name.substr(0, server_name.size() - suffix.size()).find('.') ==
             std::string_view::npos;
    }
    return server_name == sni;
  }
};

using StreamRoutePtr = std::shared_ptr<const CompiledStreamRoute>;

// The route for a connection, or null: the first (creation order) whose `sni` is exactly the
// server name the client asked for (TLS), else the first whose wildcard `sni` covers it, else
// the first without an `sni` that matches: the most specific name wins, whatever the order.
inline const StreamRoutePtr* match_stream_route(const std::vector<StreamRoutePtr>& routes,
                                                uint16_t port,
                                                const std::array<uint8_t, 16>& client,
                                                const std::array<uint8_t, 16>& local,
                                                std::string_view server_name = {}) {
  enum Kind { Exact, Wildcard, Any };
  auto kind = [](const CompiledStreamRoute& r) {
    return r.sni.empty() ? Any : r.sni.starts_with("*.") ? Wildcard : Exact;
  };
  for (Kind k : {Exact, Wildcard, Any}) {
    if (k != Any && server_name.empty()) continue;
    for (const auto& r : routes)
      if (kind(*r) == k && r->matches(port, client, local, server_name)) return &r;
  }
  return nullptr;
}

}  // namespace portico::stream
