#include "config/object_parser.hpp"

#include "router/vars_expr.hpp"

#include <algorithm>
#include <boost/asio/ip/address.hpp>
#include <charconv>
#include <cstring>
#include <set>

#include "config/common_fields.hpp"
#include "config/object_store.hpp"
#include "config/pem_fields.hpp"

namespace portico::config {
namespace {

// "host", "host:port", "[v6]", "[v6]:port"
bool split_host_port(std::string_view s, std::string& host, std::optional<int>& port) {
  std::string_view h = s;
  std::string_view p;
  if (!s.empty() && s.front() == '[') {
    size_t close = s.find(']');
    if (close == std::string_view::npos) return false;
    h = s.substr(1, close - 1);
    std::string_view rest = s.substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':') return false;
      p = rest.substr(1);
    }
  } else if (size_t colon = s.rfind(':'); colon != std::string_view::npos) {
    if (s.find(':') != colon) {  // bare IPv6 without brackets and without port
      h = s;
    } else {
      h = s.substr(0, colon);
      p = s.substr(colon + 1);
    }
  }
  host.assign(h);
  if (!p.empty()) {
    int v = 0;
    auto [ptr, ec] = std::from_chars(p.data(), p.data() + p.size(), v);
    if (ec != std::errc() || ptr != p.data() + p.size()) return false;
    port = v;
  }
  return !host.empty();
}

bool valid_node_host(const std::string& host) {
  boost::system::error_code ec;
  boost::asio::ip::make_address(host, ec);
  return !ec || valid_host_chars(host);
}

void check_node(UpstreamNode& n, const std::string& path, Errors& errors) {
  if (!valid_node_host(n.host)) errors.add(path + ".host", "must be an IP address or host name");
}

void parse_nodes(const json& v, const std::string& path, Upstream& up, Errors& errors) {
  int default_port = up.scheme == "https" ? 443 : 80;
  if (v.is_object()) {  // {"127.0.0.1:8080": 1}
    for (auto it = v.begin(); it != v.end(); ++it) {
      std::string p = path + "[\"" + it.key() + "\"]";
      UpstreamNode n;
      std::optional<int> port;
      if (!split_host_port(it.key(), n.host, port)) {
        errors.add(p, "must be \"host:port\"");
        continue;
      }
      if (port && (*port < 1 || *port > 65535)) {
        errors.add(p, "port must be 1..65535");
        continue;
      }
      n.port = static_cast<uint16_t>(port.value_or(default_port));
      if (!it->is_number_integer() || it->get<int64_t>() < 0 || it->get<int64_t>() > 100000) {
        errors.add(p, "weight must be an integer 0..100000");
        continue;
      }
      n.weight = static_cast<int>(it->get<int64_t>());
      check_node(n, p, errors);
      up.nodes.push_back(std::move(n));
    }
  } else if (v.is_array()) {  // [{host, port, weight, priority}]
    for (size_t i = 0; i < v.size(); ++i) {
      std::string p = path + "[" + std::to_string(i) + "]";
      ObjectReader r(v[i], p, errors);
      UpstreamNode n;
      auto host = r.string("host");
      if (!host && r.valid()) r.error("host", "is required");
      n.host = host.value_or("");
      n.port = static_cast<uint16_t>(r.integer_or("port", default_port, 1, 65535));
      n.weight = static_cast<int>(r.integer_or("weight", 1, 0, 100000));
      n.priority = static_cast<int>(r.integer_or("priority", 0, -1000000, 1000000));
      r.ignore("metadata");
      r.finish();
      if (host) check_node(n, p, errors);
      up.nodes.push_back(std::move(n));
    }
  } else {
    errors.add(path, "must be a map of \"host:port\": weight or a list of nodes");
  }
  if ((v.is_object() || v.is_array()) && v.empty()) errors.add(path, "must not be empty");
}

// APISIX metadata: `name` is kept (logs, route-explain), the rest accepted and ignored.
std::string read_metadata(ObjectReader& r) {
  ignore_metadata(r);
  return r.string_or("name", "");
}

// An id given inside the object ("id: 1") or none, for inline objects.
std::string object_id(ObjectReader& r) { return r.id("id").value_or(""); }

bool valid_uri_pattern(const std::string& uri) {
  if (uri.empty() || uri.front() != '/') return false;
  for (size_t i = 0; i < uri.size(); ++i) {
    auto c = static_cast<unsigned char>(uri[i]);
    if (c <= 0x20 || c == 0x7f) return false;
    if (c == '*' && i + 1 != uri.size()) return false;  // '*' only as the final prefix marker
  }
  return true;
}

