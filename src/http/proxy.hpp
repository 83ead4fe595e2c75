// Forwards one routed request to its upstream and streams the response back: node choice with
// priority levels and retries, pooled keep-alive connections, bodies streamed both ways.
#pragma once

#include "config/snapshot.hpp"
#include "http/exchange.hpp"

namespace portico::http {

// Returns whether the client connection can carry another request. `snapshot` is the request's
// hold on the config it was routed with (`route` and `limits` are in it): a plugin that keeps the
// connection (a WebSocket session, Context::takeover) lets go of it once upgraded, so sessions
// that last hours do not keep old configs alive; the caller must not use `route` or `limits`
// after this returns.
Task<bool> proxy_request(ClientConnection& c, Exchange& x, const config::CompiledRoute& route,
                         std::shared_ptr<const config::Snapshot>& snapshot,
                         const config::HttpLimits& limits);

// Sends a gateway-generated error response, logs the exchange. `keep_alive` is honoured only
// when the client allows it.
Task<bool> respond_error(ClientConnection& c, Exchange& x, int status, std::string_view message,
                         bool keep_alive, const config::HttpLimits& limits);

// Sends the answer a plugin made (x.ctx.reply) after the header_filter phase, logs the exchange.
Task<bool> respond_plugin_reply(ClientConnection& c, Exchange& x, const config::HttpLimits& limits);

}  // namespace portico::http
