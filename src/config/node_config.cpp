#include "config/node_config.hpp"

#include <atomic>
#include <boost/asio/ip/address.hpp>
#include <charconv>
#include <filesystem>
#include <thread>

#include <unistd.h>

#include "config/common_fields.hpp"
#include "config/yaml_json.hpp"

namespace portico::config {
namespace {

bool parse_listen(const std::string& s, ListenAddress& out) {
  size_t colon = s.rfind(':');
  if (colon == std::string::npos) return false;
  std::string host = s.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
  int port = 0;
  auto [p, ec] = std::from_chars(s.data() + colon + 1, s.data() + s.size(), port);
  if (ec != std::errc() || p != s.data() + s.size() || port < 0 || port > 65535) return false;
  boost::system::error_code aec;
  boost::asio::ip::make_address(host, aec);
  if (aec) return false;
  out.host = host;
  out.port = static_cast<uint16_t>(port);
  return true;
}

void read_listen(ObjectReader& r, std::string_view key, ListenAddress& out) {
  auto s = r.string(key);
  if (s && !parse_listen(*s, out)) r.error(key, "must be \"ip:port\"");
}

// Fills `trusted` from `trusted_addresses`, reporting entries that are not addresses or CIDRs.
void compile_trusted(ListenAddress& a, const std::string& path, Errors& errors) {
  a.trusted.clear();
  for (size_t i = 0; i < a.trusted_addresses.size(); ++i) {
    router::Cidr cidr;
    if (router::Cidr::parse(a.trusted_addresses[i], cidr))
      a.trusted.push_back(cidr);
    else
      errors.add(path + "[" + std::to_string(i) + "]", "must be an IP address or CIDR");
  }
}

// {addr, ssl, proxy_protocol, trusted_addresses}: the object form of a node.listen entry.
void read_listen_object(const json& value, const std::string& path, ListenAddress& out,
                        Errors& errors) {
  ObjectReader r(value, path, errors);
  if (!r.valid()) return;
  if (auto addr = r.string("addr")) {
    if (!parse_listen(*addr, out)) r.error("addr", "must be \"ip:port\"");
  } else if (!r.has("addr")) {
    r.error("addr", "is required");
  }
  out.ssl = r.boolean_or("ssl", false);
  if (auto fallback = r.string("fallback_sni")) {
    if (!out.ssl)
      r.error("fallback_sni", "needs ssl: true");
    else if (fallback->empty() || fallback->front() == '*' || !valid_host_chars(*fallback))
      r.error("fallback_sni", "must be a host name");
    out.fallback_sni = *fallback;
  }
  out.proxy_protocol = r.boolean_or("proxy_protocol", false);
  if (r.has("trusted_addresses")) {
    out.trusted_addresses = r.string_list("trusted_addresses");
    if (out.trusted_addresses.empty())
      r.error("trusted_addresses",
              "needs at least one address (leave it out for loopback and private ranges)");
    compile_trusted(out, r.child_path("trusted_addresses"), errors);
  }
  r.finish();
}

// node.listen: "ip:port", an object (see read_listen_object), or a list mixing both.
void read_node_listen(const json& value, std::vector<ListenAddress>& out, Errors& errors,
                      const std::string& key = "node.listen") {
  auto read_item = [&](const json& item, const std::string& path) {
    ListenAddress a;
    a.trusted_addresses = kDefaultProxyProtocolTrusted;
    compile_trusted(a, path, errors);  // constants: never fails
    if (item.is_string()) {
      if (!parse_listen(item.get<std::string>(), a)) {
        errors.add(path, "must be \"ip:port\"");
        return;
      }
    } else if (item.is_object()) {
      size_t before = errors.size();
      read_listen_object(item, path, a, errors);
      if (errors.size() != before) return;
    } else {
      errors.add(path, "must be \"ip:port\" or {addr, ssl, proxy_protocol, trusted_addresses}");
      return;
    }
    out.push_back(std::move(a));
  };
  if (!value.is_array()) return read_item(value, key);
  for (size_t i = 0; i < value.size(); ++i)
    read_item(value[i], key + "[" + std::to_string(i) + "]");
}

void read_etcd(const json& value, const std::string& path, const std::string& config_path,
               EtcdSettings& out, Errors& errors) {
  ObjectReader e(value, path, errors);
  if (e.has("endpoints")) out.endpoints = e.string_list("endpoints");
  if (out.endpoints.empty()) e.error("endpoints", "needs at least one endpoint");
  for (size_t i = 0; i < out.endpoints.size(); ++i) {
    const std::string& url = out.endpoints[i];
    if (url.rfind("http://", 0) != 0 && url.rfind("https://", 0) != 0)
      errors.add(path + ".endpoints[" + std::to_string(i) + "]",
                 "must be an http:// or https:// URL");
  }
  out.prefix = e.string_or("prefix", out.prefix);
  if (out.prefix.empty() || out.prefix.front() != '/' || out.prefix.back() == '/')
    e.error("prefix", "must start with / and not end with /");
  out.user = e.string_or("user", "");
  out.password = e.string_or("password", "");
  if (out.user.empty() != out.password.empty())
    e.error(out.user.empty() ? "user" : "password", "user and password go together");
  if (const json* t = e.raw("tls")) {
    ObjectReader tls(*t, e.child_path("tls"), errors);
    out.tls.verify = tls.boolean_or("verify", true);
    out.tls.ca = tls.string_or("ca", "");
    out.tls.cert = tls.string_or("cert", "");
    out.tls.key = tls.string_or("key", "");
    if (out.tls.cert.empty() != out.tls.key.empty())
      tls.error(out.tls.cert.empty() ? "cert" : "key", "cert and key go together");
    std::filesystem::path base = std::filesystem::path(config_path).parent_path();
    for (auto [name, file] : {std::pair{"ca", &out.tls.ca}, std::pair{"cert", &out.tls.cert},
                              std::pair{"key", &out.tls.key}}) {
      if (file->empty()) continue;
      if (!std::filesystem::path(*file).is_absolute()) *file = (base / *file).string();
      if (::access(file->c_str(), R_OK) != 0) tls.error(name, "cannot read \"" + *file + "\"");
    }
    tls.finish();
  }
  out.timeout = e.duration_or("timeout", out.timeout, 0.1, 300);
  out.startup_timeout = e.duration_or("startup_timeout", out.startup_timeout, 0, 86400);
  e.finish();
}

}  // namespace

bool ListenAddress::trusts(const std::array<uint8_t, 16>& peer) const {
  for (const auto& cidr : trusted)
    if (cidr.contains(peer)) return true;
  return false;
}

std::string ListenAddress::to_string() const {
  return (host.find(':') != std::string::npos ? "[" + host + "]" : host) + ":" +
         std::to_string(port);
}

NodeConfig parse_node_config(const json& doc, const std::string& path, Errors& errors) {
  NodeConfig c;
  c.path = path;
  json empty = json::object();
  ObjectReader root(doc.is_null() ? empty : doc, "", errors);
  if (!root.valid()) return c;

  json none = json::object();
  auto section = [&](std::string_view key) -> const json& {
    const json* v = root.raw(key);
    return v ? *v : none;
  };

  {
    ObjectReader n(section("node"), "node", errors);
    if (const json* l = n.raw("listen"))
      read_node_listen(*l, c.listen, errors);
    else
      c.listen.push_back({"0.0.0.0", 9080});
    if (const json* l = n.raw("stream_listen")) {
      read_node_listen(*l, c.stream_listen, errors, "node.stream_listen");
      for (auto& a : c.stream_listen) a.stream = true;
    }
    if (const json* w = n.raw("workers")) {
      if (w->is_string() && w->get<std::string>() == "auto")
        c.workers = 0;
      else
        c.workers = static_cast<int>(n.integer_or("workers", 0, 1, 256));
    }
    c.shutdown_timeout = n.duration_or("shutdown_timeout", 10, 0, 3600);
    c.dns_refresh = n.duration_or("dns_refresh", 30, 0, 86400);
    HttpLimits& h = c.http;
    h.client_max_header_size = static_cast<size_t>(
        n.size_or("client_max_header_size", h.client_max_header_size, 1024, 1024 * 1024));
    h.max_uri_length =
        static_cast<size_t>(n.size_or("max_uri_length", h.max_uri_length, 256, 1024 * 1024));
    h.client_max_body_size =
        n.size_or("client_max_body_size", h.client_max_body_size, 0, int64_t{1} << 50);
    h.client_header_timeout = n.duration_or("client_header_timeout", 60, 0.001, 3600);
    h.client_body_timeout = n.duration_or("client_body_timeout", 60, 0.001, 3600);
    h.send_timeout = n.duration_or("send_timeout", 60, 0.001, 3600);
    h.keepalive_timeout = n.duration_or("keepalive_timeout", 60, 0, 86400);
    h.keepalive_requests =
        static_cast<int>(n.integer_or("keepalive_requests", 1000, 1, 1000000000));
    h.websocket_idle_timeout = n.duration_or("websocket_idle_timeout", 3600, 1, 7 * 86400);
    n.finish();
  }
  {
    ObjectReader a(section("admin"), "admin", errors);
    read_listen(a, "listen", c.admin_listen);
    if (const json* keys = a.raw("keys")) {
      if (!keys->is_array()) a.error("keys", "must be a list of {key, role}");
      for (size_t i = 0; keys->is_array() && i < keys->size(); ++i) {
        ObjectReader k((*keys)[i], a.child_path("keys") + "[" + std::to_string(i) + "]", errors);
        AdminKey key{k.string_or("key", ""), k.string_or("role", "admin")};
        if (key.key.size() < 16) k.error("key", "must be at least 16 characters");
        if (key.role != "admin" && key.role != "viewer") k.error("role", "must be admin or viewer");
        k.finish();
        c.admin_keys.push_back(std::move(key));
      }
    }
    if (a.has("allow")) c.admin_allow = a.string_list("allow");
    for (size_t i = 0; i < c.admin_allow.size(); ++i)
      if (!valid_cidr(c.admin_allow[i]))
        errors.add("admin.allow[" + std::to_string(i) + "]", "must be an IP address or CIDR");
    c.admin_max_body = a.size_or("max_body", c.admin_max_body, 1024, int64_t{1} << 30);
    a.finish();
  }
  {
    ObjectReader ctl(section("control"), "control", errors);
    read_listen(ctl, "listen", c.control_listen);
    ctl.finish();
  }
  {
    ObjectReader cfg(section("config"), "config", errors);
    c.provider = cfg.string_or("provider", "yaml");
    if (c.provider != "yaml" && c.provider != "etcd") cfg.error("provider", "must be yaml or etcd");
    if (const json* e = cfg.raw("etcd")) read_etcd(*e, "config.etcd", path, c.etcd, errors);
    std::string file = cfg.string_or("file", "routes.yaml");
    std::filesystem::path base = std::filesystem::path(path).parent_path();
    c.routes_file = std::filesystem::path(file).is_absolute() ? file : (base / file).string();
    cfg.finish();
  }
  {
    ObjectReader l(section("log"), "log", errors);
    c.access_log = l.string_or("access", c.access_log);
    c.error_log = l.string_or("error", c.error_log);
    c.log_level = l.string_or("level", "info");
    if (c.log_level != "debug" && c.log_level != "info" && c.log_level != "warn" &&
        c.log_level != "error")
      l.error("level", "must be one of debug, info, warn, error");
    std::filesystem::path base = std::filesystem::path(path).parent_path();
    for (std::string* p : {&c.access_log, &c.error_log})
      if (*p != "-" && *p != "off" && !std::filesystem::path(*p).is_absolute())
        *p = (base / *p).string();
    l.finish();
  }
  {
    ObjectReader e(section("edge_functions"), "edge_functions", errors);
    EdgeFunctionLimits& limits = c.edge_functions;
    limits.time_limit = e.duration_or("time_limit", limits.time_limit, 0.001, 60);
    limits.max_time_limit = e.duration_or("max_time_limit", limits.max_time_limit, 0.001, 60);
    if (limits.time_limit > limits.max_time_limit)
      e.error("time_limit", "must not be above max_time_limit");
    limits.memory_limit =
        e.size_or("memory_limit", limits.memory_limit, int64_t{1} << 20, int64_t{4} << 30);
    e.finish();
  }
  root.finish();
  return c;
}

namespace {
std::atomic<int64_t> g_edge_time_limit_us{10'000};
std::atomic<int64_t> g_edge_max_time_limit_us{1'000'000};
std::atomic<int64_t> g_edge_memory_limit{int64_t{32} << 20};
}  // namespace

void set_edge_function_limits(const EdgeFunctionLimits& limits) {
  g_edge_time_limit_us.store(static_cast<int64_t>(limits.time_limit * 1e6),
                             std::memory_order_relaxed);
  g_edge_memory_limit.store(limits.memory_limit, std::memory_order_relaxed);
  g_edge_max_time_limit_us.store(static_cast<int64_t>(limits.max_time_limit * 1e6),
                                 std::memory_order_relaxed);
}

namespace {
std::atomic<uint16_t> g_https_port{443};
}  // namespace

void set_https_port(const NodeConfig& node) {
  uint16_t port = 443;
  for (const ListenAddress& l : node.listen)
    if (l.ssl) {
      port = l.port;
      break;
    }
  g_https_port.store(port, std::memory_order_relaxed);
}

uint16_t https_port() { return g_https_port.load(std::memory_order_relaxed); }

EdgeFunctionLimits edge_function_limits() {
  return {static_cast<double>(g_edge_time_limit_us.load(std::memory_order_relaxed)) / 1e6,
          g_edge_memory_limit.load(std::memory_order_relaxed),
          static_cast<double>(g_edge_max_time_limit_us.load(std::memory_order_relaxed)) / 1e6};
}

NodeConfig load_node_config(const std::string& path, Errors& errors) {
  json doc;
  try {
    doc = load_yaml_file(path);
  } catch (const std::exception& e) {
    errors.add("", e.what());
    NodeConfig c;
    c.path = path;
    return c;
  }
  return parse_node_config(doc, path, errors);
}

}  // namespace portico::config
