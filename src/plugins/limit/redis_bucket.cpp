#include "plugins/limit/redis_bucket.hpp"

namespace portico::limit {
namespace {

// KEYS[1] bucket, ARGV[1] rate (thousandths of a request per second), ARGV[2] burst
// (thousandths). Returns {accepted 0|1, excess}. The arithmetic mirrors leak_and_add().
const RedisScript kLeakyBucket(R"lua(
redis.replicate_commands() -- (Redis 3.2/4: writes after TIME; a no-op from 5 on)
local key = KEYS[1]
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local kind = redis.call('TYPE', key).ok
if kind ~= 'hash' and kind ~= 'none' then redis.call('DEL', key) end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local v = redis.call('HMGET', key, 'e', 'l')
local excess = 0
if v[1] and v[2] then
  local full = tonumber(v[1]) + 1000
  local leaked = math.floor(rate * math.abs(now - tonumber(v[2])) / 1000)
  if leaked > full then leaked = full end
  excess = full - leaked
  if excess > burst then return {0, excess} end
end
redis.call('HSET', key, 'e', excess, 'l', now)
-- Gone only once it weighs nothing: when the leak covers the excess and the next request's unit.
redis.call('PEXPIRE', key, math.ceil((excess + 1000) * 1000 / rate))
return {1, excess}
)lua");

}  // namespace

Task<RedisBucketTake> take_redis_bucket(RedisScriptRunner& redis, std::string key,
                                        int64_t rate_milli, int64_t burst_milli) {
  std::vector<std::string> args{std::to_string(rate_milli), std::to_string(burst_milli)};
  auto r = co_await redis.eval_integers(kLeakyBucket, std::move(key), std::move(args), 2);
  if (!r.error.empty()) co_return RedisBucketTake{std::move(r.error), {}};
  plugins::BucketDecision d;
  d.rejected = r.values[0] == 0;
  d.excess_milli = r.values[1];
  if (!d.rejected) d.delay_ms = d.excess_milli * 1000 / rate_milli;  // excess / rate seconds
  co_return RedisBucketTake{{}, d};
}

}  // namespace portico::limit
