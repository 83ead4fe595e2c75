// The `plugins` of a stream route: the APISIX stream plugins Portico runs, checked once when a
// connection is accepted (per-message policy lives in protocol.conf, see docs/streams.md).
//   ip-restriction: {whitelist | blacklist: [CIDR]}
//   limit-conn: {conn, burst, default_conn_delay, only_use_default_delay, key: remote_addr |
//     server_addr} (concurrent connections per key for the node; past conn the connection waits
//     conn_delay() before its upstream is connected; past conn + burst it is closed)
#pragma once

#include <array>
#include <memory>
#include <string>
#include <vector>

#include "config/field_reader.hpp"
#include "plugins/ip_lists.hpp"
#include "plugins/limit/conn_counts.hpp"
#include "router/route_rule.hpp"

namespace portico::stream {

struct StreamPlugins {
  bool ip_restriction = false;
  plugins::IpLists ips;

  bool limit_conn = false;
  int64_t conn = 0;
  int64_t burst = 0;
  bool key_is_server_addr = false;
  plugins::ConnDelay delay;
  std::shared_ptr<plugins::ConnCounts> counts;  // kept by route id across config changes

  // Seconds the n-th concurrent connection of a key waits before it is served.
  double conn_delay(int64_t n) const { return delay.seconds(n, conn); }

  // Whether a client from `client` may connect at all (ip-restriction).
  bool admits(const std::array<uint8_t, 16>& client) const;
};

// Null when `plugins` is absent or empty; errors name fields under `path`.
std::shared_ptr<const StreamPlugins> parse_stream_plugins(const config::json& plugins,
                                                          const std::string& route_id,
                                                          const std::string& path,
                                                          config::Errors& errors);

}  // namespace portico::stream
