// Request counters of one worker, kept per route label with no lock on the request path; the
// control thread adds every worker's figures into one Totals when /metrics is scraped.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>

#include "metrics/histogram.hpp"
#include "metrics/series_counters.hpp"

namespace portico::metrics {

// What one finished request contributes.
struct RequestSample {
  std::string_view route;  // route id; empty when the request matched no route
  int status = 0;
  double request_seconds = 0;
  double upstream_seconds = -1;  // < 0: no upstream involved
  uint64_t bytes_received = 0;
  uint64_t bytes_sent = 0;
};

// Route ids past a worker's max_routes are counted under this label.
inline constexpr std::string_view kOverflowRouteLabel = "_other";
// Status codes outside 100..599, and codes past a route's kStatusSlots distinct ones.
inline constexpr int kOtherStatus = 0;

struct RouteTotals {
  std::map<int, uint64_t> by_status;  // kOtherStatus included
  HistogramTotals request;
  HistogramTotals upstream;  // only requests that reached an upstream
  uint64_t bytes_received = 0;
  uint64_t bytes_sent = 0;

  bool operator==(const RouteTotals&) const = default;
};

// By route label, summed over whatever was collected into it.
using Totals = std::map<std::string, RouteTotals, std::less<>>;

// Connections a proxy_protocol listener closed before any request, by reason. Written by one
// worker, read by the control thread at scrape time.
struct ProxyProtocolRejections {
  std::atomic<uint64_t> untrusted{0};  // the peer is not in the listener's trusted_addresses
  std::atomic<uint64_t> invalid{0};    // bytes that are not a valid PROXY header
  std::atomic<uint64_t> truncated{0};  // the peer closed before a complete header
  std::atomic<uint64_t> timeout{0};    // no complete header within client_header_timeout
};

class WorkerMetrics {
 public:
  static constexpr size_t kDefaultMaxRoutes = 20000;
  // Distinct status codes a route counts apart; a fixed array, so a scrape can read it while
  // the worker appends.
  static constexpr size_t kStatusSlots = 16;

  // max_routes bounds the route ids with a label of their own; "" (no route matched) and
  // "_other" come on top, so a flood of unmatched requests stays visible as such.
  explicit WorkerMetrics(size_t max_routes = kDefaultMaxRoutes);
  ~WorkerMetrics();
  WorkerMetrics(const WorkerMetrics&) = delete;
  WorkerMetrics& operator=(const WorkerMetrics&) = delete;

  // Worker thread only. Allocates and locks only the first time it sees a route label, and
  // locks (without allocating) the first time a route sees a status code.
  void record(const RequestSample& sample);

  // Any thread. Adds to what `into` already holds, so all workers can collect into one.
  // Holds the lock for the whole walk, which stalls the worker only if it meets a new route
  // label or status code meanwhile.
  void collect(Totals& into) const;

 private:
  class RouteCounters;
  struct TransparentHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };

  RouteCounters& counters_for(std::string_view route);
  RouteCounters& overflow_counters();
  RouteCounters& add_label(std::string_view label);

  const size_t max_routes_;
  size_t labelled_routes_ = 0;  // route ids with their own label, "" not included
  // Guards the shape of the tables (new labels, new status slots), never the counts: the
  // worker reads the shape without it, because only the worker changes it.
  mutable std::mutex shape_mutex_;
  // Behind a pointer so the counters' layout stays in the .cpp; entries never move, and none
  // is ever erased, so a reference taken before an insertion stays valid after it.
  std::unordered_map<std::string, std::unique_ptr<RouteCounters>, TransparentHash, std::equal_to<>>
      counters_by_label_;
  RouteCounters* overflow_ = nullptr;
};

}  // namespace portico::metrics
