// A small HTTP/1.1 server for the Admin and Control APIs, on the control thread (Beast). Low
// traffic, so it favours simplicity: whole requests and responses in strings, keep-alive, a body
// limit, a cap on concurrent connections and idle timeouts.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>

#include "config/node_config.hpp"
#include "core/asio.hpp"

namespace portico::admin {

struct HttpRequest {
  std::string method;  // "GET"
  std::string path;    // percent-decoded, without the query
  std::map<std::string, std::string> query;
  std::map<std::string, std::string> headers;  // lower-case names
  std::string body;
  asio::ip::address remote;

  std::string header(const std::string& lower_name) const {
    auto it = headers.find(lower_name);
    return it == headers.end() ? std::string() : it->second;
  }
  std::string param(const std::string& name, std::string fallback = {}) const {
    auto it = query.find(name);
    return it == query.end() ? fallback : it->second;
  }
};

struct HttpResponse {
  int status = 200;
  std::string body;
  std::string content_type = "application/json";
};

using HttpHandler = std::function<Task<HttpResponse>(HttpRequest&)>;
// Whether a peer may connect at all (admin.allow): others are closed at accept, so they take no
// connection slot while they send a request slowly.
using PeerFilter = std::function<bool(const asio::ip::address&)>;

class HttpService {
 public:
  // `name` appears in logs ("admin API", "control API").
  HttpService(Executor ex, std::string name, size_t max_body, HttpHandler handler,
              PeerFilter admits = nullptr);
  ~HttpService();
  // Binds and starts accepting. Throws std::runtime_error naming the address on failure.
  void start(const config::ListenAddress& address);
  void stop();

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

// "%2F" -> "/", and '+' -> ' ' when `plus_is_space` (query strings).
std::string percent_decode(std::string_view in, bool plus_is_space);

}  // namespace portico::admin
