// The control API (default 127.0.0.1:9090): health for load balancers and operators, the running
// routes, upstreams and configuration (secrets redacted), and Prometheus metrics. Reads only;
// answered on the control thread from per-worker counters, so a scrape never blocks a worker.
#pragma once

#include <functional>
#include <memory>
#include <vector>

#include "admin/http_service.hpp"
#include "config/etcd_source.hpp"
#include "config/object_store.hpp"
#include "config/snapshot.hpp"
#include "upstream/upstream_target.hpp"

namespace portico {
class Worker;
}

namespace portico::admin {

struct ControlContext {
  std::string provider;  // "yaml" or "etcd"
  std::function<config::ConfigSourceStatus()> source_status;
  std::function<std::shared_ptr<const config::Snapshot>()> snapshot;  // null before the first
  const std::vector<std::unique_ptr<Worker>>* workers = nullptr;
  int configured_workers = 0;
  const config::ObjectStore* store = nullptr;
  // The upstreams the serving config uses, with their nodes' health.
  std::function<std::vector<std::shared_ptr<const upstream::UpstreamTarget>>()> upstream_targets;
};

class ControlApi {
 public:
  explicit ControlApi(ControlContext context) : ctx_(std::move(context)) {}
  Task<HttpResponse> handle(HttpRequest& req);

 private:
  HttpResponse health() const;
  HttpResponse routes() const;
  HttpResponse upstreams() const;
  HttpResponse healthcheck() const;
  HttpResponse running_config() const;
  HttpResponse metrics() const;
  int alive_workers() const;

  ControlContext ctx_;
};

}  // namespace portico::admin
