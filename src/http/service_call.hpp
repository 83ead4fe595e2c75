// One HTTP/1.1 exchange from the gateway to a service of its own (forward-auth's authorization
// service, http-logger's log server): a fresh connection, plain or TLS, the whole answer read up to
// a size, everything within one timeout. Not the proxy's path: no pool, no retries, no balancer.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/asio.hpp"

namespace portico::http {

// An http:// or https:// URL, checked once with the config.
struct ServiceUrl {
  bool https = false;
  std::string host;  // a name, or an address ([v6] without the brackets)
  uint16_t port = 0;
  std::string target;       // path and query ("/" when the URL has none)
  std::string host_header;  // host[:port] as the Host header names it
};
// nullopt with `why` set when the text is not such a URL.
std::optional<ServiceUrl> parse_service_url(std::string_view text, std::string& why);

struct ServiceRequest {
  std::string method = "GET";
  std::string target;                                        // path and query; empty: the URL's
  std::string host;                                          // the Host header; empty: the URL's
  std::vector<std::pair<std::string, std::string>> headers;  // besides Host and Content-Length
  std::string body;
  double timeout = 3;  // seconds for the whole exchange: resolve, connect, TLS, send, answer
  bool verify_tls = true;
  size_t max_body = 64 * 1024;  // a longer answer is a failure
  bool keep_body = true;        // false: the answer's body is read to its end and dropped
  // When set, the whole request head as sent (proxy-mirror's copy of the upstream head); the
  // method must still say what was asked (an answer to HEAD has no body).
  std::string raw_head;
};

struct ServiceAnswer {
  int status = 0;  // 0: no answer (see error)
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  std::string error;  // why there is no answer
  bool timed_out = false;
};

Task<ServiceAnswer> call_service(const ServiceUrl& url, const ServiceRequest& request);

// The same kind of connection without HTTP (tcp-logger): `data` written, then closed, all
// within `timeout` seconds; `sni` names the server in the TLS handshake (default: host). Empty
// on success, else why not.
Task<std::string> send_to_service(const std::string& host, uint16_t port, bool tls, bool verify_tls,
                                  std::string_view data, double timeout,
                                  const std::string& sni = {});

}  // namespace portico::http
