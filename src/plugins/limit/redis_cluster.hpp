// The limits' `redis-cluster` policy (APISIX's redis_cluster_nodes, redis_cluster_name): their
// one-key scripts sent to the master that serves the key's slot in a Redis Cluster. The slot map
// comes from CLUSTER SLOTS, asked of the known masters and then of the configured nodes; a MOVED
// answer sends the call to the new owner at once and refreshes the map behind it, an ASK answer
// sends it once more with ASKING (a slot being migrated), as Redis Cluster clients must.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/asio.hpp"
#include "plugins/limit/redis_client.hpp"

namespace portico::limit {

struct RedisClusterSettings {
  std::string name;                // redis_cluster_name: for messages
  std::vector<std::string> nodes;  // redis_cluster_nodes, "host:port" (a v6 host in brackets)
  std::string username;            // with password: AUTH as this ACL user
  std::string password;            // empty: no AUTH
  int64_t timeout_ms = 1000;       // per command, and for each connect
  bool tls = false;                // redis_cluster_ssl: TLS to every node (RedisSettings::tls)
  bool tls_verify = false;         // redis_cluster_ssl_verify

  bool operator==(const RedisClusterSettings&) const = default;
  auto operator<=>(const RedisClusterSettings&) const = default;
};

// Redis Cluster's hash slot of a key: CRC16 (XMODEM) of the key, or of its hash tag (what lies
// between the first '{' and the next '}', when not empty), modulo 16384.
uint16_t redis_key_slot(std::string_view key);

// "host:port" (host a name, an IPv4 address or a bracketed IPv6 one): false when not that.
bool split_host_port(std::string_view text, std::string& host, uint16_t& port);

// The target of a "MOVED <slot> <host>:<port>" or "ASK ..." error (`kind` "MOVED" or "ASK"), as
// Redis writes it: an IPv6 host unbracketed, an empty host for "the node that answered".
bool parse_redis_redirect(std::string_view error, std::string_view kind, std::string& host,
                          uint16_t& port);

// One worker's view of one cluster: its slot map and a pipelined client per master. Calls must
// come from the executor's thread.
class RedisCluster final : public RedisScriptRunner {
 public:
  static constexpr int kSlots = 16384;
  static constexpr int kMaxRedirections = 5;
  // A map read at most this often for a failure (a master down fails every request for it);
  // MOVED still updates its slot at once.
  static constexpr int64_t kRefreshIntervalMs = 1000;

  RedisCluster(Executor ex, RedisClusterSettings settings);
  ~RedisCluster();
  RedisCluster(const RedisCluster&) = delete;
  RedisCluster& operator=(const RedisCluster&) = delete;

  Task<Integers> eval_integers(const RedisScript& script, std::string key,
                               std::vector<std::string> args, size_t n) override;

  // No call or map refresh runs, and none started since `since_ms` (steady clock).
  bool unused_since(int64_t since_ms) const { return in_flight_ == 0 && last_used_ms_ < since_ms; }
  // The master serving `slot` by the current map ("host:port"), empty when none is known.
  std::string owner_of(uint16_t slot) const;

 private:
  struct Node {
    std::string host;
    uint16_t port;
    std::unique_ptr<RedisClient> client;
  };
  // The map from CLUSTER SLOTS; empty on success, else why no node gave one.
  Task<std::string> refresh();
  // refresh() unless one runs: callers that need the map wait for the running one.
  Task<std::string> refresh_shared();
  // A refresh behind a MOVED or a failure, not awaited: at most one at a time, and at most one
  // per kRefreshIntervalMs.
  void refresh_soon();
  static Task<> refresh_detached(RedisCluster* self, std::shared_ptr<bool> alive);
  // Clients of addresses no slot names and no seed is, dropped when no call runs (addresses
  // change in a cluster's life: pods move).
  void forget_unused_nodes();
  size_t node_index(const std::string& host, uint16_t port);
  std::string describe(const std::string& what) const;

  Executor ex_;
  RedisClusterSettings settings_;
  // Compacted by forget_unused_nodes() only while no call runs: calls hold indexes.
  std::vector<Node> nodes_;
  bool compact_pending_ = false;  // a map came while calls ran: forget when the last one ends
  std::vector<int32_t> slots_;    // kSlots node indexes, -1 unserved; empty before the first map
  bool refreshing_ = false;
  int64_t refresh_started_ms_ = 0;  // steady clock
  std::string last_refresh_error_;
  Timer refreshed_;  // waiters of a running refresh wait on it; cancelled when it ends
  int in_flight_ = 0;
  int64_t last_used_ms_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

// A worker's clusters, one per distinct settings (as RedisClients).
class RedisClusters {
 public:
  RedisCluster& get(Executor ex, const RedisClusterSettings& settings);
  static constexpr int64_t kUnusedMs = 60'000;
  static RedisClusters& of_this_thread();

 private:
  std::map<RedisClusterSettings, std::unique_ptr<RedisCluster>> clusters_;
};

}  // namespace portico::limit
