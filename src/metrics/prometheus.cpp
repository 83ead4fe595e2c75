#include "metrics/prometheus.hpp"

#include <charconv>
#include <cmath>
#include <limits>

namespace portico::metrics {

namespace {

// HELP text escapes backslash and newline; label values also the double quote.
void append_escaped(std::string& out, std::string_view text, bool escape_quote) {
  for (char c : text) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '"' && escape_quote) {
      out += "\\\"";
    } else {
      out += c;
    }
  }
}

void append_number(std::string& out, uint64_t value) {
  char digits[24];
  auto end = std::to_chars(digits, digits + sizeof digits, value).ptr;
  out.append(digits, end);
}

// Shortest text that reads back as the same double; the special values as Prometheus spells them.
void append_number(std::string& out, double value) {
  if (std::isnan(value)) {
    out += "NaN";
  } else if (std::isinf(value)) {
    out += value > 0 ? "+Inf" : "-Inf";
  } else {
    char digits[32];
    auto end = std::to_chars(digits, digits + sizeof digits, value).ptr;
    out.append(digits, end);
  }
}

// `le`, when not empty, goes last, after the caller's labels.
void append_labels(std::string& out, Labels labels, std::string_view le = {}) {
  if (labels.empty() && le.empty()) return;
  out += '{';
  const char* separator = "";
  for (const Label& label : labels) {
    out += separator;
    out += label.name;
    out += "=\"";
    append_escaped(out, label.value, true);
    out += '"';
    separator = ",";
  }
  if (!le.empty()) {
    out += separator;
    out += "le=\"";
    out += le;
    out += '"';
  }
  out += '}';
}

template <class Number>
void append_sample(std::string& out, std::string_view name, std::string_view suffix, Labels labels,
                   std::string_view le, Number value) {
  out += name;
  out += suffix;
  append_labels(out, labels, le);
  out += ' ';
  append_number(out, value);
  out += '\n';
}

std::string bucket_bound_text(size_t bucket) {
  std::string text;
  append_number(text, bucket < kLatencyBucketBounds.size()
                          ? kLatencyBucketBounds[bucket]
                          : std::numeric_limits<double>::infinity());
  return text;
}

std::string status_label(int status) {
  return status == kOtherStatus ? "other" : std::to_string(status);
}

}  // namespace

void PrometheusWriter::counter(std::string_view name, std::string_view help, Labels labels,
                               uint64_t value) {
  append_sample(samples_of(name, help, "counter"), name, "", labels, {}, value);
}

void PrometheusWriter::gauge(std::string_view name, std::string_view help, Labels labels,
                             double value) {
  append_sample(samples_of(name, help, "gauge"), name, "", labels, {}, value);
}

void PrometheusWriter::histogram(std::string_view name, std::string_view help, Labels labels,
                                 const HistogramTotals& totals) {
  std::string& out = samples_of(name, help, "histogram");
  uint64_t cumulative = 0;
  for (size_t bucket = 0; bucket < totals.buckets.size(); ++bucket) {
    cumulative += totals.buckets[bucket];
    append_sample(out, name, "_bucket", labels, bucket_bound_text(bucket), cumulative);
  }
  append_sample(out, name, "_sum", labels, {}, totals.sum_seconds());
  append_sample(out, name, "_count", labels, {}, cumulative);
}

std::string PrometheusWriter::take() {
  std::string exposition;
  for (const Family& family : families_) {
    exposition += family.header;
    exposition += family.samples;
  }
  families_.clear();
  family_positions_.clear();
  return exposition;
}

std::string& PrometheusWriter::samples_of(std::string_view name, std::string_view help,
                                          std::string_view type) {
  if (auto found = family_positions_.find(name); found != family_positions_.end()) {
    return families_[found->second].samples;
  }
  family_positions_.emplace(name, families_.size());
  Family& family = families_.emplace_back();
  family.header += "# HELP ";
  family.header += name;
  family.header += ' ';
  append_escaped(family.header, help, false);
  family.header += "\n# TYPE ";
  family.header += name;
  family.header += ' ';
  family.header += type;
  family.header += '\n';
  return family.samples;
}

