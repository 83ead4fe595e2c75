#include "config/snapshot.hpp"

#include <map>

#include "config/yaml_json.hpp"

namespace portico::config {
namespace {

class NodeResolver {
 public:
  // Returns false when the host cannot be resolved.
  bool resolve(const std::string& host, uint16_t port, Endpoint& out) {
    error_code ec;
    auto addr = asio::ip::make_address(host, ec);
    if (!ec) {
      out = Endpoint(addr, port);
      return true;
    }
    auto it = cache_.find(host);
    if (it == cache_.end()) {
      asio::ip::tcp::resolver resolver(ctx_);
      auto results = resolver.resolve(host, "", ec);
      asio::ip::address found;
      bool ok = !ec && !results.empty();
      if (ok) found = results.begin()->endpoint().address();
      it = cache_.emplace(host, std::make_pair(ok, found)).first;
    }
    if (!it->second.first) return false;
    out = Endpoint(it->second.second, port);
    return true;
  }

 private:
  asio::io_context ctx_;
  std::map<std::string, std::pair<bool, asio::ip::address>> cache_;
};

std::shared_ptr<const upstream::UpstreamTarget> compile_upstream(
    const std::shared_ptr<const Upstream>& spec, const std::string& path, int workers,
    NodeResolver& resolver, Errors& errors, Errors* warnings) {
  std::vector<upstream::NodeTarget> nodes;
  for (size_t i = 0; i < spec->nodes.size(); ++i) {
    const UpstreamNode& n = spec->nodes[i];
    upstream::NodeTarget t;
    if (!resolver.resolve(n.host, n.port, t.endpoint)) {
      (warnings ? *warnings : errors)
          .add(path + ".nodes[" + std::to_string(i) + "]",
               "cannot resolve host \"" + n.host + "\"");
      continue;
    }
    std::string ip = t.endpoint.address().to_string();
    t.address = (t.endpoint.address().is_v6() ? "[" + ip + "]" : ip) + ":" + std::to_string(n.port);
    t.host_header = n.port == 80 ? n.host : n.host + ":" + std::to_string(n.port);
    t.weight = n.weight;
    t.priority = n.priority;
    nodes.push_back(std::move(t));
  }
  return std::make_shared<upstream::UpstreamTarget>(spec, std::move(nodes), workers);
}

}  // namespace

std::unique_ptr<Snapshot> build_snapshot(const ConfigSet& set, const HttpLimits& limits,
                                         int workers, Errors& errors, Errors* warnings) {
  auto snap = std::make_unique<Snapshot>();
  snap->limits = limits;
  NodeResolver resolver;

  std::map<std::string, std::shared_ptr<const upstream::UpstreamTarget>> named;
  for (size_t i = 0; i < set.upstreams.size(); ++i)
    named[set.upstreams[i]->id] =
        compile_upstream(set.upstreams[i], "upstreams[" + std::to_string(i) + "]", workers,
                         resolver, errors, warnings);
  std::map<std::string, const Service*> services;
  for (const auto& s : set.services) services[s.id] = &s;
  std::map<const Upstream*, std::shared_ptr<const upstream::UpstreamTarget>> service_upstreams;

  std::vector<router::RouteRule> rules;
  rules.reserve(set.routes.size());
  snap->routes.reserve(set.routes.size());
  for (size_t i = 0; i < set.routes.size(); ++i) {
    const Route& r = set.routes[i];
    std::string path = "routes[" + std::to_string(i) + "]";
    const Service* svc = nullptr;
    if (!r.service_id.empty()) {
      auto it = services.find(r.service_id);
      if (it != services.end()) svc = it->second;
    }
    CompiledRoute cr;
    cr.id = r.id;
    // The route's own upstream wins over upstream_id, which wins over the service's (APISIX).
    if (r.upstream) {
      cr.upstream =
          compile_upstream(r.upstream, path + ".upstream", workers, resolver, errors, warnings);
    } else if (!r.upstream_id.empty()) {
      cr.upstream = named[r.upstream_id];
    } else if (svc && svc->upstream) {
      auto& slot = service_upstreams[svc->upstream.get()];
      if (!slot)
        slot = compile_upstream(svc->upstream, "services[" + svc->id + "].upstream", workers,
                                resolver, errors, warnings);
      cr.upstream = slot;
    } else if (svc && !svc->upstream_id.empty()) {
      cr.upstream = named[svc->upstream_id];
    }
    if (!cr.upstream) {
      errors.add(path, "needs an upstream: upstream, upstream_id, or a service that has one");
      continue;
    }
    cr.websocket = r.enable_websocket.value_or(svc ? svc->enable_websocket : false);

    router::RouteRule rule;
    rule.id = r.id;
    rule.hosts = !r.hosts.empty() ? r.hosts : (svc ? svc->hosts : std::vector<std::string>{});
    rule.uris = r.uris;
    rule.method_names = r.methods;
    for (const auto& m : r.methods) rule.methods |= router::method_bit(m);
    rule.remote_addr_texts = r.remote_addrs;
    for (const auto& a : r.remote_addrs) {
      router::Cidr c;
      if (router::Cidr::parse(a, c)) rule.remote_addrs.push_back(c);
    }
    rule.priority = r.priority;
    rule.order = r.order;
    rule.enabled = r.enabled;
    rules.push_back(std::move(rule));
    snap->routes.push_back(std::move(cr));
  }
  snap->upstream_count = named.size();
  snap->router = router::RouteIndex(std::move(rules));
  return snap;
}

std::unique_ptr<Snapshot> load_snapshot(const std::string& routes_file, const HttpLimits& limits,
                                        int workers, Errors& errors, ObjectStore* store) {
  json doc;
  try {
    doc = load_yaml_file(routes_file);
  } catch (const std::exception& e) {
    errors.add("", e.what());
    return nullptr;
  }
  ObjectStore objects = store_from_document(doc, errors);
  if (!errors.empty()) return nullptr;
  Errors unused;  // the strict load above already reported every reference problem
  auto snap = build_snapshot(objects.config_set(unused), limits, workers, errors);
  if (!errors.empty()) return nullptr;
  if (store) *store = std::move(objects);
  return snap;
}

}  // namespace portico::config
