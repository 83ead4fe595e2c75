// Active health checks (APISIX `checks.active`): one prober per process, on the control thread,
// for every node of every upstream the serving config uses. Probing starts as soon as a config
// is applied (APISIX waits for the first request), and a node keeps its state and its schedule
// across config changes that do not touch it.
//
// Upstreams that send the same probe to the same address share it: one request per interval
// answers for all of them, each judging it by its own thresholds. APISIX runs a checker per
// upstream, so 1,000 routes with inline upstreams on the same three nodes probe each node
// 1,000 times per interval.
#pragma once

#include <memory>
#include <vector>

#include "config/snapshot.hpp"
#include "core/asio.hpp"
#include "upstream/upstream_target.hpp"

namespace portico::upstream {

class HealthChecker {
 public:
  HealthChecker(Executor ex, HealthRegistry& registry) : ex_(ex), registry_(registry) {}
  // Follows the config now serving: new nodes are probed, removed ones no longer.
  void update(const config::Snapshot& snapshot);
  // Every upstream target the serving config uses (for /v1/healthcheck).
  const std::vector<std::shared_ptr<const UpstreamTarget>>& targets() const { return targets_; }
  Task<> run();
  void stop() { stopped_ = true; }

 private:
  // One (upstream, node) the probe answers for; one per health object.
  struct Member {
    std::shared_ptr<const UpstreamTarget> target;
    size_t node = 0;
  };
  struct Probe {
    std::string key;  // the request and where it goes (probe_key): equal keys share the probe
    std::vector<Member> members;
    int64_t next_ms = 0;
    bool running = false;
  };
  Task<> probe(std::shared_ptr<Probe> p);
  Task<> probe_once(const std::shared_ptr<Probe>& p);

  Executor ex_;
  HealthRegistry& registry_;
  uint64_t updates_ = 0;
  std::vector<std::shared_ptr<const UpstreamTarget>> targets_;
  std::vector<std::shared_ptr<Probe>> probes_;
  int running_ = 0;
  bool stopped_ = false;
};

}  // namespace portico::upstream
