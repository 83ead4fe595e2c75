// Sends the upstream's response to the client: the head rewritten by the gateway, then the
// body streamed with the framing the client can take (Content-Length as is, chunked re-chunked,
// close-delimited turned into chunked for HTTP/1.1 clients).
#pragma once

#include "config/node_config.hpp"
#include "http/exchange.hpp"
#include "http/upstream_side.hpp"

namespace portico::http {

// `up.buf` starts with the parsed response head (x.resp). Returns whether the client
// connection may carry another request; the upstream connection goes back to the pool when it
// is clean.
Task<bool> forward_response(ClientConnection& c, Exchange& x, UpstreamSide& up,
                            const config::Upstream& spec, const config::HttpLimits& limits);

}  // namespace portico::http
