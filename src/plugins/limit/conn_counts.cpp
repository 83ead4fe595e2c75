#include "plugins/limit/conn_counts.hpp"

#include <functional>

namespace portico::plugins {

int64_t ConnCounts::add(const std::string& key, int64_t delta) {
  Shard& s = shards_[std::hash<std::string>{}(key) % kShards];
  std::lock_guard lock(s.mutex);
  int64_t& n = s.counts[key];
  n += delta;
  int64_t now = n;
  if (n <= 0) s.counts.erase(key);
  return now;
}

std::shared_ptr<ConnCounts> conn_counts(const std::string& scope) {
  static std::mutex mutex;
  static std::unordered_map<std::string, std::weak_ptr<ConnCounts>> all;
  std::lock_guard lock(mutex);
  auto c = all[scope].lock();
  if (!c) {
    c = std::make_shared<ConnCounts>();
    all[scope] = c;
  }
  return c;
}

}  // namespace portico::plugins
