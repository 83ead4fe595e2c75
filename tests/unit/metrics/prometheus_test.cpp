#include "metrics/prometheus.hpp"

#include <gtest/gtest.h>

#include <limits>
#include <sstream>
#include <string>
#include <vector>

using namespace portico::metrics;

namespace {

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

std::vector<std::string> lines_starting_with(const std::string& text, std::string_view prefix) {
  std::vector<std::string> matching;
  for (const std::string& line : lines_of(text)) {
    if (line.starts_with(prefix)) matching.push_back(line);
  }
  return matching;
}

bool has_line(const std::string& text, std::string_view wanted) {
  for (const std::string& line : lines_of(text)) {
    if (line == wanted) return true;
  }
  return false;
}

}  // namespace

TEST(PrometheusWriter, HistogramBucketsAreCumulativeWithSumInSeconds) {
  HistogramTotals totals;
  totals.buckets[0] = 1;  // le 0.001
  totals.buckets[2] = 2;  // le 0.005
  totals.buckets[kLatencyBucketCount - 1] = 1;
  totals.sum_us = 500 + 4'000 + 4'000 + 70'000'000;

  PrometheusWriter writer;
  writer.histogram("lat", "Latency.", {{"route", "a"}}, totals);
  EXPECT_EQ(writer.take(),
            "# HELP lat Latency.\n"
            "# TYPE lat histogram\n"
            "lat_bucket{route=\"a\",le=\"0.001\"} 1\n"
            "lat_bucket{route=\"a\",le=\"0.002\"} 1\n"
            "lat_bucket{route=\"a\",le=\"0.005\"} 3\n"
            "lat_bucket{route=\"a\",le=\"0.01\"} 3\n"
            "lat_bucket{route=\"a\",le=\"0.02\"} 3\n"
            "lat_bucket{route=\"a\",le=\"0.05\"} 3\n"
            "lat_bucket{route=\"a\",le=\"0.1\"} 3\n"
            "lat_bucket{route=\"a\",le=\"0.2\"} 3\n"
            "lat_bucket{route=\"a\",le=\"0.5\"} 3\n"
            "lat_bucket{route=\"a\",le=\"1\"} 3\n"
            "lat_bucket{route=\"a\",le=\"2\"} 3\n"
            "lat_bucket{route=\"a\",le=\"5\"} 3\n"
            "lat_bucket{route=\"a\",le=\"10\"} 3\n"
            "lat_bucket{route=\"a\",le=\"30\"} 3\n"
            "lat_bucket{route=\"a\",le=\"60\"} 3\n"
            "lat_bucket{route=\"a\",le=\"+Inf\"} 4\n"
            "lat_sum{route=\"a\"} 70.0085\n"
            "lat_count{route=\"a\"} 4\n");
}

TEST(PrometheusWriter, HistogramWithoutLabelsHasOnlyLe) {
  PrometheusWriter writer;
  writer.histogram("lat", "Latency.", {}, HistogramTotals{});
  std::string text = writer.take();
  EXPECT_TRUE(has_line(text, "lat_bucket{le=\"0.001\"} 0")) << text;
  EXPECT_TRUE(has_line(text, "lat_bucket{le=\"+Inf\"} 0")) << text;
  EXPECT_TRUE(has_line(text, "lat_sum 0")) << text;
  EXPECT_TRUE(has_line(text, "lat_count 0")) << text;
}

TEST(PrometheusWriter, CountersAndGauges) {
  PrometheusWriter writer;
  writer.counter("hits_total", "Hits.", {}, 18446744073709551615u);
  writer.gauge("ratio", "A ratio.", {{"kind", "half"}}, 0.5);
  writer.gauge("ratio", "A ratio.", {{"kind", "nan"}}, std::numeric_limits<double>::quiet_NaN());
  writer.gauge("ratio", "A ratio.", {{"kind", "inf"}}, -std::numeric_limits<double>::infinity());
  EXPECT_EQ(writer.take(),
            "# HELP hits_total Hits.\n"
            "# TYPE hits_total counter\n"
            "hits_total 18446744073709551615\n"
            "# HELP ratio A ratio.\n"
            "# TYPE ratio gauge\n"
            "ratio{kind=\"half\"} 0.5\n"
            "ratio{kind=\"nan\"} NaN\n"
            "ratio{kind=\"inf\"} -Inf\n");
}

TEST(PrometheusWriter, HelpAndTypeOncePerFamilyEvenWhenInterleaved) {
  PrometheusWriter writer;
  writer.counter("a_total", "A.", {{"x", "1"}}, 1);
  writer.counter("b_total", "B.", {{"x", "1"}}, 2);
  writer.counter("a_total", "A.", {{"x", "2"}}, 3);
  writer.counter("b_total", "B.", {{"x", "2"}}, 4);
  EXPECT_EQ(writer.take(),
            "# HELP a_total A.\n"
            "# TYPE a_total counter\n"
            "a_total{x=\"1\"} 1\n"
            "a_total{x=\"2\"} 3\n"
            "# HELP b_total B.\n"
            "# TYPE b_total counter\n"
            "b_total{x=\"1\"} 2\n"
            "b_total{x=\"2\"} 4\n");
}

