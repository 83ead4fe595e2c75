// Health of one upstream node, shared by every worker and kept across config changes that do not
// touch the node (a registry keyed by upstream and address hands the same object to each new
// compile). Workers read and report with atomics only; state changes are rare and logged.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "config/objects.hpp"
#include "core/deadline.hpp"
#include "metrics/histogram.hpp"

namespace portico::upstream {

enum class Outcome { Success, HttpFailure, TcpFailure, Timeout };

// Times here (changes, ejections, probe schedule) are core's steady_now_ms().
class NodeHealth {
 public:
  NodeHealth(std::string upstream, std::string address)
      : upstream_(std::move(upstream)), address_(std::move(address)) {}

  // Workers: skip the node while this is false (unless every node is down: panic mode).
  // An ejection (passive checks without active ones) ends by itself when its time is up.
  bool healthy(int64_t now_ms) const {
    if (healthy_.load(std::memory_order_relaxed)) return true;
    int64_t until = ejected_until_ms_.load(std::memory_order_relaxed);
    return until != 0 && now_ms >= until;
  }

  // Counts an outcome against the thresholds of `checks` (active or passive); flips the state
  // when a threshold is reached. Thread-safe. `source` is "active" or "passive" for logs.
  // `may_go_down` false: failures are counted but the node stays in (a share limit is reached).
  void report(Outcome outcome, int status, const config::HealthThresholds& healthy,
              const config::HealthThresholds& unhealthy, const config::PassiveCheck* eject,
              int64_t now_ms, const char* source, bool may_go_down = true);

  // Active checks of the node were removed from the config: a "down" only they could end
  // (no ejection deadline) ends now, or the node would stay out of every balancer for good.
  void active_checks_removed(int64_t now_ms) {
    if (!healthy_.load(std::memory_order_relaxed) &&
        ejected_until_ms_.load(std::memory_order_relaxed) == 0)
      set_state(true, "active checks removed", nullptr, now_ms);
  }

  // Real traffic, whatever checks are configured: the node's quality figures (requests,
  // failures by kind, latency to the response head). Any worker, atomics only.
  void observe(Outcome outcome, int64_t latency_us);
  struct Quality {
    uint64_t requests, http_failures, tcp_failures, timeouts;
    metrics::HistogramTotals latency;
  };
  Quality quality() const;

  // Long sessions open on the node (IM connections, bridged WebSockets and polling sessions),
  // all workers together. Kept here, not in the compiled upstream, because this object outlives
  // compiles that keep the node: an upstream compiled anew (a node added to scale out) must
  // still see the hours-long sessions of the others, or least_conn spreads new ones evenly.
  void session_opened() { sessions_.fetch_add(1, std::memory_order_relaxed); }
  void session_closed() { sessions_.fetch_sub(1, std::memory_order_relaxed); }
  int64_t sessions() const { return sessions_.load(std::memory_order_relaxed); }

  struct Status {
    bool healthy;
    uint64_t successes, http_failures, tcp_failures, timeouts;  // consecutive, current run
    uint64_t total_requests, total_failures;
    int64_t changed_at_ms;
    std::string reason;  // why the last change happened
    int64_t ejected_until_ms;
    int ejections;
  };
  Status status() const;
  const std::string& address() const { return address_; }
  const std::string& upstream() const { return upstream_; }

 private:
  void set_state(bool healthy, const std::string& reason, const config::PassiveCheck* eject,
                 int64_t now_ms);

  std::string upstream_;
  std::string address_;
  std::atomic<int64_t> sessions_{0};
  std::atomic<bool> healthy_{true};
  std::atomic<int64_t> ejected_until_ms_{0};
  // Consecutive outcomes, apart per kind of check: a success of one kind resets only its own
  // failures. Shared, real traffic passing would reset the probes' count forever, and a node
  // whose health endpoint says "draining" would never be taken out (and probes passing would
  // hide real traffic failing on a quiet node).
  struct Run {
    std::atomic<uint64_t> successes{0}, http_failures{0}, tcp_failures{0}, timeouts{0};
    void reset() {
      for (auto* c : {&successes, &http_failures, &tcp_failures, &timeouts})
        c->store(0, std::memory_order_relaxed);
    }
  };
  Run& run_of(const char* source) { return source[0] == 'a' ? active_ : passive_; }
  Run active_, passive_;
  std::atomic<uint64_t> total_requests_{0}, total_failures_{0};  // probes and reports
  std::atomic<uint64_t> requests_{0}, http_failures_total_{0}, tcp_failures_total_{0},
      timeouts_total_{0};
  metrics::Histogram latency_;
  mutable std::mutex change_mutex_;  // state changes only (rare): reason, time, ejections
  std::string reason_ = "initial";
  int64_t changed_at_ms_ = 0;
  int ejections_ = 0;
};

// NodeHealth objects by (upstream key, address), so a recompiled upstream finds the state of
// its unchanged nodes. Used by the compile and control threads, never by workers.
class HealthRegistry {
 public:
  std::shared_ptr<NodeHealth> get(const std::string& upstream, const std::string& address);
  // Drops entries no compiled upstream holds any more.
  void collect_garbage();

 private:
  std::mutex mutex_;
  std::map<std::pair<std::string, std::string>, std::weak_ptr<NodeHealth>> nodes_;
};

}  // namespace portico::upstream
