#include "plugins/limit/local_counters.hpp"

#include <algorithm>
#include <boost/intrusive/list.hpp>
#include <functional>
#include <mutex>
#include <string>
#include <unordered_map>

namespace portico::limit {

namespace {

constexpr int kSweepPerTake = 8;

struct Entry : boost::intrusive::list_base_hook<> {
  std::string_view key;  // the map node's key (node addresses are stable)
  WindowType type = WindowType::fixed;
  int64_t window_ms = 0;
  int64_t start = 0;       // fixed: the window's first ms; sliding: the aligned window's index
  int64_t current = 0;     // requests counted in the window
  int64_t previous = 0;    // sliding: requests counted in window start-1
  int64_t expires_ms = 0;  // past this the entry means nothing any more
};

struct KeyHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};

TakeResult take_fixed(Entry& e, int64_t limit, int64_t now) {
  // A clock step backwards also opens a new window rather than extending the old one.
  if (e.current == 0 || now >= e.start + e.window_ms || now < e.start) {
    e.start = now;
    e.current = 0;
  }
  e.expires_ms = e.start + e.window_ms;
  if (e.current >= limit) return {false, 0, e.expires_ms - now};
  ++e.current;
  return {true, limit - e.current, e.expires_ms - now};
}

TakeResult take_sliding(Entry& e, int64_t limit, int64_t now) {
  const int64_t index = now / e.window_ms;
  if (index != e.start) {
    e.previous = index == e.start + 1 ? e.current : 0;
    e.current = 0;
    e.start = index;
  }
  // The previous window still weighs until the end of this one.
  e.expires_ms = (index + 1) * e.window_ms;
  if (e.previous > 0 || e.current > 0) e.expires_ms += e.window_ms;
  TakeResult r =
      sliding_decision(e.previous, e.current, limit, e.window_ms, now - index * e.window_ms);
  if (r.allowed) ++e.current;
  return r;
}

}  // namespace

// Cache-line aligned: workers hitting neighbouring stripes must not share a line.
struct alignas(64) LocalCounters::Stripe {
  std::mutex mutex;
  std::unordered_map<std::string, Entry, KeyHash, std::equal_to<>> map;
  boost::intrusive::list<Entry> lru;  // front: most recently used

  void evict(Entry& e) {
    lru.erase(lru.iterator_to(e));
    map.erase(map.find(e.key));
  }
};

LocalCounters::LocalCounters(size_t max_keys)
    : per_stripe_(std::max<size_t>(1, max_keys / kStripes)),
      stripes_(std::make_unique<Stripe[]>(kStripes)) {}

LocalCounters::~LocalCounters() = default;

TakeResult LocalCounters::take(std::string_view key, int64_t limit, int64_t window_ms,
                               WindowType type, int64_t now_ms) {
  if (window_ms <= 0 || now_ms < 0) return {false, 0, 0};
  const size_t hash = KeyHash{}(key);
  // The high bits pick the stripe; the map uses the whole hash for its buckets.
  Stripe& s = stripes_[(hash >> 20) % kStripes];
  std::lock_guard lock(s.mutex);

  // Like nginx's limit_req, every take drops a few expired keys from the LRU end, so memory
  // follows the keys in use (each key is dropped once: O(1) amortised). The bound keeps one
  // take short; a live key at the LRU end stops the sweep until it expires or is used.
  for (int i = 0; i < kSweepPerTake && !s.lru.empty() && s.lru.back().expires_ms <= now_ms; ++i)
    s.evict(s.lru.back());

  auto it = s.map.find(key);
  if (it == s.map.end()) {
    // At the cap the least recently used key goes, live or not (it then starts afresh).
    if (s.map.size() >= per_stripe_) s.evict(s.lru.back());
    it = s.map.try_emplace(std::string(key)).first;
    it->second.key = it->first;
    s.lru.push_front(it->second);
  } else {
    s.lru.erase(s.lru.iterator_to(it->second));
    s.lru.push_front(it->second);
  }

  Entry& e = it->second;
  if (e.type != type || e.window_ms != window_ms) {
    e.type = type;
    e.window_ms = window_ms;
    e.start = type == WindowType::sliding ? now_ms / window_ms : now_ms;
    e.current = e.previous = 0;
  }
  return type == WindowType::fixed ? take_fixed(e, limit, now_ms) : take_sliding(e, limit, now_ms);
}

size_t LocalCounters::size() const {
  size_t n = 0;
  for (size_t i = 0; i < kStripes; ++i) {
    std::lock_guard lock(stripes_[i].mutex);
    n += stripes_[i].map.size();
  }
  return n;
}

LocalCounters& LocalCounters::process_wide() {
  static LocalCounters counters;
  return counters;
}

}  // namespace portico::limit
