// After the upstream accepted a WebSocket upgrade (101): relays bytes both ways until either
// side closes (a half-close is passed on) or nothing moves for websocket_idle_timeout.
#pragma once

#include <memory>

#include "config/node_config.hpp"
#include "config/snapshot.hpp"
#include "http/exchange.hpp"
#include "http/upstream_side.hpp"

namespace portico::http {

// Always ends the client connection (returns false). Once the upgrade is relayed and logged it
// lets go of `snapshot` (the request's hold on its config, which `limits` is part of): a relay
// may last hours, and must not keep old configs alive meanwhile.
Task<bool> relay_websocket(ClientConnection& c, Exchange& x, UpstreamSide& up,
                           const config::CompiledRoute& route,
                           std::shared_ptr<const config::Snapshot>& snapshot,
                           const config::HttpLimits& limits);

}  // namespace portico::http
