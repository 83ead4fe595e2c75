// Serialises the heads Portico sends: the request head to the upstream (Host per pass_host,
// forwarding headers, hop-by-hop headers removed, body framing) and the response head to the
// client (hop-by-hop removed, framing and keep-alive decided by the gateway).
#pragma once

#include <string>

#include "config/objects.hpp"
#include "http/http_parser.hpp"
#include "plugins/context.hpp"
#include "upstream/upstream_target.hpp"

namespace portico::http {

struct ClientFacts {
  std::string_view remote_ip;  // the client (after real-ip): X-Real-IP
  uint16_t local_port = 0;
  std::string_view peer_ip =
      {};              // the connection's peer, appended to X-Forwarded-For ("": remote_ip)
  bool https = false;  // came over TLS: X-Forwarded-Proto
};

// `edits` (plugins: proxy-rewrite, request-id) may be null.
void build_upstream_head(std::string& out, const RequestHead& r, const ClientFacts& client,
                         const upstream::NodeTarget& node, const config::Upstream& spec,
                         bool websocket, const plugins::RequestEdits* edits = nullptr);

// How the response body travels to the client.
enum class OutFraming { None, Length, Chunked, Close };

// `edits` (plugins' header_filter) may be null; `status` replaces the upstream's when non-zero.
void build_response_head(std::string& out, const ResponseHead& r, OutFraming framing,
                         bool keep_alive, bool client_http10,
                         const std::vector<plugins::HeaderEdit>* edits = nullptr, int status = 0);

// Appends header lines for the Set and Add edits from position `from` on (edits a body_filter
// made after the head was built; they name headers the head does not have).
void append_header_edits(std::string& out, const std::vector<plugins::HeaderEdit>& edits,
                         size_t from);

// A whole response made by a plugin: head (with the plugins' header edits) and body. An answer
// to HEAD (`head_request`) and a 1xx, 204 or 304 answer carry no body.
void build_local_response(std::string& out, int status, std::string_view content_type,
                          std::string_view body, const std::vector<plugins::HeaderEdit>& edits,
                          bool keep_alive, bool head_request);

// The 101 answer to a WebSocket handshake, carrying the upstream's other headers.
void build_upgrade_head(std::string& out, const ResponseHead& r);

}  // namespace portico::http
