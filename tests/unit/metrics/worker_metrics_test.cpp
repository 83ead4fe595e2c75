#include "metrics/worker_metrics.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <map>
#include <string>
#include <thread>
#include <vector>

using namespace portico::metrics;

namespace {

RequestSample sample(std::string_view route, int status, double request_seconds = 0.003,
                     double upstream_seconds = -1, uint64_t bytes_received = 0,
                     uint64_t bytes_sent = 0) {
  RequestSample s;
  s.route = route;
  s.status = status;
  s.request_seconds = request_seconds;
  s.upstream_seconds = upstream_seconds;
  s.bytes_received = bytes_received;
  s.bytes_sent = bytes_sent;
  return s;
}

Totals collected(const WorkerMetrics& metrics) {
  Totals totals;
  metrics.collect(totals);
  return totals;
}

std::vector<std::string> labels_of(const Totals& totals) {
  std::vector<std::string> labels;
  for (const auto& [label, figures] : totals) labels.push_back(label);
  return labels;
}

uint64_t requests_of(const RouteTotals& figures) {
  uint64_t total = 0;
  for (const auto& [status, count] : figures.by_status) total += count;
  return total;
}

uint64_t requests_of(const Totals& totals) {
  uint64_t total = 0;
  for (const auto& [label, figures] : totals) total += requests_of(figures);
  return total;
}

}  // namespace