// Host patterns, lower-cased: "api.example.com" or "*.example.com".
std::vector<std::string> read_hosts(ObjectReader& r, std::string_view key) {
  std::vector<std::string> hosts = r.string_list(key);
  for (auto& h : hosts) {
    for (auto& c : h) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (!valid_host_pattern(h)) r.error(key, "invalid host \"" + h + "\"");
  }
  return hosts;
}

// The request variables chash can hash on (nginx/APISIX names).
bool valid_hash_var(const std::string& v) {
  static const std::set<std::string> plain = {"remote_addr", "uri",          "request_uri",
                                              "host",        "query_string", "server_port"};
  for (const char* prefix : {"arg_", "http_", "cookie_"})
    if (v.size() > strlen(prefix) && v.compare(0, strlen(prefix), prefix) == 0) return true;
  return plain.count(v) > 0;
}

std::vector<int> read_statuses(ObjectReader& r, std::string_view key, std::vector<int> fallback) {
  const json* v = r.raw(key);
  if (!v) return fallback;
  std::vector<int> out;
  if (!v->is_array() || v->empty()) {
    r.error(key, "must be a non-empty list of HTTP statuses");
    return fallback;
  }
  for (const auto& item : *v) {
    if (!item.is_number_integer() || item.get<int64_t>() < 200 || item.get<int64_t>() > 599) {
      r.error(key, "statuses must be integers 200..599");
      return fallback;
    }
    out.push_back(static_cast<int>(item.get<int64_t>()));
  }
  return out;
}

// One side of checks.active / checks.passive. `healthy_side` has successes, the other side the
// failure counters; `active` has intervals.
void parse_thresholds(const json* v, const std::string& path, HealthThresholds& t, bool active,
                      bool healthy_side, Errors& errors) {
  if (!v) return;
  ObjectReader r(*v, path, errors);
  if (!r.valid()) return;
  if (active) t.interval = r.duration_or("interval", t.interval, 0.01, 86400);
  t.http_statuses = read_statuses(r, "http_statuses", t.http_statuses);
  if (healthy_side) {
    t.successes = static_cast<int>(r.integer_or("successes", t.successes, 1, 254));
  } else {
    t.http_failures = static_cast<int>(r.integer_or("http_failures", t.http_failures, 0, 254));
    t.tcp_failures = static_cast<int>(r.integer_or("tcp_failures", t.tcp_failures, 0, 254));
    t.timeouts = static_cast<int>(r.integer_or("timeouts", t.timeouts, 0, 254));
  }
  r.finish();
}

void parse_checks(const json& v, const std::string& path, Upstream& up, Errors& errors) {
  ObjectReader r(v, path, errors);
  if (!r.valid()) return;
  if (const json* a = r.raw("active")) {
    ObjectReader ar(*a, r.child_path("active"), errors);
    ActiveCheck c;
    c.type = ar.string_or("type", "http");
    if (c.type != "http" && c.type != "https" && c.type != "tcp")
      ar.error("type", "must be http, https or tcp");
    c.timeout = ar.duration_or("timeout", 1, 0.001, 300);
    c.concurrency = static_cast<int>(ar.integer_or("concurrency", 10, 1, 1000));
    c.http_path = ar.string_or("http_path", "/");
    if (c.http_path.empty() || c.http_path.front() != '/')
      ar.error("http_path", "must start with /");
    c.host = ar.string_or("host", "");
    c.port = static_cast<int>(ar.integer_or("port", 0, 1, 65535));
    c.req_headers = ar.string_list("req_headers");
    c.https_verify_certificate = ar.boolean_or("https_verify_certificate", true);
    parse_thresholds(ar.raw("healthy"), ar.child_path("healthy"), c.healthy, true, true, errors);
    parse_thresholds(ar.raw("unhealthy"), ar.child_path("unhealthy"), c.unhealthy, true, false,
                     errors);
    ar.finish();
    up.active = c;
  }
  if (const json* p = r.raw("passive")) {
    ObjectReader pr(*p, r.child_path("passive"), errors);
    PassiveCheck c;
    for (int s = 200; s < 400; ++s) c.healthy.http_statuses.push_back(s);
    std::string type = pr.string_or("type", "http");
    if (type != "http" && type != "tcp") pr.error("type", "must be http or tcp");
    parse_thresholds(pr.raw("healthy"), pr.child_path("healthy"), c.healthy, false, true, errors);
    parse_thresholds(pr.raw("unhealthy"), pr.child_path("unhealthy"), c.unhealthy, false, false,
                     errors);
    c.ejection_base = pr.duration_or("ejection_base_time", 10, 0.1, 86400);
    c.ejection_max = pr.duration_or("ejection_max_time", 300, 0.1, 86400);
    c.max_ejection_percent = static_cast<int>(pr.integer_or("max_ejection_percent", 50, 0, 100));
    pr.finish();
    up.passive = c;
  }
  r.finish();
}

