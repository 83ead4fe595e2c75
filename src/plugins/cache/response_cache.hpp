// proxy-cache's store: responses by cache key in one zone, shared by every worker and every
// route naming the zone, bounded in bytes (least recently used entries go first). Entries are
// immutable once stored, so a hit copies nothing under the lock but a pointer.
#pragma once

#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace portico::plugins {

struct CachedResponse {
  int status = 0;
  std::vector<std::pair<std::string, std::string>> headers;  // the upstream's, as stored
  std::string body;
  int64_t stored_ms = 0;   // wall clock
  int64_t expires_ms = 0;  // wall clock
  size_t bytes() const;
};

class ResponseCache {
 public:
  static constexpr size_t kCapacity = 64 << 20;

  // The entry under `key` (fresh or not: the caller looks at expires_ms), or null.
  std::shared_ptr<const CachedResponse> find(const std::string& key);
  void store(const std::string& key, std::shared_ptr<const CachedResponse> entry);
  bool erase(const std::string& key);  // PURGE: whether there was one

 private:
  struct Slot {
    std::shared_ptr<const CachedResponse> entry;
    std::list<std::string>::iterator age;  // in lru_, most recent first
  };
  void erase_locked(std::unordered_map<std::string, Slot>::iterator it);

  std::mutex mutex_;
  std::unordered_map<std::string, Slot> entries_;
  std::list<std::string> lru_;
  size_t bytes_ = 0;
};

}  // namespace portico::plugins
