// The `limit-count` plugin's config, as APISIX 3.x defines it (plus Portico's window_type),
// validated once into an immutable struct.
#pragma once

#include <cstdint>
#include <string>

#include "config/field_reader.hpp"
#include "plugins/limit/redis_client.hpp"
#include "plugins/limit/window.hpp"

namespace portico::limit {

enum class KeyType { var, var_combination, constant };
enum class CountPolicy { local, redis };

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
  std::string group;    // non-empty: every route with this group shares one counter
  RedisSettings redis;  // policy == redis only

  int64_t window_ms() const { return time_window * 1000; }
};

// redis_host (required when `used`), redis_port, redis_username, redis_password,
// redis_database, redis_timeout, redis_ssl (refused), redis_ssl_verify: APISIX's fields, shared by
// limit-count and limit-req.
void read_redis_settings(config::ObjectReader& r, bool used, RedisSettings& out);

// Reads `conf` (errors under `path`, e.g. "routes[0].plugins.limit-count"). The result is
// meaningful only when no error was added.
LimitCountConfig parse_limit_count_config(const config::json& conf, const std::string& path,
                                          config::Errors& errors);

}  // namespace portico::limit
