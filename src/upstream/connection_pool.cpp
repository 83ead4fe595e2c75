#include "upstream/connection_pool.hpp"

#include "core/deadline.hpp"

namespace portico::upstream {

std::optional<PooledConnection> ConnectionPool::take(const Endpoint& node) {
  auto it = idle_.find(node);
  if (it == idle_.end() || it->second.empty()) return std::nullopt;
  PooledConnection c = std::move(it->second.back());
  it->second.pop_back();
  return c;
}

void ConnectionPool::put(const Endpoint& node, Socket socket, uint32_t requests,
                         double idle_timeout, size_t max_idle) {
  if (max_idle == 0 || idle_timeout <= 0) return;  // `socket` closes as it goes out of scope
  auto& list = idle_[node];
  if (list.size() >= max_idle) return;
  list.push_back(
      {std::move(socket), requests, steady_now_ms() + static_cast<int64_t>(idle_timeout * 1000)});
}

void ConnectionPool::expire(int64_t now_ms) {
  for (auto it = idle_.begin(); it != idle_.end();) {
    auto& list = it->second;
    std::erase_if(list, [&](const PooledConnection& c) { return c.expires_ms <= now_ms; });
    if (list.empty())
      it = idle_.erase(it);
    else
      ++it;
  }
}

}  // namespace portico::upstream
