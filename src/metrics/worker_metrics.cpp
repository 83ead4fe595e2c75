#include "metrics/worker_metrics.hpp"

#include <array>

namespace portico::metrics {

namespace {

int status_key(int status) { return status >= 100 && status <= 599 ? status : kOtherStatus; }

}  // namespace

// The figures of one route label. Counts are atomics with a single writer; the status slots
// in use change only under the owner's shape mutex, which collect() also holds.
class WorkerMetrics::RouteCounters {
 public:
  void record(const RequestSample& sample, std::mutex& shape_mutex) {
    add_single_writer(status_counter(status_key(sample.status), shape_mutex), 1);
    request_.observe(sample.request_seconds);
    if (sample.upstream_seconds >= 0) upstream_.observe(sample.upstream_seconds);
    add_single_writer(bytes_received_, sample.bytes_received);
    add_single_writer(bytes_sent_, sample.bytes_sent);
  }

  // The caller holds the shape mutex.
  void add_to(RouteTotals& into) const {
    for (size_t i = 0; i < used_slots_; ++i) {
      add_status_count(into, slots_[i].status, slots_[i].count);
    }
    add_status_count(into, kOtherStatus, other_status_count_);
    request_.add_to(into.request);
    upstream_.add_to(into.upstream);
    into.bytes_received += bytes_received_.load(std::memory_order_relaxed);
    into.bytes_sent += bytes_sent_.load(std::memory_order_relaxed);
  }

 private:
  struct StatusSlot {
    int status = kOtherStatus;
    std::atomic<uint64_t> count{0};
  };

  std::atomic<uint64_t>& status_counter(int status, std::mutex& shape_mutex) {
    if (status == kOtherStatus) return other_status_count_;
    for (size_t i = 0; i < used_slots_; ++i) {
      if (slots_[i].status == status) return slots_[i].count;
    }
    if (used_slots_ == slots_.size()) return other_status_count_;
    std::lock_guard lock(shape_mutex);
    StatusSlot& slot = slots_[used_slots_];
    slot.status = status;
    ++used_slots_;
    return slot.count;
  }

  // Zeros are left out: "other" is usually empty, and a slot the worker has just appended may
  // not be counted yet.
  static void add_status_count(RouteTotals& into, int status,
                               const std::atomic<uint64_t>& counter) {
    uint64_t count = counter.load(std::memory_order_relaxed);
    if (count > 0) into.by_status[status] += count;
  }

  std::array<StatusSlot, kStatusSlots> slots_{};
  size_t used_slots_ = 0;
  std::atomic<uint64_t> other_status_count_{0};
  Histogram request_;
  Histogram upstream_;
  std::atomic<uint64_t> bytes_received_{0};
  std::atomic<uint64_t> bytes_sent_{0};
};

WorkerMetrics::WorkerMetrics(size_t max_routes) : max_routes_(max_routes) {}

WorkerMetrics::~WorkerMetrics() = default;

void WorkerMetrics::record(const RequestSample& sample) {
  counters_for(sample.route).record(sample, shape_mutex_);
}

void WorkerMetrics::collect(Totals& into) const {
  std::lock_guard lock(shape_mutex_);
  for (const auto& [label, counters] : counters_by_label_) {
    counters->add_to(into.try_emplace(label).first->second);
  }
}

WorkerMetrics::RouteCounters& WorkerMetrics::counters_for(std::string_view route) {
  if (auto found = counters_by_label_.find(route); found != counters_by_label_.end()) {
    return *found->second;
  }
  if (route.empty()) return add_label(route);
  if (labelled_routes_ >= max_routes_) return overflow_counters();
  ++labelled_routes_;
  return add_label(route);
}

WorkerMetrics::RouteCounters& WorkerMetrics::overflow_counters() {
  if (overflow_ == nullptr) overflow_ = &add_label(kOverflowRouteLabel);
  return *overflow_;
}

// A route whose id is "_other" shares its label with the overflow, and so its entry.
WorkerMetrics::RouteCounters& WorkerMetrics::add_label(std::string_view label) {
  std::string key(label);
  auto counters = std::make_unique<RouteCounters>();
  std::lock_guard lock(shape_mutex_);
  return *counters_by_label_.try_emplace(std::move(key), std::move(counters)).first->second;
}

}  // namespace portico::metrics
