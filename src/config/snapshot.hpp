// An immutable, fully compiled view of the configuration: router, upstream targets, limits.
// Built on the control thread, published to workers by pointer swap, never modified after.
#pragma once

#include <cstdint>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "bridge/proto_set.hpp"
#include "config/field_reader.hpp"
#include "config/node_config.hpp"
#include "config/object_store.hpp"
#include "config/objects.hpp"
#include "plugins/consumers.hpp"
#include "plugins/route_info.hpp"
#include "router/route_index.hpp"
#include "stream/stream_route.hpp"
#include "tls/server_certificates.hpp"
#include "upstream/upstream_target.hpp"

namespace portico::config {

struct CompiledRoute {
  std::string id;
  std::shared_ptr<const upstream::UpstreamTarget> upstream;
  bool websocket = false;
  std::shared_ptr<const plugins::Chain> plugins;  // null: no plugin runs
  std::string service_id;
  std::shared_ptr<const plugins::RouteInfo> info;  // never null
  // Upstreams a plugin may pick instead (traffic-split), by Context::upstream_choice.
  std::vector<std::shared_ptr<const upstream::UpstreamTarget>> upstream_choices;
  // The upstream a request whose plugins ran goes to.
  const std::shared_ptr<const upstream::UpstreamTarget>& target_for(int choice) const {
    return choice >= 0 && static_cast<size_t>(choice) < upstream_choices.size()
               ? upstream_choices[static_cast<size_t>(choice)]
               : upstream;
  }
};

struct Snapshot {
  Snapshot();
  ~Snapshot();
  Snapshot(const Snapshot&) = delete;
  Snapshot& operator=(const Snapshot&) = delete;
  // Snapshots alive in the process: the running one, retired ones not yet freed, and any a
  // request or connection still holds (a gauge: a growing count means something pins old
  // configs).
  static int64_t alive();

  uint64_t version = 0;
  HttpLimits limits;
  router::RouteIndex router;
  std::vector<CompiledRoute> routes;  // parallel to router.rules()
  size_t upstream_count = 0;
  std::shared_ptr<const plugins::Chain> global_plugins;           // global_rules; null when none
  std::shared_ptr<const plugins::MetadataTable> plugin_metadata;  // never null
  plugins::ConsumerTable consumers;
  std::vector<stream::StreamRoutePtr> stream_routes;  // creation order: the first match wins
  bridge::ProtoTable protos;                          // compiled `protos` objects by id
  // Server certificates by SNI; shared so a handshake holds only this, not the snapshot.
  std::shared_ptr<const tls::CertificateTable> certificates;
  // The host names of every compiled upstream's nodes, used or not by a route
  // (node.dns_refresh resolves them again).
  std::set<std::string> host_names;
  // Link in the lock-free list of retired snapshots (core/retired_snapshots.hpp).
  mutable const Snapshot* retired_next = nullptr;
};

// Health state of every upstream node, kept across compiles (and reloads in yaml mode).
upstream::HealthRegistry& health_registry();

// Compiled pieces kept between builds (etcd mode): a route, service or upstream whose object is
// the same (shared) one as last time is not compiled again, so changing one route in 50k costs
// one route plus the route index. Upstream targets carry over too, with their balancer state.
class CompileCache {
 public:
  CompileCache();
  ~CompileCache();
  struct Entries;

 private:
  friend std::unique_ptr<Snapshot> build_snapshot(const ConfigSet&, const HttpLimits&, int, Errors&,
                                                  Errors*, CompileCache*);
  std::unique_ptr<Entries> entries_;
};

// Resolves node hosts, compiles routes and upstreams. Errors are reported with the field path
// of the object that caused them; on any error the result must not be used. With `warnings`,
// a node whose host does not resolve is left out and reported there instead (etcd mode: one
// bad host name must not hold every other change back).
std::unique_ptr<Snapshot> build_snapshot(const ConfigSet& set, const HttpLimits& limits,
                                         int workers, Errors& errors, Errors* warnings = nullptr,
                                         CompileCache* cache = nullptr);

// routes.yaml -> Snapshot in one go (parse, validate, compile). The validated objects go to
// `store` when given (the Admin API and /v1/config read them). A reload passes the running
// objects as `previous` (ObjectStore::carry_over) and the cache of the last build.
std::unique_ptr<Snapshot> load_snapshot(const std::string& routes_file, const HttpLimits& limits,
                                        int workers, Errors& errors, ObjectStore* store = nullptr,
                                        CompileCache* cache = nullptr,
                                        const ObjectStore* previous = nullptr);

}  // namespace portico::config
