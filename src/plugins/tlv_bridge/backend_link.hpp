// A TCP connection from the bridge to one TLV backend node of the route's upstream: nodes tried
// in balancer order as the upstream's retries allow, outcomes reported to its health checks,
// and an optional PROXY v2 header carrying the client's address.
#pragma once

#include <string>

#include "core/asio.hpp"
#include "core/deadline.hpp"
#include "plugins/context.hpp"
#include "plugins/plugin.hpp"

namespace portico::plugins {

// Connects `backend` (a closed socket of the worker's executor). `deadline` must be in the
// worker's deadline list. Returns the node's index in the upstream, or
// upstream::UpstreamTarget::kNone (-1) when no node accepted a connection.
// `reuse`: an idle connection to the chosen node from the worker's pool (kept apart from HTTP
// ones) when there is a usable one, else a new connection; `calls` (optional) gets how many
// calls the connection already carried (0 for a new one).
Task<int> connect_tlv_backend(Takeover& io, Socket& backend, Deadline& deadline, bool reuse = false,
                              uint32_t* calls = nullptr);

// Puts an RPC connection that answered cleanly back in the worker's pool, per the upstream's
// keepalive settings (`calls` it carried, this one included, below keepalive_pool.requests);
// closes it otherwise.
void keep_tlv_backend(Takeover& io, int node, Socket&& backend, uint32_t calls);

// A session's backend connection, for passive health checks: its first frame is the node's
// success (not the TCP handshake); a node that closes a session soon after accepting it
// without sending a frame, or sends a corrupt frame, is failing (a crash loop behind a listening
// port, a wrong framing). Without this, least_conn would send it every new session: it always has
// the fewest open.
class BackendWatch {
 public:
  void connected(const upstream::UpstreamTarget* target, int node);
  void frame();  // the first one is the node's success
  // A client frame goes to the backend: a close after that may be the backend refusing the
  // client (an expired token), which must not let any client eject healthy nodes. Unless the
  // backend had closed already (its FIN waits in `backend`): then it never saw the frame.
  void client_sent(Socket& backend);
  void closed_by_backend();  // reported when soon after the connect and before any frame
  void corrupt();

 private:
  const upstream::UpstreamTarget* target_ = nullptr;
  int node_ = -1;
  int64_t connected_ms_ = 0;
  bool framed_ = false;
  bool prompted_ = false;
};

// The PROXY v2 header that tells the backend who the client is (ctx's address, after real-ip).
std::string proxy_header_for(const Context& ctx, const Socket& client);

}  // namespace portico::plugins
