// Labelled counters that plugins and the stream proxy add to by name (WAF rule hits, rate-limit
// rejections, requests per consumer). One table per worker thread, written only by that thread
// with no lock once a series exists; the scrape sums every worker's tables. The number of
// series per worker is capped, so hostile input cannot grow memory.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace portico::metrics {

class PrometheusWriter;

struct SeriesLabel {
  std::string_view name;
  std::string_view value;
};

class SeriesCounters {
 public:
  static constexpr size_t kMaxSeries = 20000;

  // The calling thread's table (a worker's), or null on threads without one (counts are then
  // dropped: unit tests, the control thread).
  static SeriesCounters* current();
  void make_current();

  // Adds `n` to the series; `help` must be a string literal (kept by pointer).
  void add(std::string_view family, const char* help, std::initializer_list<SeriesLabel> labels,
           uint64_t n = 1) {
    if (auto* c = counter(family, help, labels)) add_to(*c, n);
  }
  // The series' counter, created on first use; stable for the table's life (callers may cache
  // it per thread). Null when the table is full.
  std::atomic<uint64_t>* counter(std::string_view family, const char* help,
                                 std::initializer_list<SeriesLabel> labels);
  // Only the owning thread writes a counter: a plain load and store, no locked instruction.
  static void add_to(std::atomic<uint64_t>& c, uint64_t n) {
    c.store(c.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }

  struct Sum {
    const char* help;
    std::vector<std::pair<std::string, std::string>> labels;
    uint64_t value;
  };
  // Any thread: adds this table into `into`, keyed by the series text.
  void collect(std::map<std::string, Sum>& into) const;

 private:
  struct Series {
    std::string family;
    const char* help;
    std::vector<std::pair<std::string, std::string>> labels;
    std::atomic<uint64_t> value{0};
  };
  struct TransparentHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  mutable std::mutex shape_mutex_;
  std::unordered_map<std::string, std::unique_ptr<Series>, TransparentHash, std::equal_to<>>
      series_;
  std::string key_;  // reused to build lookup keys without allocating
};

// Writes what collect() gathered as counter families.
void write_series(PrometheusWriter& writer, const std::map<std::string, SeriesCounters::Sum>& all);

}  // namespace portico::metrics
