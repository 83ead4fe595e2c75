// limit-count's `redis` policy: one atomic Lua script per window type, with Redis's clock, so
// every node sharing the Redis counts into the same key and agrees on the windows whatever its
// own clock says. The semantics are those of window.hpp.
#pragma once

#include <cstdint>
#include <string>

#include "core/asio.hpp"
#include "plugins/limit/redis_client.hpp"
#include "plugins/limit/window.hpp"

namespace portico::limit {

struct RedisTake {
  std::string error;  // empty on success (then `take` is Redis's answer)
  TakeResult take;
  bool ok() const { return error.empty(); }
};

// Takes one request from `key` (a limit_count_key()). Redis layout:
//   fixed:   a string counter with a TTL of the window, set on the first request (SET .. PX);
//            a key found without a TTL restarts the window, so no key ever lives forever.
//   sliding: a hash {w: aligned window index, c: count in w, p: count in w-1}, expiring when
//            the window after w ends (after that its counts weigh nothing).
// A key of the other type (the route switched window_type) is replaced: the count restarts.
// On a timeout the script may or may not have run: the count is then unknown (at most one).
Task<RedisTake> take_redis(RedisScriptRunner& redis, std::string key, int64_t limit,
                           int64_t window_ms, WindowType type);

}  // namespace portico::limit
