// The node configuration (conf/config.yaml): listeners, workers, limits and timeouts, logs and
// where the routes come from. Documented key by key in docs/configuration.md.
#pragma once

#include <array>
#include <string>
#include <vector>

#include "config/field_reader.hpp"
#include "router/route_rule.hpp"

namespace portico::config {

// Peers trusted to send a PROXY protocol header when a listener does not list its own: loopback
// and private ranges, where L4 load balancers and accelerators sit; never a public address.
inline const std::vector<std::string> kDefaultProxyProtocolTrusted{
    "127.0.0.0/8", "::1/128", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7"};

struct ListenAddress {
  std::string host;
  uint16_t port = 0;
  // node.listen only: every connection must open with a PROXY protocol v1/v2 header (read before
  // anything else, TLS included) naming the real client; connections without one are closed.
  bool proxy_protocol = false;
  std::vector<std::string> trusted_addresses{};  // as configured, or kDefaultProxyProtocolTrusted
  std::vector<router::Cidr> trusted{};           // the same, compiled
  // TLS, with the certificate chosen by the client's SNI from the `ssls` objects of the running
  // config (stream listeners too: stream_routes may then match on `sni`).
  bool ssl = false;
  std::string fallback_sni{};  // ssl: the certificate for clients that send no server name
  bool stream = false;         // a node.stream_listen entry: connections go to stream_routes
  std::string to_string() const;
  // Whether a peer (16 bytes, IPv4-mapped for IPv4) may send the PROXY header on this listener.
  bool trusts(const std::array<uint8_t, 16>& peer) const;
};

// HTTP limits and timeouts, with nginx-like defaults. Reloadable (SIGHUP).
struct HttpLimits {
  size_t client_max_header_size = 32 * 1024;  // head over it: 431
  size_t max_uri_length = 8 * 1024;           // request line over it: 414
  int64_t client_max_body_size = 0;           // 0 = unlimited (APISIX default); over it: 413
  double client_header_timeout = 60;          // seconds; expiry: 408
  double client_body_timeout = 60;            // between two body reads; expiry: 408
  double send_timeout = 60;                   // between two writes to the client
  double keepalive_timeout = 60;              // idle between requests; 0 disables keep-alive
  int keepalive_requests = 1000;              // requests per client connection
  double websocket_idle_timeout = 3600;       // a relayed WebSocket with no traffic is closed
};

struct AdminKey {
  std::string key;
  std::string role;  // "admin" (read/write) or "viewer" (read only)
};

struct EtcdTls {
  bool verify = true;
  std::string ca;    // PEM file; empty: the system store
  std::string cert;  // client certificate (mutual TLS), optional
  std::string key;
};

struct EtcdSettings {
  std::vector<std::string> endpoints{"http://127.0.0.1:2379"};
  std::string prefix = "/portico";
  std::string user;
  std::string password;
  EtcdTls tls;
  double timeout = 5;           // seconds per request
  double startup_timeout = 30;  // start-up waits this long for the first full read
};

// Edge functions (serverless-pre/post-function): bounds on each worker's Lua state.
struct EdgeFunctionLimits {
  double time_limit = 0.010;                 // seconds per phase run of one plugin
  int64_t memory_limit = int64_t{32} << 20;  // bytes per Lua state (one per worker thread)
  // The most a plugin's own `time_limit` may ask: routes come from the Admin API, and a worker
  // running one function serves nothing else meanwhile.
  double max_time_limit = 1.0;
  bool operator==(const EdgeFunctionLimits&) const = default;
};
// The limits in force: set where a node config is applied (start, reload, validate), read by
// the plugins on any thread.
void set_edge_function_limits(const EdgeFunctionLimits& limits);
EdgeFunctionLimits edge_function_limits();
// The port the redirect plugin's http_to_https sends clients to: the first TLS listener's in
// node.listen (443, left out of the URL, when there is none). Set where a node config is applied.
struct NodeConfig;
void set_https_port(const NodeConfig& node);
uint16_t https_port();

struct NodeConfig {
  std::string path;  // the config file itself
  std::vector<ListenAddress> listen;
  std::vector<ListenAddress> stream_listen;  // L4 listeners (stream_routes); none by default
  int workers = 0;                           // 0 = auto (one per core)
  double shutdown_timeout = 10;
  double dns_refresh = 30;  // seconds between resolutions of node host names (0: never again)
  HttpLimits http;
  ListenAddress admin_listen{"127.0.0.1", 9180};
  std::vector<AdminKey> admin_keys;
  std::vector<std::string> admin_allow{"127.0.0.0/8", "::1/128"};
  int64_t admin_max_body = 1024 * 1024;
  ListenAddress control_listen{"127.0.0.1", 9090};
  std::string provider = "yaml";
  std::string routes_file;  // absolute, resolved against the config file's directory
  EtcdSettings etcd;
  std::string access_log = "logs/access.log";  // "off", "-" (stdout) or a path
  std::string error_log = "-";                 // "-" (stderr) or a path
  std::string log_level = "info";
  EdgeFunctionLimits edge_functions;
};

// Loads and validates conf/config.yaml. Errors are collected; the result is only meaningful
// when `errors` stays empty.
NodeConfig load_node_config(const std::string& path, Errors& errors);
NodeConfig parse_node_config(const json& doc, const std::string& path, Errors& errors);

}  // namespace portico::config
