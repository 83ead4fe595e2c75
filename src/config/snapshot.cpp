#include "config/snapshot.hpp"

#include <algorithm>
#include <atomic>
#include <cctype>
#include <functional>
#include <map>
#include <unordered_map>

#include "config/host_table.hpp"
#include "config/yaml_json.hpp"
#include "plugins/plugin.hpp"
#include "plugins/plugin_metadata.hpp"

namespace portico::config {
namespace {

// The client certificate tls.client_cert_id names; null without one (or when it names none,
// which the object store reports). Compiled upstreams are reused only while this stays the same,
// so a rotated certificate reaches new connections at once.
std::shared_ptr<const tls::ClientIdentity> named_identity(const Upstream* spec,
                                                          const ClientIdentities& ids) {
  if (!spec || spec->tls_client_cert_id.empty()) return nullptr;
  auto it = ids.find(spec->tls_client_cert_id);
  return it == ids.end() ? nullptr : it->second;
}

// `key` names the upstream for health state and logs: "upstreams/u1", "routes/r1" (inline).
std::shared_ptr<const upstream::UpstreamTarget> compile_upstream(
    std::shared_ptr<const Upstream> spec, const ClientIdentities& ids, const std::string& path,
    const std::string& key, int workers, Errors& errors, Errors* warnings) {
  if (!spec->tls_client_cert_id.empty()) {
    auto identity = named_identity(spec.get(), ids);
    if (!identity) {
      (warnings ? *warnings : errors)
          .add(path + ".tls.client_cert_id", not_a_client_certificate(spec->tls_client_cert_id));
      return nullptr;
    }
    auto serving = std::make_shared<Upstream>(*spec);  // the spec the proxy and probes read
    serving->tls_client = std::move(identity);
    spec = std::move(serving);
  }
  std::vector<upstream::NodeTarget> nodes;
  std::vector<HostStamp> hosts;
  for (size_t i = 0; i < spec->nodes.size(); ++i) {
    const UpstreamNode& n = spec->nodes[i];
    error_code ec;
    std::vector<asio::ip::address> addresses{asio::ip::make_address(n.host, ec)};
    if (ec) {  // a host name: every address it stands for is a node (host_table.hpp)
      HostTable::Entry found = host_table().lookup(n.host);
      if (std::none_of(hosts.begin(), hosts.end(), [&](const auto& h) { return h.name == n.host; }))
        hosts.push_back({n.host, found.version});
      addresses = std::move(found.addresses);
      if (addresses.empty()) {
        (warnings ? *warnings : errors)
            .add(path + ".nodes[" + std::to_string(i) + "]",
                 "cannot resolve host \"" + n.host + "\" (" + found.error + ")");
        continue;
      }
    }
    for (const auto& address : addresses) {
      upstream::NodeTarget t;
      t.endpoint = Endpoint(address, n.port);
      std::string ip = address.to_string();
      t.address = (address.is_v6() ? "[" + ip + "]" : ip) + ":" + std::to_string(n.port);
      t.host_header = n.port == 80 ? n.host : n.host + ":" + std::to_string(n.port);
      t.weight = n.weight;
      t.priority = n.priority;
      t.health = health_registry().get(key, t.address);
      nodes.push_back(std::move(t));
    }
  }
  return std::make_shared<upstream::UpstreamTarget>(spec, std::move(nodes), workers,
                                                    std::move(hosts));
}

}  // namespace

upstream::HealthRegistry& health_registry() {
  static upstream::HealthRegistry registry;
  return registry;
}

struct CompileCache::Entries {
  // `identity`: the client certificate the target was compiled with (tls.client_cert_id).
  struct UpstreamEntry {
    std::shared_ptr<const Upstream> spec;
    std::shared_ptr<const tls::ClientIdentity> identity;
    std::shared_ptr<const upstream::UpstreamTarget> target;
  };
  struct ServiceEntry {
    std::shared_ptr<const Service> service;
    std::shared_ptr<const tls::ClientIdentity> identity;
    std::shared_ptr<const upstream::UpstreamTarget> inline_target;
  };
  struct RouteEntry {
    std::shared_ptr<const Route> route;
    std::shared_ptr<const tls::ClientIdentity> identity;
    std::shared_ptr<const upstream::UpstreamTarget> inline_target;
    // What the rule and the compiled route were built from, besides the route itself.
    std::shared_ptr<const Service> service;
    std::shared_ptr<const upstream::UpstreamTarget> target;
    std::shared_ptr<const router::RouteRule> rule;
    std::shared_ptr<const PluginConfig> plugin_config;
    std::shared_ptr<const plugins::Chain> plugins;
    std::shared_ptr<const plugins::RouteInfo> info;  // reused while name, uris, service name stay
    // The chain's inline upstream choices, compiled (null where the choice names an upstream).
    std::vector<std::shared_ptr<const upstream::UpstreamTarget>> choice_targets;
    std::vector<std::shared_ptr<const tls::ClientIdentity>> choice_identities;  // compiled with
    bool websocket = false;
    uint64_t generation = 0;  // the build that last saw this route
  };
  uint64_t generation = 0;
  std::unordered_map<std::string, UpstreamEntry> upstreams;
  std::unordered_map<std::string, ServiceEntry> services;
  std::unordered_map<std::string, RouteEntry> routes;  // updated in place, see build_snapshot
  // Inline upstreams of stream routes and their TLV sub-routes, by health key: IM sessions are
  // long, and a target compiled anew forgets its least_conn counts of the open ones.
  std::unordered_map<std::string, UpstreamEntry> stream_upstreams;
};

CompileCache::CompileCache() : entries_(std::make_unique<Entries>()) {}
CompileCache::~CompileCache() = default;

namespace {

std::shared_ptr<const router::RouteRule> make_rule(const Route& r, const Service* svc) {
  auto rule = std::make_shared<router::RouteRule>();
  rule->id = r.id;
  rule->hosts = !r.hosts.empty() ? r.hosts : (svc ? svc->hosts : std::vector<std::string>{});
  rule->uris = r.uris;
  rule->method_names = r.methods;
  for (const auto& m : r.methods) rule->methods |= router::method_bit(m);
  rule->remote_addr_texts = r.remote_addrs;
  for (const auto& a : r.remote_addrs) {
    router::Cidr c;
    if (router::Cidr::parse(a, c)) rule->remote_addrs.push_back(c);
  }
  rule->vars = r.vars;
  rule->priority = r.priority;
  rule->order = static_cast<size_t>(r.order);
  rule->enabled = r.enabled;
  return rule;
}

using TargetPtr = std::shared_ptr<const upstream::UpstreamTarget>;

// A compiled target may be used again only while the host names of its nodes resolve to what
// they did when it was compiled.
bool hosts_current(const TargetPtr& t) { return !t || host_table().current(t->hosts()); }
// Compiles (or takes from the last build) an inline upstream: (spec, field path, health key).
using InlineCompiler = std::function<TargetPtr(const std::shared_ptr<const Upstream>&,
                                               const std::string&, const std::string&)>;

// The plugin of a chain that may send requests elsewhere (traffic-split), if any.
const plugins::PluginEntry* upstream_chooser(const plugins::Chain* chain) {
  if (chain)
    for (const plugins::PluginEntry* e : chain->entries)
      if (e->plugin->upstream_choices()) return e;
  return nullptr;
}

// Stream routes are few: compiled whole on every build. Their node health and per-user buckets
// are keyed by id, and their inline upstreams come from `inline_target`, so all carry over.
void compile_stream_routes(const ConfigSet& set, Snapshot& snap, Errors& errors, Errors* warnings,
                           const std::function<TargetPtr(const std::string&)>& named,
                           const std::function<TargetPtr(const std::string&)>& service_target,
                           const InlineCompiler& inline_target) {
  for (size_t i = 0; i < set.stream_routes.size(); ++i) {
    const StreamRoute& r = *set.stream_routes[i];
    std::string path =
        warnings ? "stream_routes/" + r.id : "stream_routes[" + std::to_string(i) + "]";
    std::string key = "stream_routes/" + r.id;
    Errors& report = warnings ? *warnings : errors;
    auto c = std::make_shared<stream::CompiledStreamRoute>();
    c->id = r.id;
    c->server_port = static_cast<uint16_t>(r.server_port);
    if (!r.remote_addr.empty()) {
      router::Cidr cidr;
      if (router::Cidr::parse(r.remote_addr, cidr)) c->remote = cidr;
    }
    if (!r.server_addr.empty()) c->server_addr = router::address_bytes(r.server_addr);
    c->sni = r.sni;
    std::transform(c->sni.begin(), c->sni.end(), c->sni.begin(),
                   [](unsigned char ch) { return static_cast<char>(std::tolower(ch)); });
    c->plugins = r.plugins;
    if (r.upstream)
      c->upstream = inline_target(r.upstream, path + ".upstream", key);
    else if (!r.upstream_id.empty())
      c->upstream = named(r.upstream_id);
    else if (!r.service_id.empty())
      c->upstream = service_target(r.service_id);
    if (!c->upstream) {
      report.add(path, "needs an upstream: upstream, upstream_id or a service that has one");
      continue;
    }
    c->tlv = r.tlv;
    bool ok = true;
    if (r.tlv) {
      for (size_t k = 0; k < r.tlv->routes.size(); ++k) {
        const stream::TlvSubRouteSpec& spec = r.tlv->routes[k];
        std::string sub = path + ".protocol.conf.routes[" + std::to_string(k) + "]";
        stream::CompiledSubRoute cs{spec.cmds, nullptr, spec.hash_on_to};
        cs.target = spec.upstream ? inline_target(spec.upstream, sub + ".upstream",
                                                  key + "/routes[" + std::to_string(k) + "]")
                                  : named(spec.upstream_id);
        if (!cs.target) {
          report.add(sub + ".upstream_id", "unknown upstream \"" + spec.upstream_id + "\"");
          ok = false;
          break;
        }
        // Another balancer would ignore the user id and open a backend connection per id.
        if (spec.hash_on_to && cs.target->spec().type != "chash") {
          report.add(sub + ".hash_on", "\"to\" needs a chash upstream (type: chash)");
          ok = false;
          break;
        }
        c->sub_routes.push_back(std::move(cs));
      }
      if (r.tlv->per_user.enabled()) c->user_buckets = plugins::bucket_table(key + "#per_user");
    }
    if (ok) snap.stream_routes.push_back(std::move(c));
  }
}

}  // namespace

namespace {
std::atomic<int64_t> snapshots_alive{0};
}  // namespace

Snapshot::Snapshot() { snapshots_alive.fetch_add(1, std::memory_order_relaxed); }
Snapshot::~Snapshot() { snapshots_alive.fetch_sub(1, std::memory_order_relaxed); }
int64_t Snapshot::alive() { return snapshots_alive.load(std::memory_order_relaxed); }

std::unique_ptr<Snapshot> build_snapshot(const ConfigSet& set, const HttpLimits& limits,
                                         int workers, Errors& errors, Errors* warnings,
                                         CompileCache* cache) {
  CompileCache scratch;
  CompileCache::Entries& old = *(cache ? cache : &scratch)->entries_;
  const uint64_t generation = ++old.generation;
  auto fresh = std::make_unique<CompileCache::Entries>();
  auto snap = std::make_unique<Snapshot>();
  snap->limits = limits;

  const ClientIdentities& ids = set.client_identities;
  using UpstreamEntries = std::unordered_map<std::string, CompileCache::Entries::UpstreamEntry>;
  // An upstream compiled in the last build from the same spec and client identity is taken as
  // it is, balancer state and all; anything else is compiled.
  auto reuse_or_compile = [&](const UpstreamEntries& before, UpstreamEntries& now,
                              const std::string& name, const std::shared_ptr<const Upstream>& spec,
                              const std::string& field, const std::string& health_key) {
    auto identity = named_identity(spec.get(), ids);
    auto it = before.find(name);
    TargetPtr target =
        it != before.end() && it->second.spec == spec && it->second.identity == identity &&
                hosts_current(it->second.target)
            ? it->second.target
            : compile_upstream(spec, ids, field, health_key, workers, errors, warnings);
    now[name] = {spec, identity, target};
    return target;
  };
  for (size_t i = 0; i < set.upstreams.size(); ++i) {
    const auto& spec = set.upstreams[i];
    reuse_or_compile(old.upstreams, fresh->upstreams, spec->id, spec,
                     warnings ? "upstreams/" + spec->id : "upstreams[" + std::to_string(i) + "]",
                     "upstreams/" + spec->id);
  }
  for (const auto& svc : set.services) {
    auto it = old.services.find(svc->id);
    auto& entry = fresh->services[svc->id];
    entry.service = svc;
    entry.identity = named_identity(svc->upstream.get(), ids);
    if (it != old.services.end() && it->second.service == svc &&
        it->second.identity == entry.identity && hosts_current(it->second.inline_target))
      entry.inline_target = it->second.inline_target;
    else if (svc->upstream)
      entry.inline_target =
          compile_upstream(svc->upstream, ids, "services[" + svc->id + "].upstream",
                           "services/" + svc->id, workers, errors, warnings);
  }
  std::unordered_map<std::string_view, std::shared_ptr<const PluginConfig>> plugin_configs;
  for (const auto& pc : set.plugin_configs) plugin_configs.emplace(pc->id, pc);
  std::vector<PluginSetPtr> global_sets;
  for (const auto& rule : set.global_rules) global_sets.push_back(rule->plugins);
  snap->global_plugins = plugins::merge_global_rules(global_sets);
  snap->plugin_metadata = std::make_shared<const plugins::MetadataTable>(set.plugin_metadata);
  for (const auto& [id, proto] : set.protos) snap->protos.emplace(id, proto);
  plugins::CompileChecks checks{snap->protos, {}};
  // Groups' plugins meet the same cross-object checks as routes' (a limit-count `group` shared
  // with a route must agree with it); a group that fails serves none of its consumers.
  std::unordered_map<std::string_view, PluginSetPtr> groups;
  for (size_t i = 0; i < set.consumer_groups.size(); ++i) {
    const auto& g = set.consumer_groups[i];
    auto chain = g->plugins ? plugins::merge_chain(nullptr, nullptr, g->plugins) : nullptr;
    std::string at =
        warnings ? "consumer_groups/" + g->id : "consumer_groups[" + std::to_string(i) + "]";
    if (chain && chain->checks_references &&
        !plugins::check_chain_references(*chain, checks, at, warnings ? *warnings : errors))
      continue;
    groups.emplace(g->id, g->plugins);
  }
  for (size_t i = 0; i < set.consumers.size(); ++i) {
    auto consumer = set.consumers[i];
    if (!consumer->group_id.empty() && !groups.contains(consumer->group_id)) continue;
    // A consumer of a group runs the group's plugins too (its own win): a copy that has them.
    if (auto g = groups.find(consumer->group_id); g != groups.end() && g->second) {
      auto joined = std::make_shared<plugins::Consumer>(*consumer);
      joined->plugins = consumer->plugins
                            ? plugins::merge_group_plugins(*consumer->plugins, *g->second)
                            : g->second;
      consumer = std::move(joined);
    }
    snap->consumers.add(
        consumer,
        warnings ? "consumers/" + consumer->username : "consumers[" + std::to_string(i) + "]",
        warnings ? *warnings : errors);
  }
  auto named = [&](const std::string& id) -> std::shared_ptr<const upstream::UpstreamTarget> {
    auto it = fresh->upstreams.find(id);
    return it == fresh->upstreams.end() ? nullptr : it->second.target;
  };

  auto certificates = std::make_shared<tls::CertificateTable>();
  for (const auto& certificate : set.certificates) certificates->add(certificate);
  snap->certificates = std::move(certificates);

  std::vector<std::shared_ptr<const router::RouteRule>> rules;
  rules.reserve(set.routes.size());
  snap->routes.reserve(set.routes.size());
  // Route entries are updated in place (50k map rebuilds per change were a fifth of the time);
  // entries of routes that are gone are dropped after the walk.
  auto& route_cache = cache ? old.routes : fresh->routes;
  // The host names of every compiled upstream (node.dns_refresh resolves them again).
  auto names_of = [&](const TargetPtr& t) {
    if (t)
      for (const HostStamp& h : t->hosts()) snap->host_names.insert(h.name);
  };
  // An entry's inline upstream choices must be compiled again when their host names resolve
  // anew, their client certificate changed, or they failed last time.
  auto choices_stale = [&](const CompileCache::Entries::RouteEntry& e) {
    const plugins::PluginEntry* chooser = upstream_chooser(e.plugins.get());
    if (!chooser) return false;
    const auto& specs = *chooser->plugin->upstream_choices();
    if (e.choice_targets.size() != specs.size()) return true;
    for (size_t k = 0; k < specs.size(); ++k)
      if (specs[k].spec && (!e.choice_targets[k] || !hosts_current(e.choice_targets[k]) ||
                            named_identity(specs[k].spec.get(), ids) != e.choice_identities[k]))
        return true;
    return false;
  };
  size_t visited = 0;
  for (size_t i = 0; i < set.routes.size(); ++i) {
    const auto& route = set.routes[i];
    const Route& r = *route;
    // File positions in yaml mode; in etcd mode (warnings) positions mean nothing: the key.
    auto path = [&] { return warnings ? "routes/" + r.id : "routes[" + std::to_string(i) + "]"; };
    const CompileCache::Entries::ServiceEntry* svc = nullptr;
    if (!r.service_id.empty()) {
      auto it = fresh->services.find(r.service_id);
      if (it != fresh->services.end()) svc = &it->second;
    }
    auto [slot, inserted] = route_cache.try_emplace(r.id);
    CompileCache::Entries::RouteEntry& entry = slot->second;
    auto identity = named_identity(r.upstream.get(), ids);
    bool same_route = !inserted && entry.route == route && entry.identity == identity &&
                      hosts_current(entry.inline_target);
    entry.generation = generation;
    ++visited;
    if (!same_route) {
      entry.route = route;
      entry.identity = std::move(identity);
      entry.inline_target = r.upstream
                                ? compile_upstream(r.upstream, ids, path() + ".upstream",
                                                   "routes/" + r.id, workers, errors, warnings)
                                : nullptr;
    }
    names_of(entry.inline_target);
    // The route's own upstream wins over upstream_id, which wins over the service's (APISIX).
    std::shared_ptr<const upstream::UpstreamTarget> target;
    if (r.upstream)
      target = entry.inline_target;
    else if (!r.upstream_id.empty())
      target = named(r.upstream_id);
    else if (svc && svc->service->upstream)
      target = svc->inline_target;
    else if (svc && !svc->service->upstream_id.empty())
      target = named(svc->service->upstream_id);
    if (!target) {  // e.g. its service was left out (etcd mode): the route is too
      (warnings ? *warnings : errors)
          .add(path(), "needs an upstream: upstream, upstream_id, or a service that has one");
      continue;
    }
    std::shared_ptr<const Service> service = svc ? svc->service : nullptr;
    std::shared_ptr<const PluginConfig> plugin_config;
    if (!r.plugin_config_id.empty()) {
      auto it = plugin_configs.find(r.plugin_config_id);
      if (it == plugin_configs.end()) {
        (warnings ? *warnings : errors)
            .add(path(), "plugin_config \"" + r.plugin_config_id + "\" not found");
        continue;
      }
      plugin_config = it->second;
    }
    // Unchanged route, service and upstream: reuse the compiled rule (most of a 50k rebuild).
    if (!same_route || !entry.rule || entry.service != service || entry.target != target ||
        entry.plugin_config != plugin_config || choices_stale(entry)) {
      entry.plugin_config = plugin_config;
      entry.plugins =
          plugins::merge_chain(service ? service->plugins : nullptr,
                               plugin_config ? plugin_config->plugins : nullptr, r.plugins);
      entry.service = service;
      entry.target = target;
      entry.rule = make_rule(r, service.get());
      entry.websocket = r.enable_websocket.value_or(svc ? svc->service->enable_websocket : false);
      entry.choice_targets.clear();
      entry.choice_identities.clear();
      if (const plugins::PluginEntry* chooser = upstream_chooser(entry.plugins.get())) {
        const auto& choices = *chooser->plugin->upstream_choices();
        for (size_t k = 0; k < choices.size(); ++k) {
          entry.choice_identities.push_back(named_identity(choices[k].spec.get(), ids));
          entry.choice_targets.push_back(
              choices[k].spec
                  ? compile_upstream(choices[k].spec, ids,
                                     path() + ".plugins." + std::string(chooser->type->name) + "." +
                                         choices[k].field + ".upstream",
                                     "routes/" + r.id + "#choice/" + std::to_string(k), workers,
                                     errors, warnings)
                  : nullptr);
        }
      }
    }
    // The chooser's upstreams: inline ones as compiled above, named ones as they are now.
    std::vector<TargetPtr> choices;
    if (const plugins::PluginEntry* chooser = upstream_chooser(entry.plugins.get())) {
      const auto& specs = *chooser->plugin->upstream_choices();
      for (size_t k = 0; k < specs.size(); ++k) {
        choices.push_back(specs[k].spec ? entry.choice_targets[k] : named(specs[k].upstream_id));
        names_of(choices.back());
        if (!choices.back()) break;
      }
      if (!choices.empty() && !choices.back()) {
        const plugins::UpstreamChoice& bad = specs[choices.size() - 1];
        (warnings ? *warnings : errors)
            .add(path() + ".plugins." + std::string(chooser->type->name) + "." + bad.field +
                     (bad.spec ? ".upstream" : ".upstream_id"),
                 bad.spec ? "could not be compiled"
                          : "unknown upstream \"" + bad.upstream_id + "\"");
        continue;
      }
    }
    if (entry.plugins && entry.plugins->checks_references &&
        !plugins::check_chain_references(*entry.plugins, checks, path(),
                                         warnings ? *warnings : errors))
      continue;
    rules.push_back(entry.rule);
    static const std::string kNoService;
    const std::string& service_name = svc && svc->service ? svc->service->name : kNoService;
    if (!entry.info || entry.info->name != r.name || entry.info->uris != r.uris ||
        entry.info->service_name != service_name)
      entry.info = std::make_shared<const plugins::RouteInfo>(
          plugins::RouteInfo{r.name, r.uris, service_name});
    snap->routes.push_back(CompiledRoute{r.id, entry.target, entry.websocket, entry.plugins,
                                         r.service_id, entry.info, std::move(choices)});
  }
  if (route_cache.size() > visited)
    std::erase_if(route_cache, [&](const auto& kv) { return kv.second.generation != generation; });
  compile_stream_routes(
      set, *snap, errors, warnings, named,
      [&](const std::string& id) -> TargetPtr {
        auto it = fresh->services.find(id);
        if (it == fresh->services.end()) return nullptr;
        if (it->second.service->upstream) return it->second.inline_target;
        return named(it->second.service->upstream_id);
      },
      [&](const std::shared_ptr<const Upstream>& spec, const std::string& field,
          const std::string& key) {
        return reuse_or_compile(old.stream_upstreams, fresh->stream_upstreams, key, spec, field,
                                key);
      });
  snap->upstream_count = set.upstreams.size();
  snap->router = router::RouteIndex(std::move(rules));
  for (const auto& [id, e] : fresh->upstreams) names_of(e.target);
  for (const auto& [id, e] : fresh->services) names_of(e.inline_target);
  for (const auto& [key, e] : fresh->stream_upstreams) names_of(e.target);
  // A build that failed (yaml mode) is not served: the running config's upstreams stay the ones
  // to keep. (Route entries were updated in place; they are matched by object, so they cannot
  // be taken for the running config's.)
  if (cache && errors.empty()) {
    old.upstreams = std::move(fresh->upstreams);
    old.services = std::move(fresh->services);
    old.stream_upstreams = std::move(fresh->stream_upstreams);
  }
  return snap;
}

std::unique_ptr<Snapshot> load_snapshot(const std::string& routes_file, const HttpLimits& limits,
                                        int workers, Errors& errors, ObjectStore* store,
                                        CompileCache* cache, const ObjectStore* previous) {
  json doc;
  try {
    doc = load_yaml_file(routes_file);
  } catch (const std::exception& e) {
    errors.add("", e.what());
    return nullptr;
  }
  ObjectStore objects = store_from_document(doc, errors);
  if (!errors.empty()) return nullptr;
  if (previous) objects.carry_over(*previous);
  Errors unused;  // the strict load above already reported every reference problem
  auto snap = build_snapshot(objects.config_set(unused), limits, workers, errors, nullptr, cache);
  if (!errors.empty()) return nullptr;
  if (store) *store = std::move(objects);
  return snap;
}

}  // namespace portico::config
