#include "plugins/log/batch_processor.hpp"

#include <algorithm>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <chrono>

#include "core/current_worker.hpp"
#include "core/deadline.hpp"
#include "core/log.hpp"
#include "metrics/series_counters.hpp"

namespace portico::plugins {

BatchSettings read_batch_settings(config::ObjectReader& r, std::string default_name) {
  BatchSettings s;
  s.name = r.string_or("name", std::move(default_name));
  s.max_size = static_cast<size_t>(r.integer_or("batch_max_size", 1000, 1, 1000000));
  s.inactive_timeout = static_cast<double>(r.integer_or("inactive_timeout", 5, 1, 86400));
  s.buffer_duration = static_cast<double>(r.integer_or("buffer_duration", 60, 1, 86400));
  s.max_retry_count = static_cast<int>(r.integer_or("max_retry_count", 0, 0, 100));
  s.retry_delay = static_cast<double>(r.integer_or("retry_delay", 1, 0, 3600));
  s.max_pending = static_cast<size_t>(
      r.integer_or("max_pending_entries",
                   std::max<int64_t>(10000, 2 * static_cast<int64_t>(s.max_size)), 1, 10000000));
  if (s.max_pending < s.max_size) r.error("max_pending_entries", "must be at least batch_max_size");
  return s;
}

std::string join_entries(const std::vector<std::string>& entries, bool single, bool new_line) {
  std::string out;
  size_t total = 2;
  for (const auto& e : entries) total += e.size() + 1;
  out.reserve(total);
  if (new_line || (single && entries.size() == 1)) {
    for (const auto& e : entries) (out += e) += '\n';
    if (!out.empty()) out.pop_back();
  } else {
    out += '[';
    for (const auto& e : entries) (out += e) += ',';
    if (entries.empty())
      out += ']';
    else
      out.back() = ']';
  }
  return out;
}

namespace {
std::mutex g_registry_mutex;
std::vector<std::weak_ptr<BatchProcessor>> g_registry;
std::atomic<int64_t> g_unsent{0};
// Set by flush_all: from then on every entry goes out at once and failures are not retried
// (the workers are about to stop: no timer or retry delay would be waited for).
std::atomic<bool> g_draining{false};
}  // namespace

int64_t BatchProcessor::unsent() { return g_unsent.load(std::memory_order_relaxed); }

void BatchProcessor::flush_all() {
  g_draining.store(true, std::memory_order_relaxed);
  const Executor* executor = current_worker_executor();
  if (!executor) return;
  std::vector<std::shared_ptr<BatchProcessor>> live;
  {
    std::lock_guard lock(g_registry_mutex);
    std::erase_if(g_registry, [](const auto& w) { return w.expired(); });
    for (const auto& w : g_registry)
      if (auto p = w.lock()) live.push_back(std::move(p));
  }
  for (auto& p : live) {
    std::vector<std::string> now;
    {
      std::lock_guard lock(p->mutex_);
      now = p->batch_ready_locked();
    }
    if (!now.empty()) asio::co_spawn(*executor, send_all(p, std::move(now)), asio::detached);
  }
}

BatchProcessor::BatchProcessor(BatchSettings settings, std::shared_ptr<const BatchSink> sink,
                               std::string plugin)
    : settings_(std::move(settings)), sink_(std::move(sink)), plugin_(std::move(plugin)) {}

void BatchProcessor::count(std::string_view outcome, size_t n) const {
  if (auto* series = metrics::SeriesCounters::current())
    series->add("portico_log_entries_total",
                "Entries of the sending loggers (http-logger, ...) by outcome: sent; failed (the "
                "send and its retries failed); dropped (too many waiting, max_pending_entries)",
                {{"plugin", plugin_}, {"logger", settings_.name}, {"outcome", outcome}}, n);
}

void BatchProcessor::push(std::string entry) {
  const Executor* executor = current_worker_executor();
  std::vector<std::string> now;
  bool arm = false;
  {
    std::lock_guard lock(mutex_);
    if (!executor || pending_ >= settings_.max_pending ||
        pending_bytes_ + entry.size() > kMaxPendingBytes) {
      count("dropped", 1);
      return;
    }
    int64_t t = steady_now_ms();
    if (batch_.empty()) first_ms_ = t;
    last_ms_ = t;
    ++pending_;
    g_unsent.fetch_add(1, std::memory_order_relaxed);
    pending_bytes_ += entry.size();
    if (!registered_) {
      registered_ = true;
      std::lock_guard registry(g_registry_mutex);
      std::erase_if(g_registry, [](const auto& w) { return w.expired(); });
      g_registry.push_back(weak_from_this());
    }
    batch_.push_back(std::move(entry));
    if (batch_.size() >= settings_.max_size || g_draining.load(std::memory_order_relaxed))
      now = batch_ready_locked();
    arm = !timer_armed_ && !batch_.empty();
    if (arm) timer_armed_ = true;
  }
  // The coroutines hold the processor: the plugin instance may go before they end.
  if (!now.empty())
    asio::co_spawn(*executor, send_all(shared_from_this(), std::move(now)), asio::detached);
  if (arm) asio::co_spawn(*executor, wait_and_flush(shared_from_this()), asio::detached);
}

std::vector<std::string> BatchProcessor::batch_ready_locked() {
  std::vector<std::string> out;
  if (!batch_.empty()) ready_.push_back(std::move(batch_));
  batch_.clear();
  if (sending_ < kMaxSends && !ready_.empty()) {
    out = std::move(ready_.front());
    ready_.pop_front();
    ++sending_;
  }
  return out;
}

Task<> BatchProcessor::wait_and_flush(std::shared_ptr<BatchProcessor> self) {
  BatchProcessor& p = *self;
  Timer timer(co_await asio::this_coro::executor);
  for (;;) {
    std::vector<std::string> now;
    int64_t wait_ms = 0;
    {
      std::lock_guard lock(p.mutex_);
      if (p.batch_.empty()) {
        p.timer_armed_ = false;
        co_return;
      }
      int64_t due =
          std::min(p.last_ms_ + static_cast<int64_t>(p.settings_.inactive_timeout * 1000),
                   p.first_ms_ + static_cast<int64_t>(p.settings_.buffer_duration * 1000));
      wait_ms = due - steady_now_ms();
      if (wait_ms <= 0) {
        now = p.batch_ready_locked();
        p.timer_armed_ = false;
      }
    }
    if (wait_ms <= 0) {
      if (!now.empty()) co_await send_all(self, std::move(now));
      co_return;
    }
    timer.expires_after(std::chrono::milliseconds(wait_ms));
    co_await timer.async_wait(await_ec);
  }
}

Task<std::string> BatchProcessor::send_with_retries(const std::vector<std::string>& batch) {
  std::string failure;
  for (int attempt = 0;; ++attempt) {
    try {
      failure = co_await sink_->send(batch);
    } catch (const std::exception& e) {
      failure = e.what();
    }
    if (failure.empty() || attempt >= settings_.max_retry_count ||
        g_draining.load(std::memory_order_relaxed) || !sink_->worth_retrying(failure))
      co_return failure;
    Timer delay(co_await asio::this_coro::executor);
    delay.expires_after(
        std::chrono::milliseconds(static_cast<int64_t>(settings_.retry_delay * 1000)));
    co_await delay.async_wait(await_ec);
  }
}

Task<> BatchProcessor::send_all(std::shared_ptr<BatchProcessor> self,
                                std::vector<std::string> batch) {
  BatchProcessor& p = *self;
  while (!batch.empty()) {
    std::string failure = co_await p.send_with_retries(batch);
    size_t bytes = 0;
    for (const auto& e : batch) bytes += e.size();
    if (failure.empty()) {
      p.count("sent", batch.size());
    } else {
      p.count("failed", batch.size());
      p.log_failure(batch.size(), failure);
    }
    std::lock_guard lock(p.mutex_);
    p.pending_ -= batch.size();
    g_unsent.fetch_sub(static_cast<int64_t>(batch.size()), std::memory_order_relaxed);
    p.pending_bytes_ -= bytes;
    batch.clear();
    if (!p.ready_.empty()) {
      batch = std::move(p.ready_.front());
      p.ready_.pop_front();
    } else {
      --p.sending_;
    }
  }
}

void BatchProcessor::log_failure(size_t entries, const std::string& why) {
  int64_t now = steady_now_ms();
  int64_t last = last_error_ms_.load(std::memory_order_relaxed);
  if (now - last < 1000 || !last_error_ms_.compare_exchange_strong(last, now)) return;
  log::error("Batch Processor[" + settings_.name + "] (" + plugin_ + ") dropped " +
             std::to_string(entries) + " entries after " +
             std::to_string(settings_.max_retry_count + 1) +
             " attempts: " + log::one_line(why, 300) +
             " (one line a second at most; portico_log_entries_total counts them all)");
}

}  // namespace portico::plugins
