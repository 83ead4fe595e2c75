#include "metrics/series_counters.hpp"

#include "metrics/prometheus.hpp"

namespace portico::metrics {
namespace {
thread_local SeriesCounters* t_current = nullptr;
}  // namespace

SeriesCounters* SeriesCounters::current() { return t_current; }
void SeriesCounters::make_current() { t_current = this; }

std::atomic<uint64_t>* SeriesCounters::counter(std::string_view family, const char* help,
                                               std::initializer_list<SeriesLabel> labels) {
  key_.assign(family);
  for (const auto& l : labels) {
    key_ += '\x1f';
    key_ += l.name;
    key_ += '=';
    key_ += l.value;
  }
  auto it = series_.find(std::string_view(key_));
  if (it == series_.end()) {
    if (series_.size() >= kMaxSeries) return nullptr;
    auto s = std::make_unique<Series>();
    s->family.assign(family);
    s->help = help;
    for (const auto& l : labels) s->labels.emplace_back(l.name, l.value);
    std::lock_guard lock(shape_mutex_);
    it = series_.emplace(key_, std::move(s)).first;
  }
  return &it->second->value;
}

void SeriesCounters::collect(std::map<std::string, Sum>& into) const {
  std::lock_guard lock(shape_mutex_);
  for (const auto& [key, s] : series_) {
    auto [slot, inserted] = into.try_emplace(key, Sum{s->help, {}, 0});
    if (inserted) {
      slot->second.labels = s->labels;
      slot->second.labels.insert(slot->second.labels.begin(), {"", s->family});
    }
    slot->second.value += s->value.load(std::memory_order_relaxed);
  }
}

void write_series(PrometheusWriter& writer, const std::map<std::string, SeriesCounters::Sum>& all) {
  std::vector<Label> labels;
  for (const auto& [key, sum] : all) {
    labels.clear();
    // labels[0] carries the family name (see collect).
    for (size_t i = 1; i < sum.labels.size(); ++i)
      labels.push_back({sum.labels[i].first, sum.labels[i].second});
    writer.counter(sum.labels[0].second, sum.help, Labels(labels.data(), labels.size()), sum.value);
  }
}

}  // namespace portico::metrics