// One family at a time, so the families come out in the same order whatever the data.
void write_request_metrics(PrometheusWriter& writer, const Totals& totals) {
  for (const auto& [route, figures] : totals) {
    for (const auto& [status, count] : figures.by_status) {
      writer.counter("portico_http_requests_total",
                     "HTTP requests answered, by route id (\"\": no route matched) and status.",
                     {{"route", route}, {"status", status_label(status)}}, count);
    }
  }
  for (const auto& [route, figures] : totals) {
    writer.histogram("portico_http_request_duration_seconds",
                     "Time to handle an HTTP request, in seconds.", {{"route", route}},
                     figures.request);
  }
  for (const auto& [route, figures] : totals) {
    if (figures.upstream.count() == 0) continue;
    writer.histogram("portico_upstream_duration_seconds",
                     "Time spent on the upstream side of a request, in seconds.",
                     {{"route", route}}, figures.upstream);
  }
  for (const auto& [route, figures] : totals) {
    writer.counter("portico_http_received_bytes_total", "Bytes received from clients.",
                   {{"route", route}}, figures.bytes_received);
  }
  for (const auto& [route, figures] : totals) {
    writer.counter("portico_http_sent_bytes_total", "Bytes sent to clients.", {{"route", route}},
                   figures.bytes_sent);
  }
}

void write_stream_metrics(PrometheusWriter& out, const StreamCounters::Totals& t) {
  out.gauge("portico_stream_connections_active", "Open stream (L4) client connections.", {},
            static_cast<double>(t.opened - std::min(t.opened, t.closed)));
  out.counter("portico_stream_connections_total", "Stream (L4) client connections accepted.", {},
              t.opened);
  for (size_t i = 0; i < kStreamCloseReasons; ++i)
    out.counter("portico_stream_closed_total", "Stream connections closed, by reason.",
                {{"reason", to_string(static_cast<StreamClose>(i))}}, t.closes[i]);
  for (size_t d = 0; d < kStreamDirections; ++d)
    out.counter("portico_stream_bytes_total", "Bytes relayed by stream connections.",
                {{"direction", to_string(static_cast<StreamDirection>(d))}}, t.bytes[d]);
  for (const auto& [cmd, c] : t.by_cmd) {
    char name[16];
    std::snprintf(name, sizeof(name), "0x%04llx", static_cast<unsigned long long>(cmd));
    std::string_view label = cmd < 0 ? std::string_view("other") : std::string_view(name);
    for (size_t d = 0; d < kStreamDirections; ++d) {
      auto dir = to_string(static_cast<StreamDirection>(d));
      out.counter("portico_stream_frames_total", "TLV frames relayed or answered, by cmd.",
                  {{"direction", dir}, {"cmd", label}}, c.frames[d]);
      out.counter("portico_stream_frame_bytes_total", "Bytes of TLV frames, by cmd.",
                  {{"direction", dir}, {"cmd", label}}, c.bytes[d]);
    }
  }
  for (size_t i = 0; i < kStreamRefusals; ++i)
    for (size_t k = 0; k < 2; ++k)
      out.counter(
          "portico_stream_refused_frames_total",
          "TLV frames refused at the edge (rate limits, command policy), by reason.",
          {{"reason", to_string(static_cast<StreamRefusal>(i))}, {"action", k ? "reply" : "drop"}},
          t.refusals[i][k]);
  out.counter("portico_stream_heartbeats_answered_total",
              "Heartbeats answered at the edge without reaching a backend.", {}, t.heartbeats);
  out.counter("portico_stream_upstream_connect_failures_total",
              "Failed connection attempts to stream upstream nodes.", {}, t.connect_failures);
}

}  // namespace portico::metrics