TEST(MetricsWorker, CountsStatusesLatencyAndBytesPerRoute) {
  WorkerMetrics metrics;
  metrics.record(sample("users", 200, 0.003, 0.002, 100, 1000));
  metrics.record(sample("users", 200, 0.3, 0.25, 50, 20));
  metrics.record(sample("users", 404, 0.001, -1, 7, 3));
  metrics.record(sample("orders", 502, 2, 1.5));

  Totals totals = collected(metrics);
  ASSERT_EQ(labels_of(totals), (std::vector<std::string>{"orders", "users"}));
  const RouteTotals& users = totals["users"];
  EXPECT_EQ(users.by_status, (std::map<int, uint64_t>{{200, 2}, {404, 1}}));
  EXPECT_EQ(users.request.count(), 3u);
  EXPECT_EQ(users.request.sum_us, 3'000u + 300'000u + 1'000u);
  EXPECT_EQ(users.bytes_received, 157u);
  EXPECT_EQ(users.bytes_sent, 1023u);
  EXPECT_EQ(totals["orders"].by_status, (std::map<int, uint64_t>{{502, 1}}));
}

TEST(MetricsWorker, UpstreamLatencyOnlyForRequestsThatReachedAnUpstream) {
  WorkerMetrics metrics;
  metrics.record(sample("r", 200, 0.01, 0));  // 0 is a (fast) upstream exchange
  metrics.record(sample("r", 429, 0.001, -1));
  metrics.record(sample("cached", 200, 0.001, -1));

  Totals totals = collected(metrics);
  EXPECT_EQ(totals["r"].request.count(), 2u);
  EXPECT_EQ(totals["r"].upstream.count(), 1u);
  EXPECT_EQ(totals["r"].upstream.buckets[0], 1u);
  EXPECT_EQ(totals["cached"].upstream.count(), 0u);
}

TEST(MetricsWorker, CollectSumsAcrossTwoWorkers) {
  WorkerMetrics first;
  WorkerMetrics second;
  first.record(sample("a", 200, 0.004, 0.003, 10, 20));
  first.record(sample("a", 500, 0.02, 0.02, 1, 2));
  second.record(sample("a", 200, 0.004, 0.001, 30, 40));
  second.record(sample("b", 301, 0.0005));

  Totals totals;
  first.collect(totals);
  second.collect(totals);
  ASSERT_EQ(labels_of(totals), (std::vector<std::string>{"a", "b"}));
  const RouteTotals& a = totals["a"];
  EXPECT_EQ(a.by_status, (std::map<int, uint64_t>{{200, 2}, {500, 1}}));
  EXPECT_EQ(a.request.buckets[2], 2u);  // two 4 ms requests, le 0.005
  EXPECT_EQ(a.request.buckets[4], 1u);  // le 0.02
  EXPECT_EQ(a.request.sum_us, 4'000u + 20'000u + 4'000u);
  EXPECT_EQ(a.upstream.count(), 3u);
  EXPECT_EQ(a.upstream.sum_us, 3'000u + 20'000u + 1'000u);
  EXPECT_EQ(a.bytes_received, 41u);
  EXPECT_EQ(a.bytes_sent, 62u);
  EXPECT_EQ(totals["b"].by_status, (std::map<int, uint64_t>{{301, 1}}));

  Totals only_first = collected(first);
  EXPECT_EQ(requests_of(only_first), 2u);  // collecting does not reset anything
  EXPECT_EQ(requests_of(collected(first)), 2u);
}

TEST(MetricsWorker, RoutesPastTheLimitFoldIntoOther) {
  WorkerMetrics metrics(2);
  metrics.record(sample("a", 200));
  metrics.record(sample("b", 200));
  metrics.record(sample("c", 200, 0.003, -1, 5, 6));
  metrics.record(sample("d", 404));
  metrics.record(sample("a", 200));  // a known route keeps its label

  Totals totals = collected(metrics);
  ASSERT_EQ(labels_of(totals), (std::vector<std::string>{"_other", "a", "b"}));
  EXPECT_EQ(totals["a"].by_status[200], 2u);
  EXPECT_EQ(totals["_other"].by_status, (std::map<int, uint64_t>{{200, 1}, {404, 1}}));
  EXPECT_EQ(totals["_other"].bytes_received, 5u);
}

TEST(MetricsWorker, UnmatchedRequestsKeepTheirOwnLabelPastTheLimit) {
  WorkerMetrics metrics(1);
  metrics.record(sample("a", 200));
  metrics.record(sample("", 404));
  metrics.record(sample("", 404));
  metrics.record(sample("b", 200));

  Totals totals = collected(metrics);
  ASSERT_EQ(labels_of(totals), (std::vector<std::string>{"", "_other", "a"}));
  EXPECT_EQ(totals[""].by_status, (std::map<int, uint64_t>{{404, 2}}));
  EXPECT_EQ(totals["_other"].by_status, (std::map<int, uint64_t>{{200, 1}}));
}

TEST(MetricsWorker, StatusesOutside100To599FoldIntoOther) {
  WorkerMetrics metrics;
  for (int status : {99, 100, 599, 600, 0, -200, 1000}) metrics.record(sample("r", status));

  EXPECT_EQ(collected(metrics)["r"].by_status,
            (std::map<int, uint64_t>{{kOtherStatus, 5}, {100, 1}, {599, 1}}));
}

TEST(MetricsWorker, StatusesPastTheSlotsOfARouteFoldIntoOther) {
  WorkerMetrics metrics;
  const int distinct = static_cast<int>(WorkerMetrics::kStatusSlots) + 3;
  for (int round = 0; round < 2; ++round) {
    for (int i = 0; i < distinct; ++i) metrics.record(sample("r", 200 + i));
  }
  metrics.record(sample("s", 200 + distinct));  // another route has slots of its own

  Totals totals = collected(metrics);
  const auto& by_status = totals["r"].by_status;
  EXPECT_EQ(by_status.size(), WorkerMetrics::kStatusSlots + 1);
  EXPECT_EQ(by_status.at(200), 2u);
  EXPECT_EQ(by_status.at(200 + static_cast<int>(WorkerMetrics::kStatusSlots) - 1), 2u);
  EXPECT_EQ(by_status.at(kOtherStatus), 2u * 3);
  EXPECT_EQ(totals["s"].by_status, (std::map<int, uint64_t>{{200 + distinct, 1}}));
}

// No TSAN in the build, so this pins what can be checked from outside: collecting while the
// worker records (including new routes and new status slots) neither crashes nor goes
// backwards, and nothing is lost once the writer is done.
TEST(MetricsConcurrency, CollectWhileRecordingIsMonotonicAndEndsExact) {
  constexpr int kRequests = 300'000;
  constexpr size_t kMaxRoutes = 100;
  constexpr int kRouteIds = 150;  // past kMaxRoutes, so folding happens while collecting
  std::vector<std::string> route_ids;
  for (int i = 0; i < kRouteIds; ++i) route_ids.push_back("route-" + std::to_string(i));
  // New route ids and status codes keep appearing through the run, not only at its start.
  auto route_of = [&](int i) -> std::string_view {
    return route_ids[static_cast<size_t>(i % std::min(kRouteIds, 1 + i / 1000))];
  };
  auto status_of = [](int i) { return 100 + i % (1 + i / 8000); };

  WorkerMetrics metrics(kMaxRoutes);
  std::atomic<bool> writer_done{false};
  std::thread writer([&] {
    for (int i = 0; i < kRequests; ++i) {
      metrics.record(sample(route_of(i), status_of(i), (i % 1000) * 1e-6, (i % 7) * 1e-6, 3, 5));
    }
    writer_done.store(true, std::memory_order_release);
  });

  int scrapes = 0;
  uint64_t last_requests = 0;
  uint64_t last_bytes_sent = 0;
  while (!writer_done.load(std::memory_order_acquire)) {
    Totals totals = collected(metrics);
    uint64_t requests = requests_of(totals);
    uint64_t bytes_sent = 0;
    for (const auto& [label, figures] : totals) bytes_sent += figures.bytes_sent;
    EXPECT_GE(requests, last_requests);
    EXPECT_GE(bytes_sent, last_bytes_sent);
    EXPECT_LE(labels_of(totals).size(), kMaxRoutes + 1);
    last_requests = requests;
    last_bytes_sent = bytes_sent;
    ++scrapes;
  }
  writer.join();

  struct Expected {
    uint64_t requests = 0;
    uint64_t request_sum_us = 0;
    uint64_t upstream_sum_us = 0;
  };
  std::map<std::string, Expected> expected;
  for (int i = 0; i < kRequests; ++i) {
    std::string route(route_of(i));
    // Route ids first appear in numeric order, so the first kMaxRoutes keep their label.
    bool labelled = std::stoi(route.substr(6)) < static_cast<int>(kMaxRoutes);
    Expected& figures = expected[labelled ? route : "_other"];
    ++figures.requests;
    figures.request_sum_us += static_cast<uint64_t>(i % 1000);
    figures.upstream_sum_us += static_cast<uint64_t>(i % 7);
  }
  Totals totals = collected(metrics);
  ASSERT_EQ(totals.size(), expected.size());
  for (const auto& [label, figures] : expected) {
    SCOPED_TRACE(label);
    const RouteTotals& got = totals[label];
    EXPECT_EQ(requests_of(got), figures.requests);
    EXPECT_EQ(got.request.count(), figures.requests);
    EXPECT_EQ(got.request.sum_us, figures.request_sum_us);
    EXPECT_EQ(got.upstream.count(), figures.requests);
    EXPECT_EQ(got.upstream.sum_us, figures.upstream_sum_us);
    EXPECT_EQ(got.bytes_received, 3 * figures.requests);
    EXPECT_EQ(got.bytes_sent, 5 * figures.requests);
  }
  EXPECT_EQ(requests_of(totals), static_cast<uint64_t>(kRequests));
  RecordProperty("scrapes", scrapes);
}
