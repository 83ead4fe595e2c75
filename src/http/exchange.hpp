// Per-connection and per-request state of the downstream HTTP server. An Exchange (one request
// and its response) is recycled per worker, so steady-state requests allocate nothing.
#pragma once

#include <array>
#include <memory>
#include <string>

#include "core/deadline.hpp"
#include "core/io_buffer.hpp"
#include "core/worker.hpp"
#include "http/http_parser.hpp"
#include "http/socket_io.hpp"
#include "plugins/context.hpp"

namespace portico::tls {
struct ClientCertificate;
}

namespace portico::config {
struct Snapshot;
struct CompiledRoute;
}  // namespace portico::config

namespace portico::http {

struct ClientConnection {
  ClientConnection(Worker& w, Socket&& s, uint16_t port);
  ~ClientConnection();

  Worker& worker;
  Socket socket;
  ByteStream stream{socket};  // all reads and writes: the socket itself, or TLS over it
  std::string server_name;    // TLS: the name the client asked for (SNI)
  std::unique_ptr<tls::ClientCertificate> client_cert;  // mTLS: what the client proved
  IoBuffer in;             // unread request bytes (heads, bodies, pipelined requests)
  Deadline io_deadline;    // header, body and send timeouts
  Deadline idle_deadline;  // keep-alive wait; lives in worker.idle_waits() so drain finds it
  std::string remote_ip;
  uint16_t remote_port = 0;
  uint16_t local_port = 0;
  std::array<uint8_t, 16> remote_bytes{};
  uint32_t requests = 0;
  int64_t idle_until_ms = 0;           // end of the current wait for a request (0: not waiting)
  bool needs_lingering_close = false;  // unread request bytes may still arrive
};

struct Exchange {
  RequestHead req;
  ResponseHead resp;
  std::string upstream_head;  // the request head as sent to the upstream
  std::string response_head;  // the response head as sent to the client
  std::string path_scratch;   // normalised path when it needed rewriting
  WriteRest unsent;           // the tail of a write the socket could not take at once
  // Copied out of the read buffer because the buffer is reused while a body streams.
  std::string method, target, host;
  // The whole request head, for plugins that read it after a streamed body has reused the read
  // buffer (header_filter, log: limit-conn's key, cors's Origin, edge functions' ngx.var).
  std::string kept_head;
  // Access log facts.
  const std::string* route_id = nullptr;
  std::string upstream_addrs;
  int status = 0;
  int upstream_status = 0;
  int attempts = 0;
  uint64_t bytes_in = 0;
  uint64_t bytes_out = 0;
  int64_t start_us = 0;
  int64_t upstream_us = 0;  // time from the first upstream attempt to the response head
  // Plugins of this request; valid only when with_plugins (routes without plugins skip it all).
  plugins::Context ctx;
  bool with_plugins = false;

  void reset();
};

// A recycled Exchange for the current request, returned to the worker's free list when done.
class ExchangeLease {
 public:
  ExchangeLease();
  ~ExchangeLease();
  ExchangeLease(const ExchangeLease&) = delete;
  ExchangeLease& operator=(const ExchangeLease&) = delete;
  Exchange& operator*() { return *ex_; }
  Exchange* operator->() { return ex_.get(); }

 private:
  std::unique_ptr<Exchange> ex_;
};

int64_t now_us();

// What a long-lived exchange (a WebSocket relay, a plugin's session) keeps of the config it was
// routed with once it lets go of the snapshot: the plugin instances whose log phase runs when it
// ends (limit-conn counts a session until then, as nginx's log phase does), the consumer they
// may name, and the ids the context points to. Pinned in place: ctx points into it.
struct SessionPins {
  std::shared_ptr<const plugins::Chain> route_plugins;
  std::shared_ptr<const plugins::Chain> global_plugins;
  std::shared_ptr<const plugins::Consumer> consumer;
  std::shared_ptr<const plugins::MetadataTable> metadata;
  std::string route_id;
  std::string service_id;
  std::shared_ptr<const plugins::RouteInfo> route_info;
  std::string head;  // the request head: the connection's buffer is reused by the session
};
// x.req (and ctx.path, when it pointed into the head) again from `head`: the same head bytes,
// moved from where they were parsed at `old_base` (a compacted buffer, a copy).
void parse_moved_head(std::string_view head, const char* old_base, Exchange& x);

// Fills `pins` from the snapshot and points the exchange at its copies: ctx's route_id and
// service_id, and the request head (x.req and ctx.path are parsed again from the copy of the
// `head_size` bytes at `head_base`, which must still hold them). ctx's consumer table, which
// lives in the snapshot, is cleared (only authentication uses it).
void pin_session(SessionPins& pins, const config::Snapshot& snapshot,
                 const config::CompiledRoute& route, const char* head_base, Exchange& x);

}  // namespace portico::http
