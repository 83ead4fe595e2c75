// The downstream HTTP/1.1 server: one coroutine per client connection reading requests
// (keep-alive, pipelining), enforcing limits and timeouts, routing, and handing each request to
// the proxy.
#pragma once

#include "core/worker.hpp"

namespace portico::http {

// Worker::ConnectionHandler for HTTP listeners.
void start_client_session(Worker& worker, Socket&& socket, const config::ListenAddress& listener);

}  // namespace portico::http
