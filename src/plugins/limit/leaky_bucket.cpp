#include "plugins/limit/leaky_bucket.hpp"

#include <algorithm>
#include <functional>

#include "plugins/limit/scoped_table.hpp"

namespace portico::plugins {

BucketDecision leak_and_add(BucketState* state, int64_t rate_milli, int64_t burst_milli,
                            int64_t now_ms) {
  BucketDecision d;
  int64_t excess = 0;
  if (state->last_ms != 0) {
    int64_t elapsed = std::abs(now_ms - state->last_ms);
    // resty.limit.req: max(excess - rate * |elapsed| / 1000 + 1000, 0), in integers. What leaked
    // is capped where it empties the bucket anyway: a long pause times a high rate overflows.
    int64_t full = state->excess_milli + 1000;
    int64_t leaked = elapsed > full * 1000 / rate_milli ? full : rate_milli * elapsed / 1000;
    excess = std::max<int64_t>(full - leaked, 0);
    if (excess > burst_milli) {
      d.rejected = true;
      d.excess_milli = excess;
      return d;
    }
  }
  state->excess_milli = excess;
  state->last_ms = now_ms;
  d.excess_milli = excess;
  d.delay_ms = excess * 1000 / rate_milli;  // excess / rate seconds
  return d;
}

LeakyBucketTable::LeakyBucketTable(size_t max_keys)
    : max_per_shard_(std::max<size_t>(1, max_keys / kShards)),
      shards_(std::make_unique<Shard[]>(kShards)) {}

void LeakyBucketTable::make_room(Shard& shard, int64_t rate_milli, int64_t now_ms) {
  // Drained keys carry no information.
  std::erase_if(shard.states, [&](const auto& kv) {
    return kv.second.excess_milli - rate_milli * (now_ms - kv.second.last_ms) / 1000 <= -1000;
  });
  if (shard.states.size() < max_per_shard_) return;
  // Least recently seen: a key being rejected right now is in use and must not be dropped
  // (its next request would pass as a first one).
  auto oldest = std::min_element(shard.states.begin(), shard.states.end(), [](auto& a, auto& b) {
    return a.second.seen_ms < b.second.seen_ms;
  });
  shard.states.erase(oldest);
}

BucketDecision LeakyBucketTable::take(std::string_view key, int64_t rate_milli, int64_t burst_milli,
                                      int64_t now_ms) {
  Shard& shard = shards_[std::hash<std::string_view>{}(key) % kShards];
  std::lock_guard lock(shard.mutex);
  auto it = shard.states.find(key);
  if (it == shard.states.end()) {
    if (shard.states.size() >= max_per_shard_) make_room(shard, rate_milli, now_ms);
    BucketState fresh;
    BucketDecision d = leak_and_add(&fresh, rate_milli, burst_milli, now_ms);
    fresh.seen_ms = now_ms;
    shard.states.emplace(std::string(key), fresh);
    return d;
  }
  it->second.seen_ms = now_ms;
  return leak_and_add(&it->second, rate_milli, burst_milli, now_ms);
}

size_t LeakyBucketTable::size() const {
  size_t n = 0;
  for (size_t i = 0; i < kShards; ++i) {
    std::lock_guard lock(shards_[i].mutex);
    n += shards_[i].states.size();
  }
  return n;
}

std::shared_ptr<LeakyBucketTable> bucket_table(const std::string& scope) {
  return scoped_table<LeakyBucketTable>(scope);
}

}  // namespace portico::plugins
