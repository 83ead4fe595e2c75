#include "plugins/limit/redis_conn_slots.hpp"

#include <algorithm>
#include <atomic>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <set>
#include <unordered_map>

#include "core/deadline.hpp"

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

// KEYS[1] the key's slots, ARGV[1] ttl (ms), ARGV[2] member. Returns {renewed 0|1}: 0 when the
// member is gone (released) or past its expiry (Redis was out of reach for longer than
// key_ttl), which is never brought back.
const RedisScript kRenewSlot(R"lua(
redis.replicate_commands()
local key = KEYS[1]
if redis.call('TYPE', key).ok ~= 'zset' then return {0} end
local score = redis.call('ZSCORE', key, ARGV[2])
if not score then return {0} end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if tonumber(score) <= now then
  redis.call('ZREM', key, ARGV[2])
  return {0}
end
local ttl = tonumber(ARGV[1])
redis.call('ZADD', key, now + ttl, ARGV[2])
if redis.call('PTTL', key) < ttl then redis.call('PEXPIRE', key, ttl) end
return {1}
)lua");

std::atomic<int64_t> g_pending_releases{0};

// The slots a worker keeps alive, renewed when due by one coroutine per worker that runs only
// while there is something to keep (a stopping worker is not held up by its timer).
struct KeptSlot {
  std::shared_ptr<const RedisSlotPlace> place;
  std::string key;
  int64_t due_ms = 0;  // steady clock
};
struct SlotKeeper {
  std::unordered_map<std::string, KeptSlot> slots;  // by member
  std::set<std::pair<int64_t, std::string>> due;    // (due_ms, member), soonest first
  Timer* timer = nullptr;                           // the running keeper's, while it waits
  bool running = false;
};
// Shared with the running keeper: a worker's io_context may go after its thread's locals.
thread_local std::shared_ptr<SlotKeeper> t_keeper = std::make_shared<SlotKeeper>();

int64_t renew_every_ms(const RedisSlotPlace& place) {
  return std::max<int64_t>(place.ttl_ms / 3, 1);
}

Task<> renew_slot(std::shared_ptr<const RedisSlotPlace> place, std::string key,
                  std::string member) {
  auto ex = co_await asio::this_coro::executor;
  RedisScriptRunner& runner = redis_runner(ex, place->policy, place->redis, place->cluster);
  RedisSlotRenewal r = co_await renew_redis_slot(runner, key, member, place->ttl_ms);
  if (!r.error.empty()) {  // tried again when next due, a third of key_ttl before it expires
    thread_local int64_t last_warning_ms = 0;
    warn_redis_failure("limit-conn", r.error + " (renewing a held slot)", last_warning_ms);
  } else if (!r.held) {
    forget_redis_slot(member);
  }
}

Task<> run_keeper() {
  std::shared_ptr<SlotKeeper> keeper = t_keeper;
  SlotKeeper& k = *keeper;
  Timer timer(co_await asio::this_coro::executor);
  struct Done {  // also when the worker's io_context goes with this coroutine suspended
    SlotKeeper& k;
    ~Done() {
      k.timer = nullptr;
      k.running = false;
    }
  } done{k};
  k.timer = &timer;
  while (!k.due.empty()) {
    const auto [due_ms, member] = *k.due.begin();
    const int64_t now = steady_now_ms();
    if (due_ms > now) {
      timer.expires_after(std::chrono::milliseconds(due_ms - now));
      co_await timer.async_wait(await_ec);  // cancelled: the soonest changed, look again
      continue;
    }
    k.due.erase(k.due.begin());
    auto it = k.slots.find(member);
    if (it == k.slots.end()) continue;
    KeptSlot& slot = it->second;
    // On its own phase, not from this wake: slots met by one late wake do not become bunched.
    const int64_t every = renew_every_ms(*slot.place);
    slot.due_ms = due_ms + every * ((now - due_ms) / every + 1);
    k.due.emplace(slot.due_ms, member);
    asio::co_spawn(timer.get_executor(), renew_slot(slot.place, slot.key, member), asio::detached);
  }
}

Task<> release_with_retries(std::shared_ptr<const RedisSlotPlace> place, std::string key,
                            std::string member) {
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
    RedisScriptRunner& runner = redis_runner(ex, place->policy, place->redis, place->cluster);
    error = co_await release_redis_slot(runner, key, member);
    if (error.empty()) co_return;
  }
  thread_local int64_t last_warning_ms = 0;
  warn_redis_failure("limit-conn", error + " (the slot stays held until key_ttl)", last_warning_ms);
}

}  // namespace

int64_t pending_slot_releases() { return g_pending_releases.load(std::memory_order_relaxed); }

void release_redis_slot_later(Executor ex, std::shared_ptr<const RedisSlotPlace> place,
                              std::string key, std::string member) {
  // Counted now, not when the coroutine starts: a stopping server must see it at once.
  g_pending_releases.fetch_add(1, std::memory_order_relaxed);
  asio::co_spawn(ex, release_with_retries(std::move(place), std::move(key), std::move(member)),
                 asio::detached);
}

void keep_redis_slot(Executor ex, std::shared_ptr<const RedisSlotPlace> place, std::string key,
                     std::string member) {
  SlotKeeper& k = *t_keeper;
  const int64_t due_ms = steady_now_ms() + renew_every_ms(*place);
  auto [it, added] =
      k.slots.try_emplace(member, KeptSlot{std::move(place), std::move(key), due_ms});
  if (!added) return;
  k.due.emplace(due_ms, std::move(member));
  if (!k.running) {
    k.running = true;
    asio::co_spawn(ex, run_keeper(), asio::detached);
  } else if (k.timer && k.due.begin()->first == due_ms) {
    k.timer->cancel();  // sooner than what the keeper waits for (a shorter key_ttl)
  }
}

void forget_redis_slot(const std::string& member) {
  SlotKeeper& k = *t_keeper;
  auto it = k.slots.find(member);
  if (it == k.slots.end()) return;
  k.due.erase({it->second.due_ms, member});
  k.slots.erase(it);
  if (k.due.empty() && k.timer) k.timer->cancel();  // nothing left: the keeper ends now
}

Task<RedisSlotTake> take_redis_slot(RedisScriptRunner& redis, std::string key, std::string member,
                                    int64_t limit, int64_t ttl_ms) {
  std::vector<std::string> args{std::to_string(limit), std::to_string(ttl_ms), std::move(member)};
  auto r = co_await redis.eval_integers(kTakeSlot, std::move(key), std::move(args), 2);
  if (!r.error.empty()) co_return RedisSlotTake{std::move(r.error), r.sent, false, 0};
  co_return RedisSlotTake{{}, true, r.values[0] == 1, r.values[1]};
}

Task<RedisSlotRenewal> renew_redis_slot(RedisScriptRunner& redis, std::string key,
                                        std::string member, int64_t ttl_ms) {
  std::vector<std::string> args{std::to_string(ttl_ms), std::move(member)};
  auto r = co_await redis.eval_integers(kRenewSlot, std::move(key), std::move(args), 1);
  if (!r.error.empty()) co_return RedisSlotRenewal{std::move(r.error), false};
  co_return RedisSlotRenewal{{}, r.values[0] == 1};
}

Task<std::string> release_redis_slot(RedisScriptRunner& redis, std::string key,
                                     std::string member) {
  std::vector<std::string> args{std::move(member)};
  auto r = co_await redis.eval_integers(kReleaseSlot, std::move(key), std::move(args), 1);
  co_return std::move(r.error);
}

}  // namespace portico::limit
