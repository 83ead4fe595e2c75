// The APISIX-compatible Admin API (/apisix/admin/<kind>[/<id>[/<sub/path>]]): reads, and in
// etcd mode writes, every kind of configuration object, with APISIX v3 response shapes so
// existing scripts keep working. Keys with roles (admin, viewer), an address allow list, the
// same validation as the routes file. In yaml mode writes are refused: the file rules.
#pragma once

#include <functional>
#include <memory>

#include "admin/http_service.hpp"
#include "config/etcd_source.hpp"
#include "config/node_config.hpp"
#include "config/object_store.hpp"
#include "config/snapshot.hpp"

namespace portico::admin {

struct AdminContext {
  const config::NodeConfig* node = nullptr;    // keys, allow list, routes file (reloadable)
  const config::ObjectStore* store = nullptr;  // what this node serves
  config::EtcdSource* etcd = nullptr;          // null in yaml mode
  std::function<std::shared_ptr<const config::Snapshot>()> snapshot;  // for /routes/match
};

class AdminApi {
 public:
  explicit AdminApi(AdminContext context);
  ~AdminApi();
  Task<HttpResponse> handle(HttpRequest& req);
  // Whether admin.allow lets `peer` in.
  bool admits(const asio::ip::address& peer) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace portico::admin
