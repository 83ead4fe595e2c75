#include "config/change_check.hpp"

#include <algorithm>
#include <deque>
#include <optional>
#include <vector>

#include "plugins/plugin_set.hpp"
#include "stream/tlv_policy.hpp"

namespace portico::config {
namespace {

using Key = std::pair<Kind, std::string>;
struct Reason {
  std::string field;
  std::string message;
  std::optional<Key> via;  // left out because this object it takes its upstream from is
};
using Reasons = std::vector<Reason>;

std::string quoted(Kind kind, const std::string& id) {
  return std::string(kind_singular(kind)) + " \"" + id + "\"";
}

std::string quoted(const Key& key) { return quoted(key.first, key.second); }

bool has_reference_checks(const PluginSetPtr& set) {
  if (set)
    for (const plugins::PluginEntry& e : set->entries)
      if (e.type->checks_references) return true;
  return false;
}

// The store as it is, or as it would be with one object replaced, and why each object in it
// would be left out. The rules are those of ObjectStore::config_set() (every reference exists,
// a tls.client_cert_id names a client certificate, a route without an upstream of its own has a
// service with one) and of build_snapshot() (where a route's upstream comes from must be
// served itself; plugins that check references), asked per object.
class View {
 public:
  View(const ObjectStore& store, const FreshObjects& fresh, const UnseenRefs& unseen,
       const Key* changed = nullptr, const StoredObject* replacement = nullptr)
      : store_(store),
        fresh_(fresh),
        unseen_(unseen),
        changed_(changed),
        replacement_(replacement) {}

  const StoredObject* find(Kind kind, const std::string& id) const {
    if (changed_ && changed_->first == kind && changed_->second == id) return replacement_;
    if (auto it = fresh_.find(Key{kind, id}); it != fresh_.end()) return &it->second;
    return store_.find(kind, id);
  }

  // Empty: served (or absent, or not ours to judge).
  const Reasons& reasons(Kind kind, const std::string& id) {
    auto [it, inserted] = memo_.try_emplace(Key{kind, id});
    if (!inserted) return it->second;
    if (const StoredObject* obj = find(kind, id)) it->second = own_reasons(kind, *obj);
    return it->second;
  }

  // The plugins a route runs come from its service, its plugin config and itself.
  struct PluginSources {
    PluginSetPtr service, plugin_config, route;
  };
  PluginSources plugin_sources(const Route& r) const {
    const StoredObject* svc = r.service_id.empty() ? nullptr : find(Kind::Services, r.service_id);
    const StoredObject* pc =
        r.plugin_config_id.empty() ? nullptr : find(Kind::PluginConfigs, r.plugin_config_id);
    return {svc ? svc->service->plugins : nullptr, pc ? pc->plugin_config->plugins : nullptr,
            r.plugins};
  }

  // Whether those include a plugin that must agree with other objects
  // (Plugin::check_references).
  bool route_plugins_check(const Route& r) const {
    PluginSources from = plugin_sources(r);
    return has_reference_checks(from.route) || has_reference_checks(from.service) ||
           has_reference_checks(from.plugin_config);
  }

  // Those plugins, walked in creation order as the compiler does: a limit-count group belongs
  // to the first served route that names it. Their reasons are added to the routes'; returns
  // the routes checked.
  std::vector<std::string> check_route_plugins() {
    bridge::ProtoTable protos;
    for (const auto& [id, obj] : store_.all(Kind::Protos))
      if (const StoredObject* now = find(Kind::Protos, id); now && now->proto)
        protos.emplace(id, now->proto);
    for (const auto& [key, obj] : fresh_)
      if (key.first == Kind::Protos && obj.proto) protos.emplace(key.second, obj.proto);
    if (changed_ && changed_->first == Kind::Protos && replacement_ && replacement_->proto)
      protos.emplace(changed_->second, replacement_->proto);
    plugins::CompileChecks checks{protos, {}};
    std::vector<std::string> checked;
    for (const StoredObject* route : routes_in_creation_order()) {
      const Route& r = *route->route;
      if (!route_plugins_check(r)) continue;
      if (!reasons(Kind::Routes, r.id).empty()) continue;  // left out before its plugins count
      PluginSources from = plugin_sources(r);
      auto chain = plugins::merge_chain(from.service, from.plugin_config, from.route);
      if (!chain) continue;  // every plugin disabled
      std::string path = "routes/" + r.id;
      Errors found;
      plugins::check_chain_references(*chain, checks, path, found);
      Reasons& out = memo_[Key{Kind::Routes, r.id}];
      for (const auto& e : found.list())
        out.push_back({e.path.substr(path.size() + 1), e.message, std::nullopt});
      checked.push_back(r.id);
    }
    return checked;
  }

