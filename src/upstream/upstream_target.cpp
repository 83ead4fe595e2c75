#include "upstream/upstream_target.hpp"

#include <algorithm>

namespace portico::upstream {

UpstreamTarget::UpstreamTarget(std::shared_ptr<const config::Upstream> spec,
                               std::vector<NodeTarget> nodes, int workers)
    : spec_(std::move(spec)), nodes_(std::move(nodes)) {
  std::stable_sort(nodes_.begin(), nodes_.end(), [](const NodeTarget& a, const NodeTarget& b) {
    return a.priority > b.priority;
  });
  for (size_t i = 0; i < nodes_.size();) {
    size_t j = i;
    while (j < nodes_.size() && nodes_[j].priority == nodes_[i].priority) ++j;
    levels_.emplace_back(i, j);
    i = j;
  }
  state_.resize(static_cast<size_t>(std::max(workers, 1)));
  for (auto& s : state_) s.current.assign(nodes_.size(), 0);
}

int UpstreamTarget::max_attempts() const {
  int retries = spec_->retries ? *spec_->retries : static_cast<int>(nodes_.size()) - 1;
  return 1 + std::max(retries, 0);
}

int UpstreamTarget::pick(int worker, const TriedNodes& tried) const {
  auto& current = state_[static_cast<size_t>(worker) % state_.size()].current;
  for (auto [begin, end] : levels_) {
    int best = kNone;
    int64_t total = 0;
    for (size_t i = begin; i < end; ++i) {
      if (tried.contains(i) || nodes_[i].weight <= 0) continue;
      current[i] += nodes_[i].weight;
      total += nodes_[i].weight;
      if (best == kNone || current[i] > current[static_cast<size_t>(best)])
        best = static_cast<int>(i);
    }
    if (best != kNone) {
      current[static_cast<size_t>(best)] -= total;
      return best;
    }
  }
  return kNone;
}

}  // namespace portico::upstream
