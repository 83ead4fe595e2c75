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

ConnDelay ConnDelay::read(config::ObjectReader& r, bool required) {
  ConnDelay d;
  const config::json* v = r.raw("default_conn_delay");
  if ((v || required) && (!v || !v->is_number() || v->get<double>() <= 0))
    r.error("default_conn_delay", required ? "is required and must be a number of seconds > 0"
                                           : "must be a number of seconds > 0");
  else if (v)
    d.unit = v->get<double>();
  d.only_unit = r.boolean_or("only_use_default_delay", false);
  return d;
}

}  // namespace portico::plugins
