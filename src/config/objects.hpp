// The APISIX-shaped configuration objects after validation: plain values, no behaviour.
// Field names and defaults follow Apache APISIX 3.x (see docs/configuration.md).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "plugins/metadata_table.hpp"

namespace portico::plugins {
struct PluginSet;
struct Consumer;
}  // namespace portico::plugins

namespace portico::router {
class VarsExpr;
}  // namespace portico::router

namespace portico::bridge {
class ProtoSet;
}  // namespace portico::bridge

namespace portico::tls {
struct ServerCertificate;
struct ClientIdentity;
}  // namespace portico::tls

namespace portico::stream {
struct StreamPlugins;
struct TlvProtocolConfig;
}  // namespace portico::stream

namespace portico::config {

using PluginSetPtr = std::shared_ptr<const plugins::PluginSet>;

struct UpstreamNode {
  std::string host;
  uint16_t port = 80;
  int weight = 1;
  int priority = 0;  // higher levels are used first; lower ones only when all higher ones failed
};

enum class PassHost { Pass, Node, Rewrite };

// One side (healthy or unhealthy) of APISIX's `checks.active` / `checks.passive`.
struct HealthThresholds {
  double interval = 1;  // active: seconds between probes of a node in this state
  int successes = 0;    // healthy side: consecutive successes that make a node healthy
  std::vector<int> http_statuses;
  int http_failures = 0;  // unhealthy side: consecutive failures of each kind (0: never)
  int tcp_failures = 0;
  int timeouts = 0;
};

struct ActiveCheck {
  std::string type = "http";  // http, https or tcp
  bool https_verify_certificate = true;
  double timeout = 1;
  int concurrency = 10;
  std::string http_path = "/";
  std::string host;  // Host header; default the node's address
  int port = 0;      // 0: the node's port
  std::vector<std::string> req_headers;
  HealthThresholds healthy{1, 2, {200, 302}, 0, 0, 0};
  HealthThresholds unhealthy{1, 0, {429, 404, 500, 501, 502, 503, 504, 505}, 5, 2, 3};
};

struct PassiveCheck {
  HealthThresholds healthy{0, 5, {}, 0, 0, 0};  // statuses: 200..399 (filled by the parser)
  HealthThresholds unhealthy{0, 0, {429, 500, 503}, 5, 2, 7};
  // Portico: with passive checks only, an unhealthy node is ejected for base x ejections (capped)
  // and then tried again, instead of staying out forever (a known APISIX trap).
  double ejection_base = 10;
  double ejection_max = 300;
  // Portico: passive checks never take out more than this share of a priority level at once
  // (at least one node), so a burst of errors cannot empty a level that still mostly works.
  int max_ejection_percent = 50;
};

struct Upstream {
  std::string id;                   // empty for an inline upstream
  std::string type = "roundrobin";  // roundrobin, chash, least_conn, ewma
  std::string hash_on = "vars";     // chash: vars, header, cookie, consumer
  std::string key;                  // chash: the variable, header or cookie name
  std::vector<UpstreamNode> nodes;
  double connect_timeout = 60;  // seconds
  double send_timeout = 60;
  double read_timeout = 60;
  std::optional<int> retries;  // unset: number of nodes - 1
  double retry_timeout = 0;    // seconds for all retries of one request; 0 = no limit
  PassHost pass_host = PassHost::Pass;
  std::string upstream_host;    // for pass_host: rewrite
  std::string scheme = "http";  // or https: TLS to the nodes
  bool tls_verify = false;      // https: tls.verify (APISIX's default: not verified)
  std::shared_ptr<const tls::ClientIdentity> tls_client;  // tls.client_cert/client_key (mTLS)
  // tls.client_cert_id: an ssls object of type client. The snapshot resolves it into the copy
  // of this upstream it serves with (tls_client set), so a rotated certificate takes effect.
  std::string tls_client_cert_id;
  int keepalive_size = 320;  // idle connections kept per node and worker
  double keepalive_idle_timeout = 60;
  int keepalive_requests = 1000;
  bool retry_non_idempotent = false;   // Portico extension: retry POST/PATCH after a send
  std::vector<int> retry_on_statuses;  // Portico extension: answers retried on the next node
  // Portico extension (Envoy's retry budget): requests being sent again (after a read timeout,
  // a reset or a retry_on_statuses answer) are at most this share of the requests in flight, per
  // worker, or retry_budget_min, whichever is more. Connect failures are always retried: nothing
  // reached the node.
  int retry_budget_percent = 20;
  int retry_budget_min = 3;
  std::optional<ActiveCheck> active;    // checks.active
  std::optional<PassiveCheck> passive;  // checks.passive
};

struct Route {
  std::string id;
  std::string name;
  std::vector<std::string> uris;
  std::vector<std::string> hosts;
  std::vector<std::string> methods;
  std::vector<std::string> remote_addrs;
  int priority = 0;
  std::shared_ptr<const Upstream> upstream;  // inline upstream
  std::string upstream_id;
  std::string service_id;
  std::string plugin_config_id;
  std::optional<bool> enable_websocket;
  bool enabled = true;  // APISIX `status`: 1 enabled, 0 disabled
  int64_t order = 0;    // creation order (file position, etcd create revision): last tie-breaker
  std::shared_ptr<const router::VarsExpr> vars;  // APISIX `vars`: null when absent
  PluginSetPtr plugins;
};

struct Service {
  std::string id;
  std::string name;
  std::shared_ptr<const Upstream> upstream;
  std::string upstream_id;
  std::vector<std::string> hosts;
  bool enable_websocket = false;
  PluginSetPtr plugins;
};

// An L4 route (APISIX `stream_routes`): matched on the listener's port, the client address and
// the address it connected to; proxies plain TCP, or TLV frames when protocol.name is "tlv".
struct StreamRoute {
  std::string id;
  std::string remote_addr;  // IP or CIDR; empty = any client
  std::string server_addr;  // IP; empty = any local address
  int server_port = 0;      // 0 = any stream listener
  std::string sni;          // TLS listeners: the server name the client asked for (or *.suffix)
  std::shared_ptr<const Upstream> upstream;
  std::string upstream_id;
  std::string service_id;
  std::string protocol;                                  // "" (plain TCP) or "tlv"
  std::shared_ptr<const stream::TlvProtocolConfig> tlv;  // protocol.conf of a tlv route
  std::shared_ptr<const stream::StreamPlugins> plugins;  // null: none
  int64_t order = 0;  // creation order: the first matching route wins
};

// plugin_configs, global_rules and consumer_groups: a named `plugins` map.
struct PluginConfig {
  std::string id;
  PluginSetPtr plugins;
};

// Everything that can change at runtime without a restart. Objects are shared with the store
// they came from: assembling a set of 50k routes copies pointers, not routes.
// ssls objects of type client, by id: what upstreams' tls.client_cert_id name.
using ClientIdentities =
    std::unordered_map<std::string, std::shared_ptr<const tls::ClientIdentity>>;

struct ConfigSet {
  std::vector<std::shared_ptr<const Route>> routes;  // in creation order
  std::vector<std::shared_ptr<const Service>> services;
  std::vector<std::shared_ptr<const Upstream>> upstreams;
  std::vector<std::shared_ptr<const PluginConfig>> plugin_configs;
  std::vector<std::shared_ptr<const PluginConfig>> global_rules;  // in creation order
  std::vector<std::shared_ptr<const plugins::Consumer>> consumers;
  std::vector<std::shared_ptr<const PluginConfig>> consumer_groups;
  plugins::MetadataTable plugin_metadata;
  std::vector<std::shared_ptr<const StreamRoute>> stream_routes;  // in creation order
  std::vector<std::pair<std::string, std::shared_ptr<const bridge::ProtoSet>>> protos;  // by id
  std::vector<std::shared_ptr<const tls::ServerCertificate>> certificates;  // in creation order
  ClientIdentities client_identities;
};

}  // namespace portico::config
