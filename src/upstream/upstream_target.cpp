#include "upstream/upstream_target.hpp"

#include <algorithm>
#include <cmath>

namespace portico::upstream {
namespace {
// Ring points per unit of weight: enough for an even spread, few enough for a fast build.
constexpr int kPointsPerWeight = 40;
constexpr int kMaxPointsPerNode = 4000;
// ewma: the estimate forgets half of itself in about 7 s (APISIX's 10 s decay time), so a node
// that was slow is tried again after a while; a failure counts as at least this long.
constexpr double kDecayUs = 10e6;
constexpr int64_t kFailurePenaltyUs = 500000;
constexpr double kSampleWeight = 0.3;
constexpr double kInFlightWeight = 0.25;
}  // namespace

// FNV-1a, then a murmur3 finaliser: stable across processes and machines, so every gateway node
// maps a key to the same upstream node.
uint32_t UpstreamTarget::hash(std::string_view s) {
  uint32_t h = 2166136261u;
  for (unsigned char c : s) {
    h ^= c;
    h *= 16777619u;
  }
  h ^= h >> 16;
  h *= 0x85ebca6bu;
  h ^= h >> 13;
  h *= 0xc2b2ae35u;
  h ^= h >> 16;
  return h;
}

UpstreamTarget::UpstreamTarget(std::shared_ptr<const config::Upstream> spec,
                               std::vector<NodeTarget> nodes, int workers,
                               std::vector<config::HostStamp> hosts)
    : spec_(std::move(spec)), hosts_(std::move(hosts)), nodes_(std::move(nodes)) {
  const std::string& type = spec_->type;
  kind_ = type == "chash"        ? Kind::ConsistentHash
          : type == "least_conn" ? Kind::LeastConn
          : type == "ewma"       ? Kind::Ewma
                                 : Kind::RoundRobin;
  std::stable_sort(nodes_.begin(), nodes_.end(), [](const NodeTarget& a, const NodeTarget& b) {
    return a.priority > b.priority;
  });
  for (size_t i = 0; i < nodes_.size();) {
    size_t j = i;
    while (j < nodes_.size() && nodes_[j].priority == nodes_[i].priority) ++j;
    levels_.emplace_back(i, j);
    i = j;
  }
  if (kind_ == Kind::ConsistentHash) {
    for (auto [begin, end] : levels_) {
      std::vector<RingPoint> ring;
      for (size_t i = begin; i < end; ++i) {
        int points = std::min(nodes_[i].weight * kPointsPerWeight, kMaxPointsPerNode);
        // Points come from the node's address, not its position: the ring of the other nodes
        // stays the same when one is added or removed.
        for (int p = 0; p < points; ++p)
          ring.push_back(
              {hash(nodes_[i].address + "#" + std::to_string(p)), static_cast<uint32_t>(i)});
      }
      std::sort(ring.begin(), ring.end());
      rings_.push_back(std::move(ring));
    }
  }
  state_.resize(static_cast<size_t>(std::max(workers, 1)));
  for (auto& s : state_) s.nodes.assign(nodes_.size(), NodeState{});
}

void UpstreamTarget::request_finished(int worker, bool resent) const {
  WorkerState& w = worker_state(worker);
  --w.requests;
  if (resent) --w.resending;
}

bool UpstreamTarget::may_resend(int worker) const {
  WorkerState& w = worker_state(worker);
  const int64_t allowed =
      std::max<int64_t>(spec_->retry_budget_min, w.requests * spec_->retry_budget_percent / 100);
  if (w.resending >= allowed) {
    resends_refused_.fetch_add(1, std::memory_order_relaxed);
    return false;
  }
  ++w.resending;
  return true;
}

int UpstreamTarget::max_attempts() const {
  int retries = spec_->retries ? *spec_->retries : static_cast<int>(nodes_.size()) - 1;
  return 1 + std::max(retries, 0);
}

int UpstreamTarget::pick(int worker, const TriedNodes& tried, std::string_view hash_key,
                         int64_t now_us) const {
  WorkerState& w = worker_state(worker);
  int64_t now_ms = now_us ? now_us / 1000 : steady_now_ms();
  int best = pick_once(w, Filter{tried, true, now_ms}, hash_key, now_us);
  if (best != kNone) return best;
  // Panic (no node healthy: try them anyway) holds for the upstream as a whole. A retry whose
  // healthy candidates are used up ends there, rather than trying nodes known to be down.
  if (any_healthy(now_ms)) return kNone;
  best = pick_once(w, Filter{tried, false, now_ms}, hash_key, now_us);
  if (best != kNone && tried.empty()) panics_.fetch_add(1, std::memory_order_relaxed);
  return best;
}

bool UpstreamTarget::any_healthy(int64_t now_ms) const {
  for (const auto& n : nodes_)
    if (n.weight > 0 && (!n.health || n.health->healthy(now_ms))) return true;
  return false;
}

int UpstreamTarget::pick_once(WorkerState& w, const Filter& f, std::string_view hash_key,
                              int64_t now_us) const {
  for (size_t level = 0; level < levels_.size(); ++level) {
    auto [begin, end] = levels_[level];
    int best = kNone;
    switch (kind_) {
      case Kind::RoundRobin:
        best = pick_round_robin(w, begin, end, f);
        break;
      case Kind::ConsistentHash:
        best = pick_hash(level, hash_key, f);
        break;
      case Kind::LeastConn:
      case Kind::Ewma:
        best = pick_lowest_score(w, begin, end, f, now_us);
        break;
    }
    if (best != kNone) return best;
  }
  return kNone;
}

void UpstreamTarget::report(int node, Outcome outcome, int status) const {
  const auto& passive = spec_->passive;
  const auto& health = nodes_[static_cast<size_t>(node)].health;
  if (!passive || !health) return;
  // Without active checks nothing would ever bring an unhealthy node back: it is ejected for a
  // while instead, then tried again. Never more than max_ejection_percent of the node's level
  // at once (at least one node may go), so an error burst cannot empty a level that mostly
  // works, unless another level has a healthy node to fail over to: then a level that failed
  // as a whole (a dedicated line cut) must empty, or its last nodes keep every request's first
  // attempt waiting for them.
  const auto& bad = passive->unhealthy.http_statuses;
  std::unique_lock<std::mutex> one_at_a_time(eject_mutex_, std::defer_lock);
  if (outcome != Outcome::Success || std::find(bad.begin(), bad.end(), status) != bad.end())
    one_at_a_time.lock();
  int64_t now = steady_now_ms();
  size_t down = 0, size = 0;
  bool elsewhere = false;
  for (auto [begin, end] : levels_) {
    const bool mine = static_cast<size_t>(node) >= begin && static_cast<size_t>(node) < end;
    for (size_t i = begin; i < end; ++i) {
      const bool up = !nodes_[i].health || nodes_[i].health->healthy(now);
      if (mine && !up) ++down;
      if (!mine && up && nodes_[i].weight > 0) elsewhere = true;
    }
    if (mine) size = end - begin;
  }
  size_t allowed =
      std::max<size_t>(1, size * static_cast<size_t>(passive->max_ejection_percent) / 100);
  health->report(outcome, status, passive->healthy, passive->unhealthy,
                 spec_->active ? nullptr : &*passive, now, "passive", down < allowed || elsewhere);
}

int UpstreamTarget::pick_round_robin(WorkerState& w, size_t begin, size_t end,
                                     const Filter& f) const {
  int best = kNone;
  int64_t total = 0;
  for (size_t i = begin; i < end; ++i) {
    if (!usable(i, f)) continue;
    w.nodes[i].current += nodes_[i].weight;
    total += nodes_[i].weight;
    if (best == kNone || w.nodes[i].current > w.nodes[static_cast<size_t>(best)].current)
      best = static_cast<int>(i);
  }
  if (best != kNone) w.nodes[static_cast<size_t>(best)].current -= total;
  return best;
}

int UpstreamTarget::pick_hash(size_t level, std::string_view key, const Filter& f) const {
  const auto& ring = rings_[level];
  if (ring.empty()) return kNone;
  // The first point at or after the key's hash, then onwards round the ring past nodes already
  // tried (a retry goes to the key's next node, the same one on every gateway).
  size_t start = static_cast<size_t>(
      std::lower_bound(ring.begin(), ring.end(), RingPoint{hash(key), 0}) - ring.begin());
  for (size_t k = 0; k < ring.size(); ++k) {
    uint32_t node = ring[(start + k) % ring.size()].node;
    if (usable(node, f)) return static_cast<int>(node);
  }
  return kNone;
}

double UpstreamTarget::ewma_us(int worker, int node, int64_t now_us) const {
  const NodeState& n = node_state(worker, node);
  if (n.ewma_at_us == 0) return 0;
  double age = static_cast<double>(std::max<int64_t>(now_us - n.ewma_at_us, 0));
  return n.ewma_us * std::exp(-age / kDecayUs);
}

// least_conn: (in flight + 1) / weight. ewma: decayed latency x (1 + in flight / 4) / weight;
// an unmeasured node (0) is tried first.
// Ties go round-robin, so equal nodes share the load.
int UpstreamTarget::pick_lowest_score(WorkerState& w, size_t begin, size_t end, const Filter& f,
                                      int64_t now_us) const {
  int best = kNone;
  double best_score = 0;
  int64_t total = 0;
  int worker = static_cast<int>(&w - state_.data());
  // ewma: the lowest estimate in the level as last measured (not decayed). No node counts
  // below half of it, and a node never measured counts as that half (tried first, but not by
  // every request): an estimate near zero (never measured, or decayed over a long quiet spell)
  // would otherwise draw every request until its first answer comes back (the in-flight term
  // cannot outweigh a ratio of a hundred).
  double best_measured = 0;
  if (kind_ == Kind::Ewma) {
    bool measured = false;
    for (size_t i = begin; i < end; ++i) {
      const NodeState& n = w.nodes[i];
      if (!usable(i, f) || n.ewma_at_us == 0) continue;
      if (!measured || n.ewma_us < best_measured) best_measured = n.ewma_us;
      measured = true;
    }
  }
  for (size_t i = begin; i < end; ++i) {
    if (!usable(i, f)) continue;
    NodeState& n = w.nodes[i];
    double score;
    if (kind_ == Kind::LeastConn) {
      const int64_t sessions = nodes_[i].health ? nodes_[i].health->sessions() : 0;
      score = static_cast<double>(n.active + sessions + 1) / nodes_[i].weight;
    } else {
      // Latency first; requests in flight count a quarter each, enough that concurrent
      // requests do not all herd onto one node, not so much that a slower line gets a share
      // the faster one could carry.
      double load = 1.0 + kInFlightWeight * static_cast<double>(n.active);
      double estimate = n.ewma_at_us == 0 ? best_measured / 2
                                          : std::max(ewma_us(worker, static_cast<int>(i), now_us),
                                                     best_measured / 2);
      score = estimate * load / nodes_[i].weight;
    }
    n.current += nodes_[i].weight;
    total += nodes_[i].weight;
    if (best == kNone || score < best_score ||
        (score == best_score && n.current > w.nodes[static_cast<size_t>(best)].current)) {
      best = static_cast<int>(i);
      best_score = score;
    }
  }
  if (best != kNone) w.nodes[static_cast<size_t>(best)].current -= total;
  return best;
}

void UpstreamTarget::started(int worker, int node) const { ++node_state(worker, node).active; }

void UpstreamTarget::session_opened(int node) const {
  if (const auto& h = nodes_[static_cast<size_t>(node)].health) h->session_opened();
}

void UpstreamTarget::session_closed(int node) const {
  if (const auto& h = nodes_[static_cast<size_t>(node)].health) h->session_closed();
}

void UpstreamTarget::abandoned(int worker, int node, int64_t elapsed_us, int64_t now_us) const {
  NodeState& n = node_state(worker, node);
  if (n.active > 0) --n.active;
  if (kind_ != Kind::Ewma) return;
  const double at_least = static_cast<double>(elapsed_us);
  const double current = n.ewma_at_us == 0 ? 0 : ewma_us(worker, node, now_us);
  if (at_least <= current) return;
  n.ewma_us = at_least;
  n.ewma_at_us = std::max<int64_t>(now_us, 1);
}

void UpstreamTarget::finished(int worker, int node, int64_t latency_us, bool failed,
                              int64_t now_us) const {
  NodeState& n = node_state(worker, node);
  if (n.active > 0) --n.active;
  if (kind_ != Kind::Ewma) return;
  double sample =
      static_cast<double>(failed ? std::max(latency_us, kFailurePenaltyUs) : latency_us);
  // Each answer moves the estimate a third of the way (one slow answer on a loaded machine must
  // not send all traffic elsewhere for seconds, as a pure peak rule did); a failure counts at
  // once. Between answers the estimate decays towards zero (see ewma_us), so an idle node is
  // tried again after a while.
  double current = ewma_us(worker, node, now_us);
  if (n.ewma_at_us == 0)
    n.ewma_us = sample;
  else if (failed)
    n.ewma_us = std::max(current, sample);
  else
    n.ewma_us = current + kSampleWeight * (sample - current);
  n.ewma_at_us = std::max<int64_t>(now_us, 1);
}

}  // namespace portico::upstream