// tls.client_cert and tls.client_key (PEM, as APISIX), or tls.client_cert_id (an ssls object
// of type client, resolved by the snapshot): the certificate shown to nodes that ask for one.
void read_client_identity(ObjectReader& tr, Upstream& up, Errors& errors) {
  const json* cert = tr.raw("client_cert");
  const json* key = tr.raw("client_key");
  if (auto id = tr.id("client_cert_id")) {
    if (cert || key) tr.error("client_cert_id", "cannot be used with client_cert and client_key");
    up.tls_client_cert_id = *id;
    return;
  }
  if (!cert && !key) return;
  if (!cert || !key) {
    tr.error(cert ? "client_key" : "client_cert", "is required with client_cert/client_key");
    return;
  }
  auto chain = check_certificate(*cert, tr.child_path("client_cert"), errors);
  auto pkey = check_private_key(*key, tr.child_path("client_key"), errors);
  std::vector<tls::CertificateKeyPair> pairs;
  check_key_matches(std::move(chain), std::move(pkey), tr.child_path("client_key"), "client_cert",
                    pairs, errors);
  if (!pairs.empty()) up.tls_client = tls::make_client_identity(std::move(pairs.front()));
}

const std::set<std::string> kMethods = {"GET",  "POST",    "PUT",   "DELETE", "PATCH",
                                        "HEAD", "OPTIONS", "TRACE", "PURGE",  "CONNECT"};

}  // namespace

std::shared_ptr<const Upstream> parse_upstream(const json& value, const std::string& path,
                                               Errors& errors) {
  auto up = std::make_shared<Upstream>();
  ObjectReader r(value, path, errors);
  if (!r.valid()) return up;
  up->id = object_id(r);
  read_metadata(r);
  up->type = r.string_or("type", "roundrobin");
  if (up->type != "roundrobin" && up->type != "chash" && up->type != "least_conn" &&
      up->type != "ewma")
    r.error("type", "must be one of roundrobin, chash, least_conn, ewma");
  up->hash_on = r.string_or("hash_on", "vars");
  if (up->hash_on != "vars" && up->hash_on != "header" && up->hash_on != "cookie" &&
      up->hash_on != "consumer")
    r.error("hash_on", "must be one of vars, header, cookie, consumer");
  up->key = r.string_or("key", "");
  if (up->type == "chash" && up->hash_on != "consumer") {
    if (up->key.empty())
      r.error("key", "is required for type chash");
    else if (up->hash_on == "vars" && !valid_hash_var(up->key))
      r.error("key", "unknown variable \"" + up->key +
                         "\" (remote_addr, uri, request_uri, host, query_string, arg_*, http_*, "
                         "cookie_*)");
  }
  up->scheme = r.string_or("scheme", "http");
  if (up->scheme != "http" && up->scheme != "https")
    r.error("scheme", "must be http or https (grpc, grpcs, tcp, udp, tls are not available)");
  if (const json* t = r.raw("tls")) {
    ObjectReader tr(*t, r.child_path("tls"), errors);
    up->tls_verify = tr.boolean_or("verify", false);
    read_client_identity(tr, *up, errors);
    tr.finish();
    if (up->scheme != "https") r.error("tls", "needs scheme: https");
  }
  if (const json* nodes = r.raw("nodes"))
    parse_nodes(*nodes, r.child_path("nodes"), *up, errors);
  else
    r.error("nodes", "is required");
  if (const json* t = r.raw("timeout")) {
    ObjectReader tr(*t, r.child_path("timeout"), errors);
    up->connect_timeout = tr.duration_or("connect", 60, 0.001, 3600);
    up->send_timeout = tr.duration_or("send", 60, 0.001, 86400);
    up->read_timeout = tr.duration_or("read", 60, 0.001, 86400);
    tr.finish();
  }
  if (auto retries = r.integer("retries", 0, 100)) up->retries = static_cast<int>(*retries);
  up->retry_timeout = r.duration_or("retry_timeout", 0, 0, 3600);
  std::string pass_host = r.string_or("pass_host", "pass");
  if (pass_host == "pass")
    up->pass_host = PassHost::Pass;
  else if (pass_host == "node")
    up->pass_host = PassHost::Node;
  else if (pass_host == "rewrite")
    up->pass_host = PassHost::Rewrite;
  else
    r.error("pass_host", "must be one of pass, node, rewrite");
  up->upstream_host = r.string_or("upstream_host", "");
  if (up->pass_host == PassHost::Rewrite && up->upstream_host.empty())
    r.error("upstream_host", "is required when pass_host is rewrite");
  if (const json* kp = r.raw("keepalive_pool")) {
    ObjectReader kr(*kp, r.child_path("keepalive_pool"), errors);
    up->keepalive_size = static_cast<int>(kr.integer_or("size", 320, 0, 100000));
    up->keepalive_idle_timeout = kr.duration_or("idle_timeout", 60, 0, 86400);
    up->keepalive_requests = static_cast<int>(kr.integer_or("requests", 1000, 1, 100000000));
    kr.finish();
  }
  up->retry_non_idempotent = r.boolean_or("retry_non_idempotent", false);
  if (r.has("retry_on_statuses")) up->retry_on_statuses = read_statuses(r, "retry_on_statuses", {});
  if (const json* b = r.raw("retry_budget")) {
    ObjectReader br(*b, r.child_path("retry_budget"), errors);
    up->retry_budget_percent = static_cast<int>(br.integer_or("percent", 20, 0, 100));
    up->retry_budget_min = static_cast<int>(br.integer_or("min_concurrency", 3, 0, 100000));
    br.finish();
  }
  if (const json* checks = r.raw("checks"))
    parse_checks(*checks, r.child_path("checks"), *up, errors);
  r.finish();
  return up;
}

