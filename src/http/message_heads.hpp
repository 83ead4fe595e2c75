// Serialises the heads Portico sends: the request head to the upstream (Host per pass_host,
// forwarding headers, hop-by-hop headers removed, body framing) and the response head to the
// client (hop-by-hop removed, framing and keep-alive decided by the gateway).
#pragma once

#include <string>

#include "config/objects.hpp"
#include "http/http_parser.hpp"
#include "upstream/upstream_target.hpp"

namespace portico::http {

struct ClientFacts {
  std::string_view remote_ip;
  uint16_t local_port = 0;
};

void build_upstream_head(std::string& out, const RequestHead& r, const ClientFacts& client,
                         const upstream::NodeTarget& node, const config::Upstream& spec,
                         bool websocket);

// How the response body travels to the client.
enum class OutFraming { None, Length, Chunked, Close };

void build_response_head(std::string& out, const ResponseHead& r, OutFraming framing,
                         bool keep_alive, bool client_http10);

// The 101 answer to a WebSocket handshake, carrying the upstream's other headers.
void build_upgrade_head(std::string& out, const ResponseHead& r);

}  // namespace portico::http
