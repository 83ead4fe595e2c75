// Concurrent requests or connections per key for the whole process (limit-conn on routes and
// on stream routes), in striped shards; a key back at zero is removed, so idle keys cost nothing.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

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

// Long-lived counts by scope ("routes/r1#limit-conn"), kept while a plugin instance holds them.
std::shared_ptr<ConnCounts> conn_counts(const std::string& scope);

}  // namespace portico::plugins
