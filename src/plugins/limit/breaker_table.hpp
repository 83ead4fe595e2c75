// api-breaker's state: per key (host and path), how many answers were unhealthy and healthy and
// when the breaker last tripped. One table per declaring object, shared by every worker, kept
// across config changes; bounded, so a flood of random paths cannot grow it.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>

namespace portico::plugins {

struct BreakerRule {
  int64_t failures = 3;         // unhealthy answers per trip
  int64_t successes = 3;        // healthy answers in a row that forget the failures
  int64_t max_breaker_s = 300;  // longest break, seconds
};

struct BreakerState {
  int64_t unhealthy = 0;   // since the last reset; need not be in a row (APISIX)
  int64_t healthy = 0;     // in a row, since the last unhealthy answer
  int64_t tripped_ms = 0;  // when the breaker last tripped (0: never)
  int64_t seen_ms = 0;     // the last answer counted (eviction order)
};

// APISIX's formula, time injected. A trip every `failures` unhealthy answers; the n-th trip
// (n = unhealthy / failures) opens the breaker for 2^n seconds, at most max_breaker_s.
bool breaker_open(const BreakerState& s, const BreakerRule& rule, int64_t now_ms);
void count_unhealthy(BreakerState& s, const BreakerRule& rule, int64_t now_ms);
// Returns true when the state is back to nothing (the key can be forgotten).
bool count_healthy(BreakerState& s, const BreakerRule& rule, int64_t now_ms);

class BreakerTable {
 public:
  explicit BreakerTable(size_t max_keys = 10000);
  bool open(std::string_view key, const BreakerRule& rule, int64_t now_ms) const;
  void unhealthy(std::string_view key, const BreakerRule& rule, int64_t now_ms);
  void healthy(std::string_view key, const BreakerRule& rule, int64_t now_ms);
  size_t size() const { return size_.load(std::memory_order_relaxed); }

 private:
  static constexpr size_t kShards = 16;
  struct KeyHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  struct alignas(64) Shard {
    mutable std::mutex mutex;
    std::unordered_map<std::string, BreakerState, KeyHash, std::equal_to<>> states;
  };
  Shard& shard_of(std::string_view key) const;
  size_t max_per_shard_;
  std::unique_ptr<Shard[]> shards_;
  std::atomic<size_t> size_{0};  // lets the common case (no failures anywhere) skip the locks
};

// Long-lived tables by scope ("routes/r1#api-breaker"), as bucket_table.
std::shared_ptr<BreakerTable> breaker_table(const std::string& scope);

}  // namespace portico::plugins
