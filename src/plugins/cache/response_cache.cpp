#include "plugins/cache/response_cache.hpp"

namespace portico::plugins {

// What an entry costs with the containers around it (the map node, the LRU node, the key twice,
// the strings' own headers), not only its bytes: a flood of small entries counts as it weighs.
size_t CachedResponse::bytes() const {
  size_t n = body.size() + 256;
  for (const auto& [k, v] : headers) n += k.size() + v.size() + 80;
  return n;
}

std::shared_ptr<const CachedResponse> ResponseCache::find(const std::string& key) {
  std::lock_guard lock(mutex_);
  auto it = entries_.find(key);
  if (it == entries_.end()) return nullptr;
  lru_.splice(lru_.begin(), lru_, it->second.age);
  return it->second.entry;
}

void ResponseCache::erase_locked(std::unordered_map<std::string, Slot>::iterator it) {
  bytes_ -= it->second.entry->bytes() + 2 * it->first.size();
  lru_.erase(it->second.age);
  entries_.erase(it);
}

void ResponseCache::store(const std::string& key, std::shared_ptr<const CachedResponse> entry) {
  size_t need = entry->bytes() + 2 * key.size();
  if (need > kCapacity / 4) return;  // one response may not take the zone over
  std::lock_guard lock(mutex_);
  if (auto it = entries_.find(key); it != entries_.end()) erase_locked(it);
  while (bytes_ + need > kCapacity && !lru_.empty()) erase_locked(entries_.find(lru_.back()));
  lru_.push_front(key);
  entries_.emplace(key, Slot{std::move(entry), lru_.begin()});
  bytes_ += need;
}

bool ResponseCache::erase(const std::string& key) {
  std::lock_guard lock(mutex_);
  auto it = entries_.find(key);
  if (it == entries_.end()) return false;
  erase_locked(it);
  return true;
}

}  // namespace portico::plugins
