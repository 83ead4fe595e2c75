#include "upstream/connection_pool.hpp"

#include <sys/socket.h>

#include <cerrno>

#include "core/deadline.hpp"
#include "core/edge_read.hpp"

namespace portico::upstream {

bool still_open(Socket& s) {
  char byte;
  ssize_t n = ::recv(s.native_handle(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
  return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

std::optional<PooledConnection> ConnectionPool::take(const Endpoint& node,
                                                     std::string_view tls_identity, bool verify) {
  auto it = idle_.find(node);
  if (it == idle_.end()) return std::nullopt;
  auto& list = it->second;
  for (size_t i = list.size(); i-- > 0;) {
    if (list[i].tls_identity != tls_identity) continue;
    PooledConnection c = std::move(list[i]);
    list.erase(list.begin() + static_cast<std::ptrdiff_t>(i));
    // (A TLS session's reads do not keep the drained flag: those always take the peek.)
    if ((verify || !read_drained(c.socket)) && !still_open(c.socket)) continue;  // closes it
    return c;
  }
  return std::nullopt;
}

void ConnectionPool::put(const Endpoint& node, PooledConnection connection, double idle_timeout,
                         size_t max_idle) {
  if (max_idle == 0 || idle_timeout <= 0) return;  // the connection closes as it goes
  auto& list = idle_[node];
  // Full: the oldest goes (the newest is the warmest; a burst of connections made for rare
  // server names cannot lock the common one out).
  if (list.size() >= max_idle) list.erase(list.begin());
  connection.expires_ms = steady_now_ms() + static_cast<int64_t>(idle_timeout * 1000);
  list.push_back(std::move(connection));
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