TEST(PrometheusWriter, EscapesLabelValuesAndHelp) {
  PrometheusWriter writer;
  writer.counter("c_total", "Back\\slash, \"quote\"\nand newline.",
                 {{"route", "a\\b\"c\nd"}, {"plain", "ok"}}, 1);
  EXPECT_EQ(writer.take(),
            "# HELP c_total Back\\\\slash, \"quote\"\\nand newline.\n"
            "# TYPE c_total counter\n"
            "c_total{route=\"a\\\\b\\\"c\\nd\",plain=\"ok\"} 1\n");
}

TEST(PrometheusWriter, TakeLeavesTheWriterEmpty) {
  PrometheusWriter writer;
  writer.counter("a_total", "A.", {}, 1);
  EXPECT_FALSE(writer.take().empty());
  EXPECT_EQ(writer.take(), "");
  writer.counter("a_total", "A.", {}, 2);
  EXPECT_EQ(writer.take(), "# HELP a_total A.\n# TYPE a_total counter\na_total 2\n");
}

TEST(PrometheusWriter, AcceptsLabelsBuiltAtRunTime) {
  std::vector<Label> labels = {{"worker", "3"}};
  PrometheusWriter writer;
  writer.gauge("connections", "Open connections.", labels, 12);
  EXPECT_TRUE(has_line(writer.take(), "connections{worker=\"3\"} 12"));
}

TEST(PrometheusRequestMetrics, WritesEachFamilyOnceWithItsSamples) {
  Totals totals;
  RouteTotals& unmatched = totals[""];
  unmatched.by_status = {{404, 2}};
  unmatched.request.buckets[0] = 2;
  unmatched.request.sum_us = 800;
  unmatched.bytes_received = 300;
  unmatched.bytes_sent = 120;
  RouteTotals& api = totals["api"];
  api.by_status = {{kOtherStatus, 1}, {200, 3}};
  api.request.buckets[3] = 4;  // le 0.01
  api.request.sum_us = 30'000;
  api.upstream.buckets[2] = 3;  // le 0.005
  api.upstream.sum_us = 12'000;
  api.bytes_received = 1000;
  api.bytes_sent = 5000;

  PrometheusWriter writer;
  write_request_metrics(writer, totals);
  std::string text = writer.take();

  EXPECT_EQ(lines_starting_with(text, "# TYPE"),
            (std::vector<std::string>{
                "# TYPE portico_http_requests_total counter",
                "# TYPE portico_http_request_duration_seconds histogram",
                "# TYPE portico_upstream_duration_seconds histogram",
                "# TYPE portico_http_received_bytes_total counter",
                "# TYPE portico_http_sent_bytes_total counter",
            }));
  EXPECT_EQ(lines_starting_with(text, "portico_http_requests_total"),
            (std::vector<std::string>{
                "portico_http_requests_total{route=\"\",status=\"404\"} 2",
                "portico_http_requests_total{route=\"api\",status=\"other\"} 1",
                "portico_http_requests_total{route=\"api\",status=\"200\"} 3",
            }));
  EXPECT_EQ(lines_starting_with(text, "portico_http_request_duration_seconds_count"),
            (std::vector<std::string>{
                "portico_http_request_duration_seconds_count{route=\"\"} 2",
                "portico_http_request_duration_seconds_count{route=\"api\"} 4",
            }));
  EXPECT_TRUE(has_line(text, "portico_http_request_duration_seconds_sum{route=\"api\"} 0.03"));
  EXPECT_TRUE(
      has_line(text, "portico_http_request_duration_seconds_bucket{route=\"api\",le=\"0.005\"} 0"));
  EXPECT_TRUE(
      has_line(text, "portico_http_request_duration_seconds_bucket{route=\"api\",le=\"0.01\"} 4"));
  // The unmatched requests never reached an upstream: no series for them.
  EXPECT_EQ(lines_starting_with(text, "portico_upstream_duration_seconds_count"),
            (std::vector<std::string>{"portico_upstream_duration_seconds_count{route=\"api\"} 3"}));
  EXPECT_TRUE(has_line(text, "portico_upstream_duration_seconds_sum{route=\"api\"} 0.012"));
  EXPECT_EQ(lines_starting_with(text, "portico_http_received_bytes_total{"),
            (std::vector<std::string>{
                "portico_http_received_bytes_total{route=\"\"} 300",
                "portico_http_received_bytes_total{route=\"api\"} 1000",
            }));
  EXPECT_EQ(lines_starting_with(text, "portico_http_sent_bytes_total{"),
            (std::vector<std::string>{
                "portico_http_sent_bytes_total{route=\"\"} 120",
                "portico_http_sent_bytes_total{route=\"api\"} 5000",
            }));
  EXPECT_EQ(lines_starting_with(text, "# HELP").size(), 5u);
}

TEST(PrometheusRequestMetrics, NothingCollectedWritesNothing) {
  PrometheusWriter writer;
  write_request_metrics(writer, Totals{});
  EXPECT_EQ(writer.take(), "");
}
