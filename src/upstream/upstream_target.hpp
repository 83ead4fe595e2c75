// A compiled upstream: resolved nodes grouped into priority levels and a smooth weighted
// round-robin balancer (nginx's algorithm) whose state is per worker, so picking a node never
// touches memory another worker writes.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "config/objects.hpp"
#include "core/asio.hpp"

namespace portico::upstream {

struct NodeTarget {
  Endpoint endpoint;
  std::string address;      // "ip:port", for logs
  std::string host_header;  // node host (with port unless 80), for pass_host: node
  int weight = 1;
  int priority = 0;
};

// Nodes already tried by one request (retries go to another node).
class TriedNodes {
 public:
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

  // `nodes` in any order; `workers` sizes the per-worker balancer state.
  UpstreamTarget(std::shared_ptr<const config::Upstream> spec, std::vector<NodeTarget> nodes,
                 int workers);

  const config::Upstream& spec() const { return *spec_; }
  const std::vector<NodeTarget>& nodes() const { return nodes_; }
  // Attempts allowed for one request: 1 + retries (retries default: number of nodes - 1).
  int max_attempts() const;
  // Picks from the highest-priority level that still has an untried node with weight > 0.
  int pick(int worker, const TriedNodes& tried) const;

 private:
  struct alignas(64) WorkerState {
    std::vector<int64_t> current;
  };
  std::shared_ptr<const config::Upstream> spec_;
  std::vector<NodeTarget> nodes_;                  // sorted by priority, highest first
  std::vector<std::pair<size_t, size_t>> levels_;  // [begin, end) into nodes_
  mutable std::vector<WorkerState> state_;
};

}  // namespace portico::upstream
