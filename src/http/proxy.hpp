// Forwards one routed request to its upstream and streams the response back: node choice with
// priority levels and retries, pooled keep-alive connections, bodies streamed both ways.
#pragma once

#include "config/snapshot.hpp"
#include "http/exchange.hpp"

namespace portico::http {

// Returns whether the client connection can carry another request. `protos` are the snapshot's,
// for a plugin that serves the request itself (Context::takeover).
Task<bool> proxy_request(ClientConnection& c, Exchange& x, const config::CompiledRoute& route,
                         const bridge::ProtoTable& protos, const config::HttpLimits& limits);

// Sends a gateway-generated error response, logs the exchange. `keep_alive` is honoured only
// when the client allows it.
Task<bool> respond_error(ClientConnection& c, Exchange& x, int status, std::string_view message,
                         bool keep_alive, const config::HttpLimits& limits);

// Sends the answer a plugin made (x.ctx.reply) after the header_filter phase, logs the exchange.
Task<bool> respond_plugin_reply(ClientConnection& c, Exchange& x, const config::HttpLimits& limits);

}  // namespace portico::http
