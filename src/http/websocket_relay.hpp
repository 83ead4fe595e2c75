// After the upstream accepted a WebSocket upgrade (101): relays bytes both ways until either
// side closes (a half-close is passed on) or nothing moves for websocket_idle_timeout.
#pragma once

#include "config/node_config.hpp"
#include "http/exchange.hpp"
#include "http/upstream_side.hpp"

namespace portico::http {

// Always ends the client connection (returns false).
Task<bool> relay_websocket(ClientConnection& c, Exchange& x, UpstreamSide& up,
                           const config::HttpLimits& limits);

}  // namespace portico::http
