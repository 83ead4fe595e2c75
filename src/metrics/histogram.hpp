// Latency histograms with fixed buckets, written by one worker thread and read by the scrape.
// Each bucket counts only its own range (not cumulative as Prometheus shows them), so totals
// from several workers add bucket by bucket; the exposition accumulates them when rendering.
#pragma once

#include <algorithm>
#include <array>
#include <atomic>
#include <cmath>
#include <cstddef>
#include <cstdint>

namespace portico::metrics {

// Upper bounds in seconds, inclusive (Prometheus "le"); one more bucket above the last is +Inf.
inline constexpr std::array<double, 15> kLatencyBucketBounds = {
    0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 30, 60};
inline constexpr size_t kLatencyBucketCount = kLatencyBucketBounds.size() + 1;

// Past this an observation is a bug, not a latency; capping keeps the microsecond sum defined.
inline constexpr double kMaxObservedSeconds = 1e9;

// The first bucket whose bound is >= seconds; kLatencyBucketCount - 1 (+Inf) past the last.
constexpr size_t latency_bucket_index(double seconds) {
  auto bound = std::lower_bound(kLatencyBucketBounds.begin(), kLatencyBucketBounds.end(), seconds);
  return static_cast<size_t>(bound - kLatencyBucketBounds.begin());
}

// A clock step can make a duration negative and a bug can make it NaN: both count as 0 rather
// than poisoning the sum (converting NaN or a huge double to an integer is undefined).
constexpr double sanitize_seconds(double seconds) {
  if (!(seconds >= 0)) return 0;
  return std::min(seconds, kMaxObservedSeconds);
}

// For counters with a single writer thread: a plain load and store is enough and is cheaper
// than a locked read-modify-write. Readers on other threads load relaxed.
inline void add_single_writer(std::atomic<uint64_t>& counter, uint64_t amount) {
  counter.store(counter.load(std::memory_order_relaxed) + amount, std::memory_order_relaxed);
}

// A histogram's figures as plain numbers, to add up across workers and render.
struct HistogramTotals {
  std::array<uint64_t, kLatencyBucketCount> buckets{};  // per bucket, not cumulative
  uint64_t sum_us = 0;  // microseconds: integers add up exactly across workers

  // Derived from the buckets rather than kept apart, so that _count always equals the +Inf
  // bucket, as Prometheus requires, even for figures read while a worker was writing.
  uint64_t count() const {
    uint64_t total = 0;
    for (uint64_t in_bucket : buckets) total += in_bucket;
    return total;
  }
  double sum_seconds() const { return static_cast<double>(sum_us) / 1e6; }

  HistogramTotals& operator+=(const HistogramTotals& other) {
    for (size_t i = 0; i < buckets.size(); ++i) buckets[i] += other.buckets[i];
    sum_us += other.sum_us;
    return *this;
  }
  bool operator==(const HistogramTotals&) const = default;
};

class Histogram {
 public:
  // Writer thread only.
  void observe(double seconds) {
    seconds = sanitize_seconds(seconds);
    add_single_writer(buckets_[latency_bucket_index(seconds)], 1);
    add_single_writer(sum_us_, static_cast<uint64_t>(std::llround(seconds * 1e6)));
  }

  // Any number of writer threads (atomic adds): for figures several workers update, like a
  // node's latency.
  void observe_shared(double seconds) {
    seconds = sanitize_seconds(seconds);
    buckets_[latency_bucket_index(seconds)].fetch_add(1, std::memory_order_relaxed);
    sum_us_.fetch_add(static_cast<uint64_t>(std::llround(seconds * 1e6)),
                      std::memory_order_relaxed);
  }

  // Any thread. The figures are read one by one, so a read racing observe() may see an
  // observation in its bucket but not yet in the sum; the next read catches up.
  void add_to(HistogramTotals& into) const {
    for (size_t i = 0; i < buckets_.size(); ++i) {
      into.buckets[i] += buckets_[i].load(std::memory_order_relaxed);
    }
    into.sum_us += sum_us_.load(std::memory_order_relaxed);
  }

 private:
  std::array<std::atomic<uint64_t>, kLatencyBucketCount> buckets_{};
  std::atomic<uint64_t> sum_us_{0};
};

}  // namespace portico::metrics
