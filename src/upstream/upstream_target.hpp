// A compiled upstream: resolved nodes grouped into priority levels and a balancer whose state is
// per worker, so picking a node never touches memory another worker writes. Balancers (APISIX's
// `type`): roundrobin (smooth weighted, nginx's algorithm), chash (a consistent-hash ring per
// level: adding or removing a node moves about 1/N of the keys), least_conn (fewest requests in
// flight per weight), ewma (lowest recent latency, decaying with time so a slow node is tried
// again now and then).
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "config/host_table.hpp"
#include "config/objects.hpp"
#include "core/asio.hpp"
#include "upstream/node_health.hpp"

namespace portico::upstream {

struct NodeTarget {
  Endpoint endpoint;
  std::string address;      // "ip:port", for logs
  std::string host_header;  // node host (with port unless 80), for pass_host: node
  int weight = 1;
  int priority = 0;
  std::shared_ptr<NodeHealth> health;  // shared with every compile that keeps this node
};

// Nodes already tried by one request (retries go to another node).
class TriedNodes {
 public:
  bool empty() const { return bits_ == 0 && more_.empty(); }
  bool contains(size_t i) const { return i < 64 ? (bits_ >> i) & 1 : more_.size() > i && more_[i]; }
  void add(size_t i) {
    if (i < 64) {
      bits_ |= uint64_t{1} << i;
    } else {
      if (more_.size() <= i) more_.resize(i + 1);
      more_[i] = true;
    }
  }

 private:
  uint64_t bits_ = 0;
  std::vector<bool> more_;
};

class UpstreamTarget {
 public:
  static constexpr int kNone = -1;

  // `nodes` in any order; `workers` sizes the per-worker balancer state; `hosts`: the host
  // names the nodes were resolved from, at the versions used.
  UpstreamTarget(std::shared_ptr<const config::Upstream> spec, std::vector<NodeTarget> nodes,
                 int workers, std::vector<config::HostStamp> hosts = {});

  const config::Upstream& spec() const { return *spec_; }
  const std::vector<config::HostStamp>& hosts() const { return hosts_; }
  const std::vector<NodeTarget>& nodes() const { return nodes_; }
  // Attempts allowed for one request: 1 + retries (retries default: number of nodes - 1).
  int max_attempts() const;
  // Picks from the highest-priority level that still has an untried, healthy node with
  // weight > 0. When no such node is left in any level, the least bad is picked anyway (panic
  // mode: fail open rather than refuse every request), and counted.
  // `hash_key` is used by chash only (see http/balancer_key.hpp).
  int pick(int worker, const TriedNodes& tried, std::string_view hash_key = {},
           int64_t now_us = 0) const;
  // A request starts / ends on node `node` (least_conn counts, ewma learns the latency: from
  // sending to the response head, or the time lost when the attempt failed).
  void started(int worker, int node) const;
  void finished(int worker, int node, int64_t latency_us, bool failed, int64_t now_us) const;
  // A request on `node` ends without an answer because its client left after `elapsed_us`:
  // least_conn stops counting it; for ewma the node took at least that long (a hung node whose
  // clients give up must not decay into the fastest).
  void abandoned(int worker, int node, int64_t elapsed_us, int64_t now_us) const;
  // A long session (a stream connection, a bridged WebSocket or polling session) opens / closes
  // on `node`: least_conn counts it, on every worker and across compiles that keep the node
  // (NodeHealth::sessions). ewma does not: its length is not a latency, and thousands of idle
  // sockets would outweigh the latencies it balances by.
  void session_opened(int node) const;
  void session_closed(int node) const;
  // Passive health checks: how an attempt on `node` ended (`status` for an HTTP answer).
  void report(int node, Outcome outcome, int status) const;
  // Quality figures of `node` from real traffic (5xx answers count as HTTP failures).
  void observe(int node, Outcome outcome, int status, int64_t latency_us) const {
    const auto& h = nodes_[static_cast<size_t>(node)].health;
    if (h)
      h->observe(outcome == Outcome::Success && status >= 500 ? Outcome::HttpFailure : outcome,
                 latency_us);
  }
  // What the health checks say of `node` now (true for nodes without checks).
  bool healthy(size_t node, int64_t now_ms) const {
    const auto& h = nodes_[node].health;
    return !h || h->healthy(now_ms);
  }
  uint64_t panics() const { return panics_.load(std::memory_order_relaxed); }
  // The retry budget (config::Upstream::retry_budget_percent), per worker: a request starts and
  // ends; may_resend() asks for the slot of a request that is to be sent again, which it holds
  // until it ends (request_finished with `resent`).
  void request_started(int worker) const { ++worker_state(worker).requests; }
  void request_finished(int worker, bool resent) const;
  bool may_resend(int worker) const;
  uint64_t resends_refused() const { return resends_refused_.load(std::memory_order_relaxed); }
  // The node's decayed latency estimate for this worker (ewma), for tests and /v1 status.
  double ewma_us(int worker, int node, int64_t now_us) const;

  static uint32_t hash(std::string_view s);

 private:
  enum class Kind { RoundRobin, ConsistentHash, LeastConn, Ewma };
  struct NodeState {
    int64_t current = 0;     // smooth WRR
    int64_t active = 0;      // requests in flight (least_conn, ewma)
    double ewma_us = 0;      // latency estimate
    int64_t ewma_at_us = 0;  // when it was last updated
  };
  struct alignas(64) WorkerState {
    std::vector<NodeState> nodes;
    int64_t requests = 0;  // in flight (the retry budget)
    int64_t resending = 0;
  };
  WorkerState& worker_state(int worker) const {
    return state_[static_cast<size_t>(worker) % state_.size()];
  }
  NodeState& node_state(int worker, int node) const {
    return worker_state(worker).nodes[static_cast<size_t>(node)];
  }
  struct RingPoint {
    uint32_t hash;
    uint32_t node;
    bool operator<(const RingPoint& o) const { return hash < o.hash; }
  };
  // Which nodes a pick may choose from: untried, weight > 0, and (unless in panic) healthy.
  struct Filter {
    const TriedNodes& tried;
    bool check_health;
    int64_t now_ms;
  };
  int pick_once(WorkerState& w, const Filter& f, std::string_view hash_key, int64_t now_us) const;
  int pick_round_robin(WorkerState& w, size_t begin, size_t end, const Filter& f) const;
  int pick_hash(size_t level, std::string_view key, const Filter& f) const;
  int pick_lowest_score(WorkerState& w, size_t begin, size_t end, const Filter& f,
                        int64_t now_us) const;
  bool any_healthy(int64_t now_ms) const;
  bool usable(size_t i, const Filter& f) const {
    return !f.tried.contains(i) && nodes_[i].weight > 0 &&
           (!f.check_health || !nodes_[i].health || nodes_[i].health->healthy(f.now_ms));
  }

  std::shared_ptr<const config::Upstream> spec_;
  std::vector<config::HostStamp> hosts_;
  Kind kind_ = Kind::RoundRobin;
  std::vector<NodeTarget> nodes_;                  // sorted by priority, highest first
  std::vector<std::pair<size_t, size_t>> levels_;  // [begin, end) into nodes_
  std::vector<std::vector<RingPoint>> rings_;      // chash: one sorted ring per level
  mutable std::vector<WorkerState> state_;
  mutable std::atomic<uint64_t> panics_{0};
  mutable std::atomic<uint64_t> resends_refused_{0};
  // Failure reports (rare) one at a time: two workers counting a level's nodes that are down
  // at once would both see room under max_ejection_percent and both eject.
  mutable std::mutex eject_mutex_;
};

}  // namespace portico::upstream
