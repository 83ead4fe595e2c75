// The leaky bucket of resty.limit.req (nginx's limit_req), to the millisecond: a request adds
// one unit of excess, excess drains at `rate` per second, and a request that would push the
// excess past `burst` is rejected without changing the state. Shared by HTTP limit-req and the
// TLV per-message limits.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>

namespace portico::plugins {

struct BucketState {
  int64_t excess_milli = 0;  // 1000 = one request over the rate
  int64_t last_ms = 0;       // the last accepted request (the formula's clock)
  int64_t seen_ms = 0;       // the last request, accepted or not (eviction order)
};

struct BucketDecision {
  bool rejected = false;
  int64_t delay_ms = 0;  // how long to hold the request so it leaves at the rate
  int64_t excess_milli = 0;
};

// The formula alone, on one state (time injected). rate_milli: 1000 = 1 request/s.
BucketDecision leak_and_add(BucketState* state, int64_t rate_milli, int64_t burst_milli,
                            int64_t now_ms);

// One state per key for the whole process (every worker), in striped shards. A key whose
// excess has drained is the same as no key, so full shards drop those first; a flood of random
// keys is capped at `max_keys` (the oldest drained keys go, then the least recently used).
class LeakyBucketTable {
 public:
  explicit LeakyBucketTable(size_t max_keys = 100000);
  BucketDecision take(std::string_view key, int64_t rate_milli, int64_t burst_milli,
                      int64_t now_ms);
  size_t size() const;

 private:
  static constexpr size_t kShards = 32;
  struct KeyHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  struct alignas(64) Shard {
    mutable std::mutex mutex;
    std::unordered_map<std::string, BucketState, KeyHash, std::equal_to<>> states;
  };
  void make_room(Shard& shard, int64_t rate_milli, int64_t now_ms);
  size_t max_per_shard_;
  std::unique_ptr<Shard[]> shards_;
};

// Long-lived tables by scope ("routes/r1#limit-req"): kept while some plugin instance holds
// them, so a config change that keeps the scope keeps the buckets.
std::shared_ptr<LeakyBucketTable> bucket_table(const std::string& scope);

}  // namespace portico::plugins
