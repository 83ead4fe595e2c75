// Idle keep-alive connections to upstream nodes, one pool per worker (no locks). Most recently
// used first: the warmest connection is least likely to have been closed by the node.
#pragma once

#include <optional>
#include <unordered_map>
#include <vector>

#include <string>
#include <string_view>

#include "core/asio.hpp"
#include "tls/stream.hpp"

namespace portico::upstream {

struct PooledConnection {
  Socket socket;
  tls::StreamPtr tls;        // an https upstream's TLS session on it
  std::string tls_identity;  // what the TLS session was made for (SNI, verification); "": none
  uint32_t requests = 0;     // requests already sent on it
  int64_t expires_ms = 0;
};

// Whether an idle pooled connection still looks usable: not closed by the node, and no stray
// bytes. One system call (a peek).
bool still_open(Socket& s);

class ConnectionPool {
 public:
  // The most recent idle connection to `node` made for `tls_identity` (a TLS session is only
  // good for the server name and verification it was made with). Connections the node closed
  // or wrote to while idle (stray bytes would be read as the next response) are closed on the
  // way: a peek checks those epoll reported readable, and every one when `verify` (a request
  // that cannot be retried on a stale connection).
  std::optional<PooledConnection> take(const Endpoint& node, std::string_view tls_identity = {},
                                       bool verify = false);
  // Keeps the connection; a node with `max_idle` idle ones already loses its oldest.
  void put(const Endpoint& node, PooledConnection connection, double idle_timeout, size_t max_idle);
  // Closes connections idle past their timeout.
  void expire(int64_t now_ms);
  void clear() { idle_.clear(); }

 private:
  std::unordered_map<Endpoint, std::vector<PooledConnection>> idle_;
};

}  // namespace portico::upstream
