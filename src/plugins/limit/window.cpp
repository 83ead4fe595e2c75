#include "plugins/limit/window.hpp"

#include <cmath>

namespace portico::limit {

// Doubles, as in Redis's Lua, so both policies round the same way.
TakeResult sliding_decision(int64_t previous, int64_t current, int64_t limit, int64_t window_ms,
                            int64_t elapsed_ms) {
  const double w = static_cast<double>(window_ms);
  const double prev = static_cast<double>(previous);
  const double used =
      static_cast<double>(current) + std::floor(prev * (w - static_cast<double>(elapsed_ms)) / w);
  const double lim = static_cast<double>(limit);
  if (used < lim) {
    return {true, static_cast<int64_t>(lim - used - 1), window_ms - elapsed_ms};
  }
  // Rejected: the first elapsed ms at which the estimate drops below the limit, i.e. the
  // largest d = window - elapsed with weight * d < room * window, then the wait until then.
  if (current < limit) {
    const double room = static_cast<double>(limit - current) * w;
    const double d = std::ceil(room / prev) - 1;
    return {false, 0, static_cast<int64_t>(w - d) - elapsed_ms};
  }
  // The current window alone is full: wait for the next one, where it becomes `previous`.
  const double d = std::ceil(lim * w / static_cast<double>(current)) - 1;
  return {false, 0, (window_ms - elapsed_ms) + static_cast<int64_t>(w - d)};
}

void limit_count_key(std::string& out, std::string_view scope, std::string_view key) {
  out.assign("portico:limit-count:");
  out += scope;
  out += ':';
  out += key;
}

std::string limit_count_key(std::string_view scope, std::string_view key) {
  std::string out;
  limit_count_key(out, scope, key);
  return out;
}

}  // namespace portico::limit
