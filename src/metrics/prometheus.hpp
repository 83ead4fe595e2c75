// The body of GET /metrics: the Prometheus text exposition format 0.0.4. Samples are buffered
// by metric family, so callers may write families in any order, even interleaved; each family
// comes out whole, its HELP and TYPE lines once, before its first sample.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "metrics/histogram.hpp"
#include "metrics/stream_metrics.hpp"
#include "metrics/worker_metrics.hpp"

namespace portico::metrics {

inline constexpr std::string_view kPrometheusContentType =
    "text/plain; version=0.0.4; charset=utf-8";

struct Label {
  std::string_view name;   // [a-zA-Z_][a-zA-Z0-9_]*, not checked: names are constants in code
  std::string_view value;  // anything; escaped on output
};
using Labels = std::span<const Label>;

// Metric names are not checked either. A family's help and type are those of its first
// sample; writing one name with two types is a bug in the caller.
class PrometheusWriter {
 public:
  void counter(std::string_view name, std::string_view help, Labels labels, uint64_t value);
  void gauge(std::string_view name, std::string_view help, Labels labels, double value);
  // Renders name_bucket{le=...} (cumulative), name_sum (seconds) and name_count.
  void histogram(std::string_view name, std::string_view help, Labels labels,
                 const HistogramTotals& totals);

  // So that label sets can be written in place: {{"route", id}, {"status", "200"}}.
  void counter(std::string_view name, std::string_view help, std::initializer_list<Label> labels,
               uint64_t value) {
    counter(name, help, Labels(labels.begin(), labels.size()), value);
  }
  void gauge(std::string_view name, std::string_view help, std::initializer_list<Label> labels,
             double value) {
    gauge(name, help, Labels(labels.begin(), labels.size()), value);
  }
  void histogram(std::string_view name, std::string_view help, std::initializer_list<Label> labels,
                 const HistogramTotals& totals) {
    histogram(name, help, Labels(labels.begin(), labels.size()), totals);
  }

  // The exposition, families in the order first written; leaves the writer empty.
  std::string take();

 private:
  struct Family {
    std::string header;  // HELP and TYPE lines
    std::string samples;
  };
  struct TransparentHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };

  std::string& samples_of(std::string_view name, std::string_view help, std::string_view type);

  std::vector<Family> families_;
  std::unordered_map<std::string, size_t, TransparentHash, std::equal_to<>> family_positions_;
};

// The per-route request families: portico_http_requests_total{route,status},
// portico_http_request_duration_seconds{route}, portico_upstream_duration_seconds{route} (routes
// with upstream samples only), portico_http_received_bytes_total{route} and
// portico_http_sent_bytes_total{route}.
void write_request_metrics(PrometheusWriter& writer, const Totals& totals);

// The stream (L4) families: portico_stream_connections_active, _connections_total,
// _closed_total{reason}, _frames_total{direction,cmd}, _frame_bytes_total{direction,cmd},
// _bytes_total{direction}, _refused_frames_total{reason,action}, _heartbeats_answered_total,
// _upstream_connect_failures_total. cmd is "0x4001" or "other".
void write_stream_metrics(PrometheusWriter& writer, const StreamCounters::Totals& totals);

}  // namespace portico::metrics
