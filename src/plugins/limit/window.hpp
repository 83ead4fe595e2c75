// What a limit-count window means, shared by the local and the Redis counters (whose Lua
// scripts mirror these functions): the result of taking one request from a quota, the sliding
// window's estimate, and the counter key.
//
// fixed: a window opens at the first request after the previous one closed and lasts exactly
//   window_ms; at most `limit` requests are allowed in it.
// sliding: windows are aligned on multiples of window_ms (of Redis's clock for the redis
//   policy); at elapsed ms into window n, with `current` requests counted in n and `previous` in
//   n-1, the requests "in the last window_ms" are estimated as
//       used = current + floor(previous * (window_ms - elapsed) / window_ms)
//   (the previous window's requests assumed evenly spread), and a request is allowed iff
//   used < limit. Memory is two counters per key, whatever the limit.
// Both: a rejected request is not counted, so a client that keeps retrying while limited gets
//   through as soon as the window allows (counting rejections would, in a sliding window,
//   carry a retry storm into the next window and starve the client for as long as it retries).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace portico::limit {

enum class WindowType { fixed, sliding };

struct TakeResult {
  bool allowed = false;
  int64_t remaining = 0;  // requests left in the window after this one (0 when rejected)
  // fixed: ms until the window closes. sliding: allowed -> ms until the current aligned window
  // ends; rejected -> ms until the estimate lets one more request through (a Retry-After).
  int64_t reset_ms = 0;
  // For X-RateLimit-Reset: whole seconds, rounded up.
  int64_t reset_seconds() const { return (reset_ms + 999) / 1000; }
};

// The sliding-window decision for one request at `elapsed_ms` into the current window.
// Does not change the counts: the caller adds 1 to `current` when allowed.
TakeResult sliding_decision(int64_t previous, int64_t current, int64_t limit, int64_t window_ms,
                            int64_t elapsed_ms);

// "portico:limit-count:<scope>:<key>". `scope` is the group name, or the route/service id that
// declares the plugin; never a config version, so every node and every config revision count
// into the same key.
std::string limit_count_key(std::string_view scope, std::string_view key);
// The same into `out` (a reused buffer: no allocation once it has grown).
void limit_count_key(std::string& out, std::string_view scope, std::string_view key);

}  // namespace portico::limit
