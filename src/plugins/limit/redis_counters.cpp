#include "plugins/limit/redis_counters.hpp"

namespace portico::limit {

namespace {

// KEYS[1] counter, ARGV[1] limit, ARGV[2] window ms. Returns {allowed 0|1, remaining, reset ms}.
const RedisScript kFixedWindow(R"lua(
local key = KEYS[1]
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local kind = redis.call('TYPE', key).ok
if kind ~= 'string' and kind ~= 'none' then redis.call('DEL', key) end
local ttl = redis.call('PTTL', key)
if ttl <= 0 then
  -- no key (-2), or one without a TTL (-1) that must not count forever: a new window
  redis.call('SET', key, 1, 'PX', window)
  return {1, limit - 1, window}
end
local count = tonumber(redis.call('GET', key))
if count >= limit then
  return {0, 0, ttl}
end
count = redis.call('INCR', key)
return {1, limit - count, ttl}
)lua");

// Same arguments. The arithmetic mirrors sliding_decision() in window.cpp.
const RedisScript kSlidingWindow(R"lua(
local key = KEYS[1]
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local kind = redis.call('TYPE', key).ok
if kind ~= 'hash' and kind ~= 'none' then redis.call('DEL', key) end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local index = math.floor(now / window)
local elapsed = now - index * window
local v = redis.call('HMGET', key, 'w', 'c', 'p')
local w = tonumber(v[1])
local cur = tonumber(v[2]) or 0
local prev = tonumber(v[3]) or 0
if w ~= index then
  if w == index - 1 then prev = cur else prev = 0 end
  cur = 0
end
local used = cur + math.floor(prev * (window - elapsed) / window)
if used < limit then
  redis.call('HSET', key, 'w', index, 'c', cur + 1, 'p', prev)
  redis.call('PEXPIRE', key, 2 * window - elapsed)
  return {1, limit - used - 1, window - elapsed}
end
if cur < limit then
  local d = math.ceil((limit - cur) * window / prev) - 1
  return {0, 0, window - d - elapsed}
end
local d = math.ceil(limit * window / cur) - 1
return {0, 0, (window - elapsed) + (window - d)}
)lua");

}  // namespace

Task<RedisTake> take_redis(RedisScriptRunner& redis, std::string key, int64_t limit,
                           int64_t window_ms, WindowType type) {
  const RedisScript& script = type == WindowType::fixed ? kFixedWindow : kSlidingWindow;
  std::vector<std::string> args{std::to_string(limit), std::to_string(window_ms)};
  auto r = co_await redis.eval_integers(script, std::move(key), std::move(args), 3);
  if (!r.error.empty()) co_return RedisTake{std::move(r.error), {}};
  co_return RedisTake{{}, {r.values[0] == 1, r.values[1], r.values[2]}};
}

}  // namespace portico::limit
