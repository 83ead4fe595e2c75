// limit-conn's `redis` and `redis-cluster` policies: concurrent requests per key counted across
// every node sharing the Redis. Each request holds a slot, a member of a sorted set scored by
// when it expires (`key_ttl` after it was taken, on Redis's clock): released when the request
// ends, and gone by itself if that never comes (a node that died with requests in flight), so a
// crash cannot leave a key full for ever. A request that lasts renews its slot (keep_redis_slot).
#pragma once

#include <cstdint>
#include <memory>
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

// Where one limit-conn's slots live and how long one lasts unrenewed. Shared by the requests
// holding slots, so a config change while they run does not pull it from under them.
struct RedisSlotPlace {
  CountPolicy policy = CountPolicy::redis;
  RedisSettings redis;
  RedisClusterSettings cluster;
  int64_t ttl_ms = 3600 * 1000;  // key_ttl
};

// Takes a slot named `member` (unique per request) of `key` when fewer than `limit` are held.
Task<RedisSlotTake> take_redis_slot(RedisScriptRunner& redis, std::string key, std::string member,
                                    int64_t limit, int64_t ttl_ms);

// Gives the slot back; empty on success.
Task<std::string> release_redis_slot(RedisScriptRunner& redis, std::string key, std::string member);

// Renews a held slot's expiry to key_ttl from now; false (and no error) when the slot is gone
// (released, or expired while Redis was out of reach): a renewal never brings one back.
struct RedisSlotRenewal {
  std::string error;
  bool held = false;
};
Task<RedisSlotRenewal> renew_redis_slot(RedisScriptRunner& redis, std::string key,
                                        std::string member, int64_t ttl_ms);

// Keeps a taken slot from expiring while its request lasts: a WebSocket session may last hours,
// longer than key_ttl, which is only meant to bound what a dead node holds. The calling worker
// renews it every key_ttl/3 until forget_redis_slot(member) on the same worker (the log phase).
void keep_redis_slot(Executor ex, std::shared_ptr<const RedisSlotPlace> place, std::string key,
                     std::string member);
void forget_redis_slot(const std::string& member);

// release_redis_slot in the background on the worker `ex` (the log phase cannot wait): tried up
// to three times, a second apart, since a slot not given back stays held for key_ttl.
void release_redis_slot_later(Executor ex, std::shared_ptr<const RedisSlotPlace> place,
                              std::string key, std::string member);

// Background releases not finished yet: a stopping server waits for them (within its grace).
int64_t pending_slot_releases();

}  // namespace portico::limit
