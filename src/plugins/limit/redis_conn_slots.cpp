#include "plugins/limit/redis_conn_slots.hpp"

#include <atomic>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>

namespace portico::limit {
namespace {

// KEYS[1] the key's slots, ARGV[1] limit, ARGV[2] ttl (ms), ARGV[3] member. Returns {taken 0|1,
// slots held (with this one when taken)}.
const RedisScript kTakeSlot(R"lua(
redis.replicate_commands() -- (Redis 3.2/4: writes after TIME; a no-op from 5 on)
local key = KEYS[1]
local kind = redis.call('TYPE', key).ok
if kind ~= 'zset' and kind ~= 'none' then redis.call('DEL', key) end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
local held = redis.call('ZCARD', key)
if held >= tonumber(ARGV[1]) then return {0, held} end
local ttl = tonumber(ARGV[2])
redis.call('ZADD', key, now + ttl, ARGV[3])
-- The key outlives its newest slot's expiry; never shortened (a config may lower key_ttl while
-- older slots still count).
if redis.call('PTTL', key) < ttl then redis.call('PEXPIRE', key, ttl) end
return {1, held + 1}
)lua");

// KEYS[1] the key's slots, ARGV[1] member. Returns {removed 0|1}.
const RedisScript kReleaseSlot(R"lua(
return {redis.call('ZREM', KEYS[1], ARGV[1])}
)lua");

std::atomic<int64_t> g_pending_releases{0};

Task<> release_with_retries(CountPolicy policy, RedisSettings redis, RedisClusterSettings cluster,
                            std::string key, std::string member) {
  struct Pending {  // (counted by release_redis_slot_later, before the coroutine runs)
    ~Pending() { g_pending_releases.fetch_sub(1, std::memory_order_relaxed); }
  } pending;
  auto ex = co_await asio::this_coro::executor;
  std::string error;
  for (int attempt = 0; attempt < 3; ++attempt) {
    if (attempt > 0) {
      Timer delay(ex);
      delay.expires_after(std::chrono::seconds(1));
      co_await delay.async_wait(await_ec);
    }
    RedisScriptRunner& runner = redis_runner(ex, policy, redis, cluster);
    error = co_await release_redis_slot(runner, key, member);
    if (error.empty()) co_return;
  }
  thread_local int64_t last_warning_ms = 0;
  warn_redis_failure("limit-conn", error + " (the slot stays held until key_ttl)", last_warning_ms);
}

}  // namespace

int64_t pending_slot_releases() { return g_pending_releases.load(std::memory_order_relaxed); }

void release_redis_slot_later(Executor ex, CountPolicy policy, RedisSettings redis,
                              RedisClusterSettings cluster, std::string key, std::string member) {
  // Counted now, not when the coroutine starts: a stopping server must see it at once.
  g_pending_releases.fetch_add(1, std::memory_order_relaxed);
  asio::co_spawn(ex,
                 release_with_retries(policy, std::move(redis), std::move(cluster), std::move(key),
                                      std::move(member)),
                 asio::detached);
}

Task<RedisSlotTake> take_redis_slot(RedisScriptRunner& redis, std::string key, std::string member,
                                    int64_t limit, int64_t ttl_ms) {
  std::vector<std::string> args{std::to_string(limit), std::to_string(ttl_ms), std::move(member)};
  auto r = co_await redis.eval_integers(kTakeSlot, std::move(key), std::move(args), 2);
  if (!r.error.empty()) co_return RedisSlotTake{std::move(r.error), r.sent, false, 0};
  co_return RedisSlotTake{{}, true, r.values[0] == 1, r.values[1]};
}

Task<std::string> release_redis_slot(RedisScriptRunner& redis, std::string key,
                                     std::string member) {
  std::vector<std::string> args{std::move(member)};
  auto r = co_await redis.eval_integers(kReleaseSlot, std::move(key), std::move(args), 1);
  co_return std::move(r.error);
}

}  // namespace portico::limit
