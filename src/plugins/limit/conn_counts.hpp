// Concurrent requests or connections per key for the whole process (limit-conn on routes and
// on stream routes), in striped shards; a key back at zero is removed, so idle keys cost nothing.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

#include "config/field_reader.hpp"

namespace portico::plugins {

class ConnCounts {
 public:
  // Adds `delta` to the key's count and returns the new count.
  int64_t add(const std::string& key, int64_t delta);

 private:
  static constexpr size_t kShards = 32;
  struct alignas(64) Shard {
    std::mutex mutex;
    std::unordered_map<std::string, int64_t> counts;
  };
  Shard shards_[kShards];
};

// resty.limit.conn's delay for the holder of the n-th concurrent slot of a key: none up to
// `conn`, then `unit` (default_conn_delay) per `conn` over the limit, or always one `unit`
// with only_use_default_delay.
struct ConnDelay {
  double unit = 0;  // 0: no delay
  bool only_unit = false;
  double seconds(int64_t n, int64_t conn) const {
    if (n <= conn || unit <= 0) return 0;
    return only_unit ? unit : unit * static_cast<double>((n - 1) / conn);
  }
  // default_conn_delay and only_use_default_delay (APISIX requires the first on routes).
  static ConnDelay read(config::ObjectReader& r, bool required);
};

// Long-lived counts by scope ("routes/r1#limit-conn"), kept while a plugin instance holds them.
std::shared_ptr<ConnCounts> conn_counts(const std::string& scope);

}  // namespace portico::plugins