Route parse_route(const json& value, const std::string& path, Errors& errors) {
  Route route;
  ObjectReader r(value, path, errors);
  if (!r.valid()) return route;
  route.id = object_id(r);
  route.name = read_metadata(r);

  if (r.has("uri") && r.has("uris")) r.error("uris", "use either uri or uris, not both");
  route.uris = r.string_list(r.has("uri") ? "uri" : "uris");
  r.ignore("uri");
  r.ignore("uris");
  if (route.uris.empty()) r.error("uri", "is required (uri or uris)");
  for (size_t i = 0; i < route.uris.size(); ++i)
    if (!valid_uri_pattern(route.uris[i]))
      errors.add(r.child_path("uris") + "[" + std::to_string(i) + "]",
                 "must start with '/' and may end with '*' (prefix)");
    else if (std::count(route.uris[i].begin(), route.uris[i].end(), '/') > 64)
      // The router walks at most 64 segments of a path: a deeper pattern could never match.
      errors.add(r.child_path("uris") + "[" + std::to_string(i) + "]", "has more than 64 segments");

  if (r.has("host") && r.has("hosts")) r.error("hosts", "use either host or hosts, not both");
  route.hosts = read_hosts(r, r.has("host") ? "host" : "hosts");
  r.ignore("host");

  route.methods = r.string_list("methods");
  for (const auto& m : route.methods)
    if (!kMethods.count(m)) r.error("methods", "unknown method \"" + m + "\"");

  if (r.has("remote_addr") && r.has("remote_addrs"))
    r.error("remote_addrs", "use either remote_addr or remote_addrs, not both");
  route.remote_addrs = r.string_list(r.has("remote_addr") ? "remote_addr" : "remote_addrs");
  r.ignore("remote_addr");
  r.ignore("remote_addrs");
  for (const auto& a : route.remote_addrs)
    if (!valid_cidr(a)) r.error("remote_addrs", "invalid IP or CIDR \"" + a + "\"");

  route.priority = static_cast<int>(r.integer_or("priority", 0, -1000000000, 1000000000));
  if (const json* up = r.raw("upstream"))
    route.upstream = parse_upstream(*up, r.child_path("upstream"), errors);
  route.upstream_id = r.id("upstream_id").value_or("");
  route.service_id = r.id("service_id").value_or("");
  route.plugin_config_id = r.id("plugin_config_id").value_or("");
  if (r.has("enable_websocket")) route.enable_websocket = r.boolean_or("enable_websocket", false);
  route.enabled = r.integer_or("status", 1, 0, 1) == 1;
  route.plugins = read_plugins(r, "routes", route.id);
  if (const json* vars = r.raw("vars")) {
    auto compiled = router::VarsExpr::compile(*vars, r.child_path("vars"), errors);
    if (compiled && !compiled->empty())
      route.vars = std::make_shared<const router::VarsExpr>(std::move(*compiled));
  }
  r.finish();
  return route;
}

Service parse_service(const json& value, const std::string& path, Errors& errors) {
  Service svc;
  ObjectReader r(value, path, errors);
  if (!r.valid()) return svc;
  svc.id = object_id(r);
  svc.name = read_metadata(r);
  if (const json* up = r.raw("upstream"))
    svc.upstream = parse_upstream(*up, r.child_path("upstream"), errors);
  svc.upstream_id = r.id("upstream_id").value_or("");
  svc.hosts = read_hosts(r, "hosts");
  svc.enable_websocket = r.boolean_or("enable_websocket", false);
  svc.plugins = read_plugins(r, "services", svc.id);
  r.finish();
  return svc;
}

ConfigSet parse_config_set(const json& doc, Errors& errors) {
  ObjectStore store = store_from_document(doc, errors);
  if (!errors.empty()) return {};
  Errors unused;  // store_from_document already reported every reference problem
  return store.config_set(unused);
}

}  // namespace portico::config
