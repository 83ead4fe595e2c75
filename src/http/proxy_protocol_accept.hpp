// PROXY protocol on HTTP listeners marked proxy_protocol: the header an L4 load balancer sends
// before the request bytes is read and checked before the first request, and its source address
// becomes the connection's client address for everything downstream (access log, remote_addrs
// matching, X-Real-IP and X-Forwarded-For, balancer keys).
#pragma once

#include "config/node_config.hpp"
#include "core/asio.hpp"
#include "http/exchange.hpp"
#include "stream/proxy_protocol.hpp"

namespace portico::http {

// Reads the header that must open a connection on a proxy_protocol listener, within `timeout`
// seconds for the whole header. The bytes after it stay in c.in: they are the start of the first
// request. Returns false when the connection must be closed without a response: a peer outside
// the listener's trusted_addresses, an invalid, truncated or late header (each logged at debug
// level with its reason and counted in worker.proxy_protocol_rejections).
Task<bool> accept_proxy_header(ClientConnection& c, const config::ListenAddress& listener,
                               double timeout);

// Makes the header's source the connection's client; LOCAL, UNKNOWN and UNSPEC headers leave the
// socket's peer in place.
void adopt_proxy_source(ClientConnection& c, const stream::ProxyHeader& header);

}  // namespace portico::http
