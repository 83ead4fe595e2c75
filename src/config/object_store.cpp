#include "config/object_store.hpp"

#include <algorithm>
#include <set>

#include "config/object_parser.hpp"
#include "config/other_objects.hpp"
#include "plugins/plugin_metadata.hpp"
#include "stream/tlv_policy.hpp"

namespace portico::config {
namespace {

constexpr std::array<std::string_view, kKindCount> kNames = {
    "routes",        "services",        "upstreams",      "consumers",
    "ssls",          "global_rules",    "plugin_configs", "protos",
    "stream_routes", "consumer_groups", "plugin_metadata"};
constexpr std::array<std::string_view, kKindCount> kSingular = {
    "route",        "service",        "upstream",       "consumer",
    "ssl",          "global_rule",    "plugin_config",  "proto",
    "stream_route", "consumer_group", "plugin_metadata"};

void add_ref(StoredObject& out, std::string field, Kind kind, const std::string& id) {
  if (!id.empty()) out.refs.push_back({field, ObjectRef{kind, id}});
}

// An id as APISIX writes it: a string or a number.
std::string id_text(const json& id) {
  if (id.is_string()) return id.get<std::string>();
  if (id.is_number_unsigned()) return std::to_string(id.get<uint64_t>());
  return {};
}

// traffic-split's upstreams: each upstream_id, and the client certificate of each inline one.
void add_split_refs(StoredObject& out, const json& conf) {
  auto rules = conf.find("rules");
  if (rules == conf.end() || !rules->is_array()) return;
  for (size_t i = 0; i < rules->size(); ++i) {
    const json& rule = (*rules)[i];
    auto weighted = rule.is_object() ? rule.find("weighted_upstreams") : rule.end();
    if (!rule.is_object() || weighted == rule.end() || !weighted->is_array()) continue;
    for (size_t k = 0; k < weighted->size(); ++k) {
      const json& w = (*weighted)[k];
      if (!w.is_object()) continue;
      std::string at = "plugins.traffic-split.rules[" + std::to_string(i) +
                       "].weighted_upstreams[" + std::to_string(k) + "].";
      if (auto id = w.find("upstream_id"); id != w.end())
        add_ref(out, at + "upstream_id", Kind::Upstreams, id_text(*id));
      auto up = w.find("upstream");
      if (up == w.end() || !up->is_object()) continue;
      auto tls = up->find("tls");
      if (tls != up->end() && tls->is_object())
        if (auto cert = tls->find("client_cert_id"); cert != tls->end())
          add_ref(out, at + "upstream.tls.client_cert_id", Kind::Ssls, id_text(*cert));
    }
  }
}

// Plugins that name other objects: tlv-bridge's proto_id, traffic-split's upstreams. Recorded as
// references, so what they name cannot be deleted while used and an object naming a missing
// one is held back (etcd mode).
void add_plugin_refs(StoredObject& out, const json& value) {
  auto plugins = value.find("plugins");
  if (plugins == value.end() || !plugins->is_object()) return;
  auto split = plugins->find("traffic-split");
  if (split != plugins->end() && split->is_object()) add_split_refs(out, *split);
  auto bridge = plugins->find("tlv-bridge");
  if (bridge == plugins->end() || !bridge->is_object()) return;
  auto id = bridge->find("proto_id");
  if (id != bridge->end()) add_ref(out, "plugins.tlv-bridge.proto_id", Kind::Protos, id_text(*id));
}

// An upstream's tls.client_cert_id names an ssls object (`prefix`: where the upstream sits).
void add_upstream_refs(StoredObject& out, const std::string& prefix, const Upstream* up) {
  if (up) add_ref(out, prefix + "tls.client_cert_id", Kind::Ssls, up->tls_client_cert_id);
}

}  // namespace

std::string not_a_client_certificate(const std::string& id) {
  return "ssl \"" + id + "\" is not a client certificate (type: client)";
}

std::string_view kind_name(Kind kind) { return kNames[static_cast<size_t>(kind)]; }
std::string_view kind_singular(Kind kind) { return kSingular[static_cast<size_t>(kind)]; }

std::optional<Kind> parse_kind(std::string_view name) {
  for (size_t i = 0; i < kKindCount; ++i)
    if (kNames[i] == name) return static_cast<Kind>(i);
  return std::nullopt;
}

const std::array<Kind, kKindCount>& all_kinds() {
  static const std::array<Kind, kKindCount> kinds = [] {
    std::array<Kind, kKindCount> k{};
    for (size_t i = 0; i < kKindCount; ++i) k[i] = static_cast<Kind>(i);
    return k;
  }();
  return kinds;
}

bool validate_object(Kind kind, const json& value, const std::string& path, Errors& errors,
                     StoredObject& out, int64_t order) {
  size_t before = errors.size();
  out.refs.clear();
  switch (kind) {
    case Kind::Routes: {
      auto route = std::make_shared<Route>(parse_route(value, path, errors));
      route->order = order;
      add_ref(out, "upstream_id", Kind::Upstreams, route->upstream_id);
      add_ref(out, "service_id", Kind::Services, route->service_id);
      add_ref(out, "plugin_config_id", Kind::PluginConfigs, route->plugin_config_id);
      add_upstream_refs(out, "upstream.", route->upstream.get());
      add_plugin_refs(out, value);
      if (!route->upstream && route->upstream_id.empty() && route->service_id.empty() &&
          errors.size() == before)
        errors.add(path, "needs an upstream: upstream, upstream_id, or a service that has one");
      out.route = std::move(route);
      break;
    }
    case Kind::Services: {
      auto svc = std::make_shared<Service>(parse_service(value, path, errors));
      add_ref(out, "upstream_id", Kind::Upstreams, svc->upstream_id);
      add_upstream_refs(out, "upstream.", svc->upstream.get());
      add_plugin_refs(out, value);
      out.service = std::move(svc);
      break;
    }
    case Kind::Upstreams:
      out.upstream = parse_upstream(value, path, errors);
      add_upstream_refs(out, "", out.upstream.get());
      break;
    case Kind::Consumers:
      out.consumer = validate_consumer(value, path, errors);
      add_ref(out, "group_id", Kind::ConsumerGroups, out.consumer->group_id);
      break;
    case Kind::ConsumerGroups:
      out.plugin_config = validate_consumer_group(value, path, errors);
      break;
    case Kind::PluginMetadata:
      out.metadata = plugins::validate_plugin_metadata(value, path, errors);
      break;
    case Kind::GlobalRules:
      out.plugin_config = validate_global_rule(value, path, errors);
      add_plugin_refs(out, value);
      break;
    case Kind::PluginConfigs:
      out.plugin_config = validate_plugin_config(value, path, errors);
      add_plugin_refs(out, value);
      break;
    case Kind::Protos:
      out.proto = validate_proto(value, path, errors);
      break;
    case Kind::Ssls: {
      auto ssl = validate_ssl(value, path, errors);
      out.certificate = std::move(ssl.server);
      out.client_identity = std::move(ssl.client);
      break;
    }
    case Kind::StreamRoutes: {
      auto route = validate_stream_route(value, path, errors);
      route->order = order;
      add_ref(out, "upstream_id", Kind::Upstreams, route->upstream_id);
      add_ref(out, "service_id", Kind::Services, route->service_id);
      add_upstream_refs(out, "upstream.", route->upstream.get());
      if (route->tlv)
        for (size_t i = 0; i < route->tlv->routes.size(); ++i) {
          std::string sub = "protocol.conf.routes[" + std::to_string(i) + "].";
          add_ref(out, sub + "upstream_id", Kind::Upstreams, route->tlv->routes[i].upstream_id);
          add_upstream_refs(out, sub + "upstream.", route->tlv->routes[i].upstream.get());
        }
      out.stream_route = std::move(route);
      break;
    }
  }
  return errors.size() == before;
}

bool ObjectStore::put(Kind kind, const std::string& id, json value, const std::string& source,
                      int64_t create_revision, int64_t mod_revision, Errors& errors) {
  StoredObject obj;
  if (!validate_object(kind, value, source, errors, obj, create_revision)) return false;
  obj.value = std::move(value);
  obj.source = source;
  obj.create_revision = create_revision;
  obj.mod_revision = mod_revision;
  auto [it, inserted] = objects_[static_cast<size_t>(kind)].try_emplace(id);
  if (inserted || it->second.create_revision != create_revision) forget_order(kind);
  it->second = std::move(obj);
  return true;
}

void ObjectStore::carry_over(const ObjectStore& old) {
  for (size_t k = 0; k < kKindCount; ++k) {
    const auto& before = old.objects_[k];
    for (auto& [id, obj] : objects_[k]) {
      auto it = before.find(id);
      if (it == before.end()) continue;
      const StoredObject& was = it->second;
      if (was.create_revision != obj.create_revision || was.value != obj.value) continue;
      // (value, source, revisions and refs are the same already)
      obj.route = was.route;
      obj.service = was.service;
      obj.upstream = was.upstream;
      obj.plugin_config = was.plugin_config;
      obj.consumer = was.consumer;
      obj.stream_route = was.stream_route;
      obj.proto = was.proto;
      obj.certificate = was.certificate;
      obj.client_identity = was.client_identity;
    }
  }
}

bool ObjectStore::erase(Kind kind, const std::string& id) {
  forget_order(kind);
  return objects_[static_cast<size_t>(kind)].erase(id) > 0;
}

void ObjectStore::clear() {
  for (auto& m : objects_) m.clear();
  for (auto& o : order_) o.reset();
}

const StoredObject* ObjectStore::find(Kind kind, const std::string& id) const {
  const auto& m = objects_[static_cast<size_t>(kind)];
  auto it = m.find(id);
  return it == m.end() ? nullptr : &it->second;
}

const std::map<std::string, StoredObject>& ObjectStore::all(Kind kind) const {
  return objects_[static_cast<size_t>(kind)];
}

size_t ObjectStore::size() const {
  size_t n = 0;
  for (const auto& m : objects_) n += m.size();
  return n;
}

std::vector<ObjectRef> ObjectStore::referrer_keys(Kind kind, const std::string& id) const {
  std::vector<ObjectRef> out;
  for (Kind k : all_kinds())
    for (const auto& [oid, obj] : all(k))
      for (const auto& [field, ref] : obj.refs)
        if (ref.kind == kind && ref.id == id) {
          out.push_back(ObjectRef{k, oid});
          break;  // once per object, however many of its fields name (kind, id)
        }
  return out;
}

std::vector<std::string> ObjectStore::referrers(Kind kind, const std::string& id) const {
  std::vector<std::string> out;
  for (const ObjectRef& r : referrer_keys(kind, id))
    out.push_back(std::string(kind_singular(r.kind)) + " [" + r.id + "]");
  return out;
}

void ObjectStore::check_references(const StoredObject& obj, const std::string& path,
                                   Errors& errors) const {
  for (const auto& [field, ref] : obj.refs) {
    const StoredObject* target = find(ref.kind, ref.id);
    std::string at = path.empty() ? field : path + "." + field;
    if (!target)
      errors.add(at, "unknown " + std::string(kind_singular(ref.kind)) + " \"" + ref.id + "\"");
    else if (ref.kind == Kind::Ssls && !target->client_identity)
      errors.add(at, not_a_client_certificate(ref.id));
  }
}

const std::vector<const StoredObject*>& ObjectStore::in_creation_order(Kind kind) const {
  auto& cached = order_[static_cast<size_t>(kind)];
  if (cached) return *cached;
  std::vector<std::pair<const std::string*, const StoredObject*>> items;
  for (const auto& [id, obj] : all(kind)) items.emplace_back(&id, &obj);
  std::sort(items.begin(), items.end(), [](const auto& a, const auto& b) {
    return a.second->create_revision != b.second->create_revision
               ? a.second->create_revision < b.second->create_revision
               : *a.first < *b.first;
  });
  std::vector<const StoredObject*> out;
  out.reserve(items.size());
  for (const auto& [id, obj] : items) out.push_back(obj);
  cached = std::move(out);
  return *cached;
}

ConfigSet ObjectStore::config_set(Errors& problems) const {
  ConfigSet set;
  for (const auto& [id, obj] : all(Kind::Ssls))
    if (obj.client_identity) set.client_identities.emplace(id, obj.client_identity);
  for (const StoredObject* obj : in_creation_order(Kind::Upstreams)) {
    size_t before = problems.size();
    check_references(*obj, obj->source, problems);
    if (problems.size() == before) set.upstreams.push_back(obj->upstream);
  }
  for (const StoredObject* obj : in_creation_order(Kind::PluginConfigs))
    set.plugin_configs.push_back(obj->plugin_config);
  for (const StoredObject* obj : in_creation_order(Kind::GlobalRules))
    set.global_rules.push_back(obj->plugin_config);
  for (const auto& [id, obj] : all(Kind::PluginMetadata))
    if (obj.metadata) set.plugin_metadata.emplace(id, obj.metadata);
  for (const StoredObject* obj : in_creation_order(Kind::ConsumerGroups))
    set.consumer_groups.push_back(obj->plugin_config);
  for (const StoredObject* obj : in_creation_order(Kind::Consumers)) {
    size_t before = problems.size();
    check_references(*obj, obj->source, problems);  // its group
    if (problems.size() == before) set.consumers.push_back(obj->consumer);
  }
  for (const auto& [id, obj] : all(Kind::Protos))
    if (obj.proto) set.protos.emplace_back(id, obj.proto);
  for (const StoredObject* obj : in_creation_order(Kind::Ssls))
    if (obj->certificate) set.certificates.push_back(obj->certificate);
  for (const StoredObject* obj : in_creation_order(Kind::StreamRoutes)) {
    size_t before = problems.size();
    check_references(*obj, obj->source, problems);
    if (problems.size() == before && obj->stream_route)
      set.stream_routes.push_back(obj->stream_route);
  }
  for (const StoredObject* obj : in_creation_order(Kind::Services)) {
    size_t before = problems.size();
    check_references(*obj, obj->source, problems);
    if (problems.size() == before) set.services.push_back(obj->service);
  }
  // Creation order is the last tie-breaker between equally specific routes.
  for (const StoredObject* obj : in_creation_order(Kind::Routes)) {
    size_t before = problems.size();
    check_references(*obj, obj->source, problems);
    const Route& r = *obj->route;
    if (problems.size() == before && !r.upstream && r.upstream_id.empty()) {
      const StoredObject* svc = find(Kind::Services, r.service_id);
      if (svc && !svc->service->upstream && svc->service->upstream_id.empty())
        problems.add(obj->source,
                     "needs an upstream: upstream, upstream_id, or a service that has one");
    }
    if (problems.size() != before) continue;
    set.routes.push_back(obj->route);
  }
  return set;
}

ObjectStore store_from_document(const json& doc, Errors& errors) {
  ObjectStore store;
  if (doc.is_null()) return store;  // an empty file: no objects
  // Ids seen per kind, valid objects or not, and every object's references: an invalid object
  // is reported once, not again as a missing reference or a duplicate.
  std::array<std::set<std::string>, kKindCount> seen;
  std::vector<std::pair<std::string, std::vector<std::pair<std::string, ObjectRef>>>> refs;
  ObjectReader r(doc, "", errors);
  if (!r.valid()) return store;
  for (Kind kind : all_kinds()) {
    std::string_view name = kind_name(kind);
    const json* list = r.raw(name);
    if (!list) continue;
    if (!list->is_array()) {
      r.error(name, "must be a list");
      continue;
    }
    for (size_t i = 0; i < list->size(); ++i) {
      const json& value = (*list)[i];
      std::string path = std::string(name) + "[" + std::to_string(i) + "]";
      // Consumers are identified by username, everything else by id. Every object is
      // validated even when its id is missing or taken: all errors are reported at once.
      const char* id_field = kind == Kind::Consumers ? "username" : "id";
      std::string id;
      if (value.is_object() && value.contains(id_field)) {
        const json& v = value[id_field];
        bool number = v.is_number_integer() && v.get<int64_t>() >= 0;
        id = v.is_string() ? v.get<std::string>() : number ? v.dump() : "";
      }
      StoredObject obj;
      auto position = static_cast<int64_t>(i + 1);
      bool valid = validate_object(kind, value, path, errors, obj, position);
      if (value.is_object() && id.empty() && !value.contains(id_field)) {
        errors.add(path + "." + id_field, "is required");
        continue;
      }
      refs.emplace_back(path, obj.refs);
      if (!id.empty() && !seen[static_cast<size_t>(kind)].insert(id).second) {
        errors.add(path + "." + id_field, "duplicate id \"" + id + "\"");
        continue;
      }
      if (!valid || id.empty()) continue;
      obj.value = value;
      obj.source = path;
      obj.create_revision = obj.mod_revision = position;
      store.objects_[static_cast<size_t>(kind)][id] = std::move(obj);
      store.forget_order(kind);
    }
  }
  r.finish();
  for (const auto& [path, object_refs] : refs)
    for (const auto& [field, ref] : object_refs)
      if (!seen[static_cast<size_t>(ref.kind)].count(ref.id))
        errors.add(path + "." + field,
                   "unknown " + std::string(kind_singular(ref.kind)) + " \"" + ref.id + "\"");
  if (!errors.empty()) return store;
  Errors problems;
  store.config_set(problems);
  for (const auto& e : problems.list()) errors.add(e.path, e.message);
  return store;
}

}  // namespace portico::config
