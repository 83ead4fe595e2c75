// limit-conn's `redis` and `redis-cluster` policies: concurrent requests per key counted across
// every node sharing the Redis. Each request holds a slot, a member of a sorted set scored by
// when it expires (`key_ttl` after it was taken, on Redis's clock): released when the request
// ends, and gone by itself if that never comes (a node that died with requests in flight), so a
// crash cannot leave a key full for ever.
#pragma once

#include <cstdint>
#include <string>

#include "core/asio.hpp"
#include "plugins/limit/limit_count_config.hpp"
#include "plugins/limit/redis_client.hpp"

namespace portico::limit {

struct RedisSlotTake {
  std::string error;     // empty on success
  bool sent = false;     // with an error: the take may still have run (see RedisResult::sent)
  bool taken = false;    // false: `limit` slots were already held
  int64_t position = 0;  // slots held with this one (when taken), or held (when not)
};

// Takes a slot named `member` (unique per request) of `key` when fewer than `limit` are held.
Task<RedisSlotTake> take_redis_slot(RedisScriptRunner& redis, std::string key, std::string member,
                                    int64_t limit, int64_t ttl_ms);

// Gives the slot back; empty on success.
Task<std::string> release_redis_slot(RedisScriptRunner& redis, std::string key, std::string member);

// release_redis_slot in the background on the worker `ex` (the log phase cannot wait): tried up
// to three times, a second apart, since a slot not given back stays held for key_ttl.
void release_redis_slot_later(Executor ex, CountPolicy policy, RedisSettings redis,
                              RedisClusterSettings cluster, std::string key, std::string member);

// Background releases not finished yet: a stopping server waits for them (within its grace).
int64_t pending_slot_releases();

}  // namespace portico::limit
