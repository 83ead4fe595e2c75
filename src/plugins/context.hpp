// The request as plugins see it: the parsed head, the client, what they change on the way up
// (RequestEdits) and down (ResponseEdits), a local answer (reply), and small per-request notes.
// One Context lives in each recycled Exchange, so steady-state requests allocate nothing here.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "http/http_parser.hpp"
#include "plugins/metadata_table.hpp"
#include "plugins/route_info.hpp"

namespace portico::tls {
struct ClientCertificate;
}

namespace portico::plugins {

class Plugin;

// A version 4 UUID from a per-thread generator (no lock, no system call per request).
std::string make_request_id();
class ConsumerTable;
struct Chain;
struct Consumer;

struct HeaderEdit {
  enum class Op { Set, Add, Remove } op;
  std::string name;
  std::string value;
};

// Changes to the request sent upstream (proxy-rewrite, request-id, real-ip's X-Real-IP).
struct RequestEdits {
  std::optional<std::string> method;
  std::optional<std::string> target;  // path and query, as sent upstream
  std::optional<std::string> host;
  std::vector<HeaderEdit> headers;
  void clear();
  bool empty() const { return !method && !target && !host && headers.empty(); }
};

// An answer made by a plugin instead of the upstream's.
struct Reply {
  int status = 0;
  std::string body;
  std::string content_type;  // empty: none
};

// State a plugin keeps for one request beyond its own phases (edge functions' ngx.ctx, shared
// by the pre- and post-functions of the request). Released after the log phase, or at reset().
struct RequestLocal {
  virtual ~RequestLocal() = default;
};

// What the log phase knows of the finished exchange (loggers, $request_time and friends): set by
// the server when it records the exchange, right before the log phase.
struct ExchangeFacts {
  int64_t latency_us = 0;           // from the request's arrival to the end of the response
  int64_t upstream_latency_us = 0;  // from the first upstream attempt to its answer; 0: none
  uint64_t bytes_in = 0;            // read from the client: head and body
  uint64_t bytes_out = 0;           // sent to the client: head and body
  std::string_view upstream_addr;   // the attempts' addresses, nginx's $upstream_addr
  std::string_view response_head;   // as sent to the client (a local answer may follow it)
  bool known = false;               // false before the log phase: the variables are empty
};

class Context {
 public:
  // Set per request by the server.
  const http::RequestHead* req = nullptr;
  std::string_view path;  // normalised request path
  std::string client_ip;  // the client address (real-ip may replace it)
  uint16_t client_port = 0;
  std::array<uint8_t, 16> client_bytes{};  // client_ip as IPv4-mapped IPv6
  uint16_t server_port = 0;
  bool https = false;            // the request came over TLS
  std::string_view server_name;  // TLS: the name the client asked for (SNI); empty otherwise
  const tls::ClientCertificate* client_cert = nullptr;  // mTLS: what the client proved
  const std::string* route_id = nullptr;
  const std::string* service_id = nullptr;
  const RouteInfo* route_info = nullptr;  // with route_id
  const ConsumerTable* consumers = nullptr;
  const MetadataTable* metadata = nullptr;  // plugin_metadata objects; may be null
  int worker = 0;
  int64_t now_ms = 0;  // wall-clock milliseconds at the start of the request
  int64_t request_id_seed = 0;

  // Filled by plugins.
  const Consumer* consumer = nullptr;
  RequestEdits upstream;
  std::vector<HeaderEdit> response_headers;  // applied to the response head, local or upstream
  std::optional<int> response_status;        // response-rewrite's status_code
  std::optional<std::string> response_body;  // response-rewrite's body: replaces the upstream's
  Reply reply;
  std::string request_id;  // request-id plugin, also in the access log and WAF answers
  // opentelemetry's traceparent for this request, when its metadata sets set_ngx_var: read as
  // $opentelemetry_context_traceparent, $opentelemetry_trace_id and $opentelemetry_span_id.
  std::string trace_parent;
  // client-control's max_body_size for this request (0: none): a body longer than this and the
  // node's client_max_body_size gets a 413, a chunked one as soon as it is.
  int64_t max_body_size = 0;
  // The upstream the request goes to: -1 for the route's own, else a position in the route's
  // upstream choices (traffic-split; Plugin::upstream_choices).
  int upstream_choice = -1;
  // A plugin that serves this connection itself after the access phase (Plugin::take_over).
  const Plugin* takeover = nullptr;
  std::unique_ptr<RequestLocal> request_local;  // see RequestLocal

