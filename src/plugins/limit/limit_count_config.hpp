// The `limit-count` plugin's config, as APISIX 3.x defines it (plus Portico's window_type),
// validated once into an immutable struct.
#pragma once

#include <cstdint>
#include <string>

#include "config/field_reader.hpp"
#include "plugins/limit/redis_client.hpp"
#include "plugins/limit/redis_cluster.hpp"
#include "plugins/limit/window.hpp"

namespace portico::limit {

enum class KeyType { var, var_combination, constant };
enum class CountPolicy { local, redis, redis_cluster };

struct LimitCountConfig {
  int64_t count = 0;        // requests allowed per window
  int64_t time_window = 0;  // seconds
  WindowType window_type = WindowType::fixed;
  KeyType key_type = KeyType::var;
  std::string key = "remote_addr";  // a variable name, "$a $b" for var_combination, or a constant
  int rejected_code = 503;
  std::string rejected_msg;  // empty: no body
  CountPolicy policy = CountPolicy::local;
  bool allow_degradation = false;  // Redis unreachable: let requests through instead of 500
  bool show_limit_quota_header = true;
  std::string group;             // non-empty: every route with this group shares one counter
  RedisSettings redis;           // policy == redis only
  RedisClusterSettings cluster;  // policy == redis_cluster only

  int64_t window_ms() const { return time_window * 1000; }
};

// The Redis fields of APISIX's limit plugins (limit-count and limit-req), by `policy`
// ("local", "redis" or "redis-cluster"): redis_host (required for redis), redis_port,
// redis_username, redis_password, redis_database, redis_timeout, redis_ssl,
// redis_ssl_verify; redis_cluster_nodes and redis_cluster_name (required for redis-cluster),
// redis_cluster_ssl, redis_cluster_ssl_verify, redis_keepalive_timeout and
// redis_keepalive_pool (accepted: one pipelined connection per node and worker). Returns the
// policy; an unknown one is an error.
CountPolicy read_redis_policy(config::ObjectReader& r, RedisSettings& redis,
                              RedisClusterSettings& cluster);

// The calling worker's runner of the limits' scripts for `policy` (redis or redis_cluster).
RedisScriptRunner& redis_runner(Executor ex, CountPolicy policy, const RedisSettings& redis,
                                const RedisClusterSettings& cluster);

// Reads `conf` (errors under `path`, e.g. "routes[0].plugins.limit-count"). The result is
// meaningful only when no error was added.
LimitCountConfig parse_limit_count_config(const config::json& conf, const std::string& path,
                                          config::Errors& errors);

}  // namespace portico::limit
