// limit-req's `redis` policy: the leaky bucket of leaky_bucket.hpp kept in Redis, one atomic
// script per request with Redis's clock, so every node sharing the Redis drains one bucket per
// key (the seed system's message frequency control across a cluster).
#pragma once

#include <cstdint>
#include <string>

#include "core/asio.hpp"
#include "plugins/limit/leaky_bucket.hpp"
#include "plugins/limit/redis_client.hpp"

namespace portico::limit {

struct RedisBucketTake {
  std::string error;  // empty on success (then `decision` is the bucket's)
  plugins::BucketDecision decision;
  bool ok() const { return error.empty(); }
};

// Redis layout: a hash {e: excess in thousandths of a request, l: Redis time of the last
// accepted request in ms}, expiring once the excess has drained. A rejection changes nothing.
Task<RedisBucketTake> take_redis_bucket(RedisScriptRunner& redis, std::string key,
                                        int64_t rate_milli, int64_t burst_milli);

}  // namespace portico::limit