  // The plugins of this request in the order they run (global rules', then the route's merged
  // with the consumer's), for the body, header_filter and log phases.
  std::vector<const Plugin*> active;
  size_t global_count = 0;  // active[0, global_count) came from global rules
  // Where the runner is (runner.cpp), so a plugin that must wait resumes the phases after it.
  const Chain* route_chain = nullptr;
  uint8_t phase_stage = 0;
  size_t phase_next = 0;

  // Response facts for header_filter and log (0 until known).
  int status = 0;
  const http::ResponseHead* response = nullptr;
  // For the log phase: the status of the last upstream attempt, the upstream's answer or the
  // gateway's 502/504 when none came (nginx's $upstream_status); 0 when nothing went upstream.
  int upstream_status = 0;
  bool log_done = false;  // the log phase runs once, whichever way the request ended
  ExchangeFacts facts;    // for the log phase

  // Up to four numbers a plugin keeps between its phases (limit-count's quota for its headers,
  // limit-conn's slot to release), keyed by the plugin instance.
  std::array<int64_t, 4>& note(const Plugin* owner);
  const std::array<int64_t, 4>* find_note(const Plugin* owner) const;
  // And a string beside them: limit-conn keeps the key it counted, so it releases that very key
  // whatever the request's variables read by the log phase.
  std::string& note_text(const Plugin* owner);
  const std::string* find_note_text(const Plugin* owner) const;

  // An answer now: sets reply and returns Step::Respond's value for convenience.
  void respond(int status, std::string body, std::string content_type = "application/json");
  // APISIX's {"error_msg": "..."} body.
  void respond_error(int status, std::string_view message);
  // The {"message": "..."} body APISIX's auth and ip-restriction plugins answer with.
  void respond_message(int status, std::string_view message);

  // An nginx/APISIX variable by name: remote_addr, remote_port, uri, request_uri, host,
  // request_method, query_string/args, server_port, scheme, ssl_server_name, route_id, service_id,
  // route_name, service_name, consumer_name, request_id, opentelemetry_* (see trace_parent), arg_*,
  // http_* (header, '_' = '-'), cookie_*, with mTLS ssl_client_verify, ssl_client_s_dn,
  // ssl_client_i_dn, ssl_client_serial, ssl_client_fingerprint, and in the log phase status,
  // upstream_status, upstream_addr, request_time, upstream_response_time (seconds, to the
  // millisecond), bytes_sent, request_length, msec and time_iso8601. Empty when absent.
  std::string_view var(std::string_view name) const;
  // var(), except that a header sent on several lines is read as one list, the lines joined by
  // ", " in order (RFC 9110 5.3; nginx 1.23's $http_x_forwarded_for) in `joined` when there are
  // several. For lists a proxy may extend with a line of its own (X-Forwarded-For).
  std::string_view var_list(std::string_view name, std::string& joined) const;
  std::string_view header(std::string_view name) const;  // case-insensitive, first value
  std::string_view client_certificate_var(std::string_view suffix) const;

  void set_client(std::string_view ip);  // client_ip and client_bytes
  // hide_credentials: the request goes upstream without this query argument / cookie.
  void drop_upstream_arg(std::string_view name);
  void drop_upstream_cookie(std::string_view name);
  // The request id (request-id plugin's, or a new one), for answers that must carry one.
  std::string_view ensure_request_id();

  void reset();

 private:
  struct Note {
    const Plugin* owner;
    std::array<int64_t, 4> values;
    std::string text;
  };
  std::string_view log_var(std::string_view name) const;
  Note& find_or_add_note(const Plugin* owner);
  const Note* find_note_of(const Plugin* owner) const;
  std::vector<Note> notes_;
  mutable std::string scratch_;  // for variables that must be formatted (ports)
};

}  // namespace portico::plugins
