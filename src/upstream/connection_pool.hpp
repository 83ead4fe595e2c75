// Idle keep-alive connections to upstream nodes, one pool per worker (no locks). Most recently
// used first: the warmest connection is least likely to have been closed by the node.
#pragma once

#include <optional>
#include <unordered_map>
#include <vector>

#include "core/asio.hpp"

namespace portico::upstream {

struct PooledConnection {
  Socket socket;
  uint32_t requests = 0;  // requests already sent on it
  int64_t expires_ms = 0;
};

class ConnectionPool {
 public:
  std::optional<PooledConnection> take(const Endpoint& node);
  // Keeps the connection unless the node already has `max_idle` idle ones.
  void put(const Endpoint& node, Socket socket, uint32_t requests, double idle_timeout,
           size_t max_idle);
  // Closes connections idle past their timeout.
  void expire(int64_t now_ms);
  void clear() { idle_.clear(); }

 private:
  std::unordered_map<Endpoint, std::vector<PooledConnection>> idle_;
};

}  // namespace portico::upstream
