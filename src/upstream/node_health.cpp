#include "upstream/node_health.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>

#include "core/log.hpp"

namespace portico::upstream {
namespace {
bool listed(const std::vector<int>& statuses, int status) {
  return std::find(statuses.begin(), statuses.end(), status) != statuses.end();
}
// Counts one more; true when the count reaches a threshold (0 = never).
bool reaches(std::atomic<uint64_t>& counter, int threshold) {
  uint64_t n = counter.fetch_add(1, std::memory_order_relaxed) + 1;
  return threshold > 0 && n >= static_cast<uint64_t>(threshold);
}
}  // namespace

void NodeHealth::report(Outcome outcome, int status, const config::HealthThresholds& healthy,
                        const config::HealthThresholds& unhealthy,
                        const config::PassiveCheck* eject, int64_t now_ms, const char* source,
                        bool may_go_down) {
  if (outcome == Outcome::Success && status != 0) {
    // HTTP answers are judged by their status; one on neither list says nothing.
    if (listed(unhealthy.http_statuses, status))
      outcome = Outcome::HttpFailure;
    else if (!listed(healthy.http_statuses, status))
      return;
  }
  total_requests_.fetch_add(1, std::memory_order_relaxed);
  // As lua-resty-healthcheck: a success resets the failure counters, a failure the successes;
  // but those of its own kind of check only (Run).
  Run& run = run_of(source);
  if (outcome == Outcome::Success) {
    run.http_failures.store(0, std::memory_order_relaxed);
    run.tcp_failures.store(0, std::memory_order_relaxed);
    run.timeouts.store(0, std::memory_order_relaxed);
    bool back = reaches(run.successes, healthy.successes);
    if (!healthy_.load(std::memory_order_relaxed) && back)
      set_state(true, std::string(source) + ": " + std::to_string(healthy.successes) + " successes",
                eject, now_ms);
    return;
  }
  total_failures_.fetch_add(1, std::memory_order_relaxed);
  run.successes.store(0, std::memory_order_relaxed);
  bool down = false;
  std::string why;
  switch (outcome) {
    case Outcome::HttpFailure:
      down = reaches(run.http_failures, unhealthy.http_failures);
      why = std::to_string(unhealthy.http_failures) + " HTTP failures (last status " +
            std::to_string(status) + ")";
      break;
    case Outcome::TcpFailure:
      down = reaches(run.tcp_failures, unhealthy.tcp_failures);
      why = std::to_string(unhealthy.tcp_failures) + " TCP failures";
      break;
    case Outcome::Timeout:
      down = reaches(run.timeouts, unhealthy.timeouts);
      why = std::to_string(unhealthy.timeouts) + " timeouts";
      break;
    case Outcome::Success:
      break;
  }
  bool was_healthy = healthy_.load(std::memory_order_relaxed);
  // A half-open node (its ejection over, not yet confirmed healthy) that fails is ejected again.
  bool half_open = !was_healthy && ejected_until_ms_.load(std::memory_order_relaxed) != 0 &&
                   now_ms >= ejected_until_ms_.load(std::memory_order_relaxed);
  if (down && may_go_down && (was_healthy || half_open))
    set_state(false, std::string(source) + ": " + why, eject, now_ms);
}

void NodeHealth::set_state(bool healthy, const std::string& reason,
                           const config::PassiveCheck* eject, int64_t now_ms) {
  std::lock_guard lock(change_mutex_);
  // Workers report concurrently: two crossing the threshold together must not eject twice (or
  // log twice). Only a half-open node (its ejection over) goes down again from down.
  if (healthy == healthy_.load(std::memory_order_relaxed)) {
    const int64_t until = ejected_until_ms_.load(std::memory_order_relaxed);
    if (healthy || until == 0 || now_ms < until) return;
  }
  const int64_t healthy_for_ms =
      healthy_.load(std::memory_order_relaxed) ? now_ms - changed_at_ms_ : 0;
  active_.reset();
  passive_.reset();
  reason_ = reason;
  changed_at_ms_ = now_ms;
  if (healthy) {
    ejected_until_ms_.store(0, std::memory_order_relaxed);
    healthy_.store(true, std::memory_order_relaxed);
    log::warn("upstream " + upstream_ + " node " + address_ + " is healthy again (" + reason + ")");
    return;
  }
  std::string ejection;
  if (eject) {
    // Ejections grow while failures repeat; a node healthy again since its last change wins
    // one back per ejection_max_time of good behaviour, or one blip a day would, after some
    // weeks, always cost the longest ejection.
    const int64_t per = std::max<int64_t>(1, static_cast<int64_t>(eject->ejection_max * 1000));
    ejections_ -= static_cast<int>(std::min<int64_t>(ejections_, healthy_for_ms / per));
    // Past the count that reaches ejection_max, more would only take longer to win back.
    const double base = std::max(0.001, eject->ejection_base);
    const int most = static_cast<int>(std::min(1e6, std::ceil(eject->ejection_max / base)));
    ejections_ = std::min(ejections_ + 1, std::max(1, most));
    int64_t ms = std::min<int64_t>(static_cast<int64_t>(eject->ejection_base * 1000) * ejections_,
                                   static_cast<int64_t>(eject->ejection_max * 1000));
    ejected_until_ms_.store(now_ms + ms, std::memory_order_relaxed);
    ejection = ", ejected for " + std::to_string(ms / 1000) + " s";
  } else {
    // Down by active checks: only probes bring it back, not the end of an earlier ejection
    // (active checks added while the node was ejected or half-open).
    ejected_until_ms_.store(0, std::memory_order_relaxed);
  }
  healthy_.store(false, std::memory_order_relaxed);
  log::warn("upstream " + upstream_ + " node " + address_ + " is unhealthy (" + reason + ")" +
            ejection);
}

void NodeHealth::observe(Outcome outcome, int64_t latency_us) {
  requests_.fetch_add(1, std::memory_order_relaxed);
  switch (outcome) {
    case Outcome::Success:
      latency_.observe_shared(static_cast<double>(latency_us) / 1e6);
      break;
    case Outcome::HttpFailure:
      http_failures_total_.fetch_add(1, std::memory_order_relaxed);
      latency_.observe_shared(static_cast<double>(latency_us) / 1e6);
      break;
    case Outcome::TcpFailure:
      tcp_failures_total_.fetch_add(1, std::memory_order_relaxed);
      break;
    case Outcome::Timeout:
      timeouts_total_.fetch_add(1, std::memory_order_relaxed);
      break;
  }
}

NodeHealth::Quality NodeHealth::quality() const {
  Quality q{requests_.load(),
            http_failures_total_.load(),
            tcp_failures_total_.load(),
            timeouts_total_.load(),
            {}};
  latency_.add_to(q.latency);
  return q;
}

NodeHealth::Status NodeHealth::status() const {
  std::lock_guard lock(change_mutex_);
  // Both kinds' runs together (one of them is usually zero).
  auto both = [&](std::atomic<uint64_t> Run::*c) {
    return (active_.*c).load() + (passive_.*c).load();
  };
  return Status{healthy_.load(),
                both(&Run::successes),
                both(&Run::http_failures),
                both(&Run::tcp_failures),
                both(&Run::timeouts),
                total_requests_.load(),
                total_failures_.load(),
                changed_at_ms_,
                reason_,
                ejected_until_ms_.load(),
                ejections_};
}

std::shared_ptr<NodeHealth> HealthRegistry::get(const std::string& upstream,
                                                const std::string& address) {
  std::lock_guard lock(mutex_);
  auto& slot = nodes_[{upstream, address}];
  auto node = slot.lock();
  if (!node) {
    node = std::make_shared<NodeHealth>(upstream, address);
    slot = node;
  }
  return node;
}

void HealthRegistry::collect_garbage() {
  std::lock_guard lock(mutex_);
  std::erase_if(nodes_, [](const auto& kv) { return kv.second.expired(); });
}

}  // namespace portico::upstream
