// Streams the rest of a request body from the client to the upstream with the client's read
// buffer: Content-Length bodies as they are, chunked bodies decoded and re-chunked (extensions
// and trailers dropped, size limit enforced as it goes).
#pragma once

#include "config/node_config.hpp"
#include "http/exchange.hpp"
#include "http/upstream_side.hpp"

namespace portico::http {

// `remaining`: bytes still to come for a Content-Length body (ignored when chunked).
Task<Failure> stream_request_body(ClientConnection& c, Exchange& x, bool chunked,
                                  uint64_t remaining, UpstreamSide& up,
                                  const config::Upstream& spec, const config::HttpLimits& limits);

}  // namespace portico::http
