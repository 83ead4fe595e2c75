// The upstream half of one proxied exchange, shared by the proxy's steps (attempts, request
// body, response body, WebSocket relay). Internal to src/http.
#pragma once

#include "config/objects.hpp"
#include "core/byte_stream.hpp"
#include "core/deadline.hpp"
#include "core/io_buffer.hpp"
#include "core/worker.hpp"
#include "upstream/upstream_target.hpp"

namespace portico::http {

// Why an attempt failed; decides the status (502/504) and whether a retry is allowed.
enum class Failure {
  None,
  ConnectRefused,
  ConnectTimeout,
  TlsFailed,  // https: connected, but the TLS handshake failed (name, verification, protocol)
  SendFailed,
  SendTimeout,
  ReadTimeout,
  ReadFailed,
  BadResponse,
  ClientGone,
  ClientTimeout,
  BadBody,
  BodyTooLarge
};

struct UpstreamSide {
  explicit UpstreamSide(Worker& w) : worker(w), socket(w.executor()), buf(w.buffers().acquire()) {
    w.deadlines().add(deadline);
  }
  ~UpstreamSide() { worker.buffers().release(buf); }
  UpstreamSide(const UpstreamSide&) = delete;
  UpstreamSide& operator=(const UpstreamSide&) = delete;

  // Returns the connection to the worker's pool when the exchange left it clean.
  void release_connection(const config::Upstream& spec, bool reusable) {
    if (reusable && buf.empty() && !stream.holds_input() &&
        requests + 1 < static_cast<uint32_t>(spec.keepalive_requests)) {
      // The pool takes the connection or closes it; either way this side is left without one.
      worker.pool().put(node->endpoint,
                        {std::move(socket), stream.release_tls(), tls_identity, requests + 1},
                        spec.keepalive_idle_timeout, static_cast<size_t>(spec.keepalive_size));
      socket = Socket(worker.executor());
    } else {
      close();
    }
  }
  void close() {
    error_code ignored;
    socket.close(ignored);
    stream.use_tls(nullptr);
  }

  Worker& worker;
  Socket socket;
  ByteStream stream{socket};  // all reads and writes: the socket, or TLS over it (https)
  std::string tls_identity;   // https: the server name and verification of the TLS session
  IoBuffer buf;               // response bytes from the upstream
  Deadline deadline;
  const upstream::NodeTarget* node = nullptr;
  uint32_t requests = 0;  // requests already carried by this connection before this one
  bool reused = false;    // came from the keep-alive pool
};

}  // namespace portico::http