 private:
  std::vector<const StoredObject*> routes_in_creation_order() const {
    std::vector<const StoredObject*> out;
    bool changed_route = changed_ && changed_->first == Kind::Routes;
    bool placed = false;
    for (const StoredObject* obj : store_.in_creation_order(Kind::Routes)) {
      if (changed_route && obj->route->id == changed_->second) {
        placed = true;
        if (replacement_) out.push_back(replacement_);
      } else {
        out.push_back(obj);
      }
    }
    if (changed_route && !placed && replacement_) out.push_back(replacement_);  // a new route
    return out;
  }

  Reasons own_reasons(Kind kind, const StoredObject& obj) {
    Reasons out;
    // config_set(): what it refers to exists, and a tls.client_cert_id is a client certificate.
    for (const auto& [field, ref] : obj.refs) {
      if (unseen_.count(Key{ref.kind, ref.id})) continue;
      const StoredObject* target = find(ref.kind, ref.id);
      if (!target)
        out.push_back({field, "unknown " + quoted(ref.kind, ref.id), std::nullopt});
      else if (ref.kind == Kind::Ssls && !target->client_identity)
        out.push_back({field, not_a_client_certificate(ref.id), std::nullopt});
    }
    if (!out.empty()) return out;
    // build_snapshot(): where the upstream comes from must be served itself.
    auto served_upstream = [&](const std::string& field, const std::string& upstream_id,
                               const std::string& how) {
      Key from{Kind::Upstreams, upstream_id};
      if (unseen_.count(from)) return;
      if (const Reasons& theirs = reasons(from.first, from.second); !theirs.empty())
        out.push_back({field,
                       how + quoted(from) + ", which is left out (" + theirs.front().field + ": " +
                           theirs.front().message + ")",
                       from});
    };
    auto upstream_of = [&](const std::shared_ptr<const Upstream>& up,
                           const std::string& upstream_id, const std::string& service_id) {
      if (up) return;
      if (!upstream_id.empty()) return served_upstream("upstream_id", upstream_id, "");
      Key from{Kind::Services, service_id};
      if (service_id.empty() || unseen_.count(from)) return;
      if (const Reasons& theirs = reasons(from.first, from.second); !theirs.empty())
        return out.push_back({"service_id",
                              quoted(from) + " is left out (" + theirs.front().field + ": " +
                                  theirs.front().message + ")",
                              from});
      const Service& svc = *find(from.first, from.second)->service;
      if (svc.upstream) return;
      if (!svc.upstream_id.empty())
        return served_upstream("service_id", svc.upstream_id,
                               quoted(from) + " takes its upstream from ");
      out.push_back({"service_id",
                     "needs an upstream: neither this " + std::string(kind_singular(kind)) +
                         " nor " + quoted(from) + " has one",
                     std::nullopt});
    };
    if (kind == Kind::Routes) {
      const Route& r = *obj.route;
      upstream_of(r.upstream, r.upstream_id, r.service_id);
    } else if (kind == Kind::StreamRoutes && obj.stream_route) {
      const StreamRoute& r = *obj.stream_route;
      upstream_of(r.upstream, r.upstream_id, r.service_id);
      if (r.tlv)
        for (size_t k = 0; k < r.tlv->routes.size(); ++k) {
          const stream::TlvSubRouteSpec& spec = r.tlv->routes[k];
          std::string at = "protocol.conf.routes[" + std::to_string(k) + "].";
          if (!spec.upstream) served_upstream(at + "upstream_id", spec.upstream_id, "");
          const StoredObject* named =
              spec.upstream ? nullptr : find(Kind::Upstreams, spec.upstream_id);
          const Upstream* up = spec.upstream ? spec.upstream.get()
                               : named       ? named->upstream.get()
                                             : nullptr;
          if (spec.hash_on_to && up && up->type != "chash")
            out.push_back(
                {at + "hash_on", "\"to\" needs a chash upstream (type: chash)", std::nullopt});
        }
    }
    return out;
  }

