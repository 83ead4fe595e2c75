// Every configuration object by kind and id, validated one at a time: the common ground of the
// routes file and etcd. An object is parsed once when it arrives (not on every rebuild), so a
// change in etcd costs one object's validation; `config_set()` then assembles what the snapshot
// compiler needs, leaving out objects whose references are missing.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "config/field_reader.hpp"
#include "config/objects.hpp"

namespace portico::config {

enum class Kind : uint8_t {
  Routes,
  Services,
  Upstreams,
  Consumers,
  Ssls,
  GlobalRules,
  PluginConfigs,
  Protos,
  StreamRoutes,
  ConsumerGroups,
  PluginMetadata,
};
inline constexpr size_t kKindCount = 11;

// "routes", "ssls", ... (the Admin API path segment and the etcd key segment)
std::string_view kind_name(Kind kind);
// "route", "ssl", ... (for messages)
std::string_view kind_singular(Kind kind);
std::optional<Kind> parse_kind(std::string_view name);
const std::array<Kind, kKindCount>& all_kinds();

struct ObjectRef {
  Kind kind;
  std::string id;
};

struct StoredObject {
  json value;                   // as written, with its id
  std::string source;           // "routes[3]" in the file, the etcd key in etcd
  int64_t create_revision = 0;  // file position or etcd revision: orders equal routes
  int64_t mod_revision = 0;
  std::shared_ptr<const Route> route;  // the typed form, for kinds that have one
  std::shared_ptr<const Service> service;
  std::shared_ptr<const Upstream> upstream;
  std::shared_ptr<const PluginConfig>
      plugin_config;  // plugin_configs, global_rules, consumer_groups
  std::shared_ptr<const plugins::Consumer> consumer;
  std::shared_ptr<const plugins::PluginMetadata> metadata;  // plugin_metadata, by plugin name
  std::shared_ptr<const StreamRoute> stream_route;
  std::shared_ptr<const bridge::ProtoSet> proto;               // compiled .proto content
  std::shared_ptr<const tls::ServerCertificate> certificate;   // ssls: null unless it serves
  std::shared_ptr<const tls::ClientIdentity> client_identity;  // ssls of type client
  std::vector<std::pair<std::string, ObjectRef>> refs;         // field name -> object referred to
};

// The message for a tls.client_cert_id naming an ssls object that is not of type client.
std::string not_a_client_certificate(const std::string& id);

// Validates `value` as one object of `kind` with the same rules as the routes file. On success
// fills `out` (typed form and references); errors name fields under `path`. `order` is the
// creation order a route keeps (see Route::order).
bool validate_object(Kind kind, const json& value, const std::string& path, Errors& errors,
                     StoredObject& out, int64_t order = 0);

class ObjectStore {
 public:
  ObjectStore() = default;
  // Movable (map nodes, and the cached order pointing into them, move along), not copyable.
  ObjectStore(ObjectStore&&) = default;
  ObjectStore& operator=(ObjectStore&&) = default;
  ObjectStore(const ObjectStore&) = delete;
  ObjectStore& operator=(const ObjectStore&) = delete;

  // Validates and stores (replacing an older version). An invalid object leaves the store
  // unchanged and returns false with the reasons in `errors`.
  bool put(Kind kind, const std::string& id, json value, const std::string& source,
           int64_t create_revision, int64_t mod_revision, Errors& errors);
  bool erase(Kind kind, const std::string& id);
  // A reload of the routes file: every object whose value and file position did not change
  // takes its typed form from `old`, so the snapshot compiler sees the same objects and keeps
  // what it built from them (upstreams with their balancer state, compiled route rules).
  void carry_over(const ObjectStore& old);
  void clear();

  const StoredObject* find(Kind kind, const std::string& id) const;
  const std::map<std::string, StoredObject>& all(Kind kind) const;
  size_t size() const;
  // Objects that refer to (kind, id), as "route [1]" phrases, for refusing a delete.
  std::vector<std::string> referrers(Kind kind, const std::string& id) const;
  // The same objects as (kind, id) pairs.
  std::vector<ObjectRef> referrer_keys(Kind kind, const std::string& id) const;
  // The missing objects `obj` refers to, as "upstream_id: unknown upstream \"u1\"" errors.
  void check_references(const StoredObject& obj, const std::string& path, Errors& errors) const;

  // Routes, services and upstreams for the snapshot compiler. An object whose references are
  // missing is left out and reported in `problems` under its source.
  ConfigSet config_set(Errors& problems) const;
  // Oldest first (file position or etcd create revision), then by id.
  const std::vector<const StoredObject*>& in_creation_order(Kind kind) const;

 private:
  friend ObjectStore store_from_document(const json& doc, Errors& errors);
  void forget_order(Kind kind) { order_[static_cast<size_t>(kind)].reset(); }

  std::array<std::map<std::string, StoredObject>, kKindCount> objects_;
  // in_creation_order() results, kept while no object of the kind is added or removed (an
  // update keeps its map node and its creation order): sorting 50k routes per change was a
  // tenth of a compile.
  mutable std::array<std::optional<std::vector<const StoredObject*>>, kKindCount> order_;
};

// The routes file: top-level lists per kind (`routes:`, `upstreams:`, ...). Strict: any invalid
// object, missing or duplicate id, or broken reference is an error (the file is rejected whole).
ObjectStore store_from_document(const json& doc, Errors& errors);

}  // namespace portico::config
