// tlv-bridge's config: which `protos` object and message types convert TLV bodies to JSON, the
// backend's framing, and the session's limits. Parsed once per config change.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "bridge/tlv_envelope.hpp"
#include "config/field_reader.hpp"
#include "plugins/limit/leaky_bucket.hpp"
#include "plugins/plugin.hpp"
#include "stream/stream_route.hpp"
#include "stream/tlv_framing.hpp"

namespace portico::plugins {

// A route's open polling sessions in this process, in all and per client address. Taken and
// given back on opening and ending a session (rare next to polls), from any worker.
class PollSessionCount {
 public:
  // False (nothing taken) when either limit is reached.
  bool take(const std::string& client, int64_t most, int64_t most_per_client);
  void give_back(const std::string& client);

  // Bytes of messages the route's polling sessions in this process hold for their clients
  // (max_poll_memory). Any worker.
  std::atomic<int64_t> queued_bytes{0};

 private:
  std::mutex mutex_;
  int64_t total_ = 0;
  std::unordered_map<std::string, int64_t> per_client_;
};

struct TlvBridgeConfig {
  std::string proto_id;
  bridge::CmdTypeNames types;   // cmd -> message type, both directions
  stream::TlvFraming framing;   // of the backend's frames (TLV.md's by default)
  double idle_timeout = 180;    // seconds without a WebSocket frame from the client: closed
  uint32_t error_status = 400;  // status of the answer to a message the bridge refuses
  size_t max_message = 2 * 1024 * 1024;  // largest WebSocket message accepted from a client
  bool send_proxy_protocol = false;      // PROXY v2 header with the client address first
  bool http_rpc = true;     // a POST of one envelope is answered with the backend's reply
  double rpc_timeout = 10;  // seconds an HTTP RPC waits for its reply: then 504
  // RPC connections go back to the worker's pool after a clean reply (the upstream's keepalive
  // settings), instead of one TCP connection per call. Off by default: a backend that keeps
  // state per connection (a login) would see calls of different clients on one connection.
  bool rpc_keepalive = false;
  // `rate_limit` and `commands` as a tlv stream route has them (docs/streams.md), applied to
  // every frame a client sends through the bridge; null when neither is configured. Per-user
  // buckets are the route's own, kept across config changes.
  std::shared_ptr<const stream::CompiledStreamRoute> policy;
  // HTTP RPCs have no connection of their own: rate_limit.per_connection applies to them per
  // client address instead (kept across config changes like per-user buckets).
  std::shared_ptr<LeakyBucketTable> rpc_client_buckets;
  // WebSocket handshakes from pages of other origins are refused (403) when this is not empty:
  // a browser sends the user's cookies with any page's WebSocket (cross-site hijacking).
  std::vector<std::string> allow_origins;
  // Subprotocols the bridge speaks: the first the client offers is chosen (browsers fail a
  // handshake that offered some and got none back).
  std::vector<std::string> subprotocols;
  // Long polling (poll_session.hpp): sessions held between HTTP requests for clients without
  // WebSocket.
  bool long_polling = false;
  double poll_wait = 25;  // seconds a poll waits for a message at most (clients may ask less)
  int64_t max_poll_sessions = 4096;  // open polling sessions of the route in this process
  // ... of them opened from one client address: one client must not take every slot.
  int64_t max_poll_sessions_per_client = 256;
  // Bytes of messages the route's polling sessions in this process may hold for their clients:
  // past it, a session whose client has left its queue full for kFullTooLongMs ends, and its
  // queue goes (clients that stopped acknowledging must not hold the process's memory).
  int64_t max_poll_memory = int64_t{256} << 20;
  // Shared by every instance of the route's config (kept across config changes): sessions open.
  std::shared_ptr<PollSessionCount> poll_sessions;
  std::string route_key;  // Scope::key(): a session id works only on the route that opened it
};

// Reads the plugin's `conf`; errors name fields under `path`.
TlvBridgeConfig parse_tlv_bridge_config(const config::json& conf, const Scope& scope,
                                        const std::string& path, config::Errors& errors);

}  // namespace portico::plugins