  const ObjectStore& store_;
  const FreshObjects& fresh_;
  const UnseenRefs& unseen_;
  const Key* changed_;
  const StoredObject* replacement_;  // null: (kind, id) is deleted in this view
  std::map<Key, Reasons> memo_;
};

// Whether changing this object can change what routes' reference-checking plugins see.
bool touches_route_plugins(Kind kind, const StoredObject* obj, const View& view) {
  if (!obj) return false;
  switch (kind) {
    case Kind::Protos:
      return true;  // tlv-bridge routes bind its messages
    case Kind::Routes:
      return view.route_plugins_check(*obj->route);
    case Kind::Services:
      return has_reference_checks(obj->service->plugins);
    case Kind::PluginConfigs:
      return has_reference_checks(obj->plugin_config->plugins);
    default:
      return false;
  }
}

// Everything that refers to (kind, id), directly or through others: what may fall with it.
// One pass over the store builds the reverse references (a walk per object would cost
// objects x referrers: 50k routes on one upstream).
std::vector<Key> referrers_of(const ObjectStore& store, const Key& changed) {
  if (changed.first != Kind::Upstreams && changed.first != Kind::Services &&
      changed.first != Kind::Ssls)
    return {};  // routes via plugin_configs and protos are found by check_route_plugins
  std::map<Key, std::vector<Key>> users;
  for (Kind k : {Kind::Upstreams, Kind::Services, Kind::Routes, Kind::StreamRoutes})
    for (const auto& [id, obj] : store.all(k))
      for (const auto& [field, ref] : obj.refs)
        if (ref.kind == Kind::Upstreams || ref.kind == Kind::Services || ref.kind == Kind::Ssls)
          users[Key{ref.kind, ref.id}].push_back(Key{k, id});
  std::vector<Key> out;
  std::set<Key> seen{changed};
  std::deque<Key> queue{changed};
  while (!queue.empty()) {
    auto it = users.find(queue.front());
    queue.pop_front();
    if (it == users.end()) continue;
    for (const Key& user : it->second)
      if (seen.insert(user).second) {
        out.push_back(user);
        queue.push_back(user);
      }
  }
  return out;
}

}  // namespace

void check_change(const ObjectStore& store, Kind kind, const std::string& id,
                  const StoredObject& replacement, const FreshObjects& fresh,
                  const UnseenRefs& unseen, Errors& errors) {
  const Key changed{kind, id};
  View before(store, fresh, unseen);
  View after(store, fresh, unseen, &changed, &replacement);

  std::vector<Key> affected = referrers_of(store, changed);
  // A route that falls or comes back changes who holds a limit-count group too.
  bool plugins_matter = touches_route_plugins(kind, &replacement, after) ||
                        touches_route_plugins(kind, store.find(kind, id), before);
  for (const Key& k : affected)
    if (const StoredObject* route =
            k.first == Kind::Routes ? after.find(k.first, k.second) : nullptr)
      plugins_matter = plugins_matter || after.route_plugins_check(*route->route);
  if (plugins_matter) {
    std::set<Key> seen(affected.begin(), affected.end());
    before.check_route_plugins();
    for (std::string& route : after.check_route_plugins())
      if (Key k{Kind::Routes, std::move(route)}; k != changed && seen.insert(k).second)
        affected.push_back(std::move(k));
  }

  for (const Reason& r : after.reasons(kind, id)) errors.add(r.field, r.message);
  // Objects newly left out. Those that fall only because another one here does are counted,
  // not listed: one upstream can take a thousand routes with it.
  std::set<Key> falling;
  for (const Key& k : affected)
    if (!after.reasons(k.first, k.second).empty() && before.reasons(k.first, k.second).empty())
      falling.insert(k);
  size_t dependents = 0;
  for (const Key& k : affected) {
    if (!falling.count(k)) continue;
    const Reasons& now = after.reasons(k.first, k.second);
    bool follows = std::all_of(now.begin(), now.end(), [&](const Reason& r) {
      return r.via && (falling.count(*r.via) || *r.via == changed);
    });
    if (follows) {
      ++dependents;
      continue;
    }
    for (const Reason& r : now)
      errors.add(std::string(kind_name(k.first)) + "/" + k.second + "." + r.field,
                 r.message + " (this change would leave " + quoted(k) + " out)");
  }
  if (dependents == 1) errors.add("", "1 more object depends on them and would be left out too");
  if (dependents > 1)
    errors.add(
        "", std::to_string(dependents) + " more objects depend on them and would be left out too");
}

}  // namespace portico::config
