#include "plugins/limit/breaker_table.hpp"

#include <algorithm>

#include "plugins/limit/scoped_table.hpp"

namespace portico::plugins {

bool breaker_open(const BreakerState& s, const BreakerRule& rule, int64_t now_ms) {
  // APISIX keeps the trip time for max_breaker_sec only.
  if (s.tripped_ms == 0 || now_ms - s.tripped_ms > rule.max_breaker_s * 1000) return false;
  int64_t trips = std::max<int64_t>(1, s.unhealthy / rule.failures);
  int64_t seconds =
      trips >= 30 ? rule.max_breaker_s : std::min<int64_t>(int64_t{1} << trips, rule.max_breaker_s);
  return now_ms < s.tripped_ms + seconds * 1000;
}

void count_unhealthy(BreakerState& s, const BreakerRule& rule, int64_t now_ms) {
  ++s.unhealthy;
  s.healthy = 0;
  s.seen_ms = now_ms;
  if (s.unhealthy % rule.failures == 0) s.tripped_ms = now_ms;
}

bool count_healthy(BreakerState& s, const BreakerRule& rule, int64_t now_ms) {
  s.seen_ms = now_ms;
  if (++s.healthy < rule.successes) return false;
  s = BreakerState{};
  return true;
}

BreakerTable::BreakerTable(size_t max_keys)
    : max_per_shard_(std::max<size_t>(1, max_keys / kShards)),
      shards_(std::make_unique<Shard[]>(kShards)) {}

BreakerTable::Shard& BreakerTable::shard_of(std::string_view key) const {
  return shards_[std::hash<std::string_view>{}(key) % kShards];
}

bool BreakerTable::open(std::string_view key, const BreakerRule& rule, int64_t now_ms) const {
  if (size() == 0) return false;
  Shard& shard = shard_of(key);
  std::lock_guard lock(shard.mutex);
  auto it = shard.states.find(key);
  return it != shard.states.end() && breaker_open(it->second, rule, now_ms);
}

void BreakerTable::unhealthy(std::string_view key, const BreakerRule& rule, int64_t now_ms) {
  Shard& shard = shard_of(key);
  std::lock_guard lock(shard.mutex);
  auto it = shard.states.find(key);
  if (it == shard.states.end()) {
    if (shard.states.size() >= max_per_shard_) {
      // Room for the new key: the closed breaker that failed longest ago (it only holds a
      // count), else the oldest key. One at a time: a churn of new paths must not wipe the
      // counts of a path that keeps failing.
      auto victim = shard.states.end();
      bool victim_open = true;
      for (auto k = shard.states.begin(); k != shard.states.end(); ++k) {
        bool open = breaker_open(k->second, rule, now_ms);
        if (victim == shard.states.end() || (victim_open && !open) ||
            (open == victim_open && k->second.seen_ms < victim->second.seen_ms)) {
          victim = k;
          victim_open = open;
        }
      }
      shard.states.erase(victim);
      size_.fetch_sub(1, std::memory_order_relaxed);
    }
    it = shard.states.emplace(std::string(key), BreakerState{}).first;
    size_.fetch_add(1, std::memory_order_relaxed);
  }
  count_unhealthy(it->second, rule, now_ms);
}

void BreakerTable::healthy(std::string_view key, const BreakerRule& rule, int64_t now_ms) {
  if (size() == 0) return;  // healthy answers count only after a failure
  Shard& shard = shard_of(key);
  std::lock_guard lock(shard.mutex);
  auto it = shard.states.find(key);
  if (it == shard.states.end()) return;
  if (count_healthy(it->second, rule, now_ms)) {
    shard.states.erase(it);
    size_.fetch_sub(1, std::memory_order_relaxed);
  }
}

std::shared_ptr<BreakerTable> breaker_table(const std::string& scope) {
  return scoped_table<BreakerTable>(scope);
}

}  // namespace portico::plugins
