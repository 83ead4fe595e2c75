// limit-count's `local` policy: one count per key for the whole process (a client's requests
// land on any worker), in striped maps so workers rarely meet on a lock, and bounded: idle keys
// sit in a per-stripe LRU list, expired ones are dropped as new keys arrive, and past the cap
// the least recently used key goes, so a flood of random keys cannot grow memory.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string_view>

#include "plugins/limit/window.hpp"

namespace portico::limit {

class LocalCounters {
 public:
  // ~200 bytes a key: 200k keys ~ 40 MB, the order of an nginx limit_req zone of 10m.
  static constexpr size_t kDefaultMaxKeys = 200'000;
  static constexpr size_t kStripes = 64;

  explicit LocalCounters(size_t max_keys = kDefaultMaxKeys);
  ~LocalCounters();
  LocalCounters(const LocalCounters&) = delete;
  LocalCounters& operator=(const LocalCounters&) = delete;

  // Takes one request from `key`'s quota at `now_ms` (any clock that only moves forward, the
  // same for every call; tests inject it). Thread-safe. A key whose window length or type
  // changes starts afresh.
  TakeResult take(std::string_view key, int64_t limit, int64_t window_ms, WindowType type,
                  int64_t now_ms);

  // Keys held now (locks each stripe in turn; for tests and status).
  size_t size() const;
  size_t max_keys() const { return per_stripe_ * kStripes; }

  // The process's counters, shared by every worker and every config snapshot.
  static LocalCounters& process_wide();

 private:
  struct Stripe;
  size_t per_stripe_;
  std::unique_ptr<Stripe[]> stripes_;
};

}  // namespace portico::limit
