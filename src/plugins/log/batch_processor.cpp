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
  std::vector<std::string> full;
  bool arm = false;
  {
    std::lock_guard lock(mutex_);
    if (!executor || pending_ >= settings_.max_pending) {
      count("dropped", 1);
      return;
    }
    int64_t now = steady_now_ms();
    if (batch_.empty()) first_ms_ = now;
    last_ms_ = now;
    batch_.push_back(std::move(entry));
    ++pending_;
    if (batch_.size() >= settings_.max_size) full.swap(batch_);
    arm = !timer_armed_ && !batch_.empty();
    if (arm) timer_armed_ = true;
  }
  // The coroutines hold the processor: the plugin instance may go before they end.
  if (!full.empty())
    asio::co_spawn(*executor, send(shared_from_this(), std::move(full)), asio::detached);
  if (arm) asio::co_spawn(*executor, wait_and_flush(shared_from_this()), asio::detached);
}

Task<> BatchProcessor::wait_and_flush(std::shared_ptr<BatchProcessor> self) {
  BatchProcessor& p = *self;
  Timer timer(co_await asio::this_coro::executor);
  for (;;) {
    std::vector<std::string> due_batch;
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
        due_batch.swap(p.batch_);
        p.timer_armed_ = false;
      }
    }
    if (!due_batch.empty()) {
      co_await send(self, std::move(due_batch));
      co_return;
    }
    timer.expires_after(std::chrono::milliseconds(wait_ms));
    co_await timer.async_wait(await_ec);
  }
}

Task<> BatchProcessor::send(std::shared_ptr<BatchProcessor> self, std::vector<std::string> batch) {
  BatchProcessor& p = *self;
  std::string failure;
  for (int attempt = 0;; ++attempt) {
    failure = co_await p.sink_->send(batch);
    if (failure.empty() || attempt >= p.settings_.max_retry_count) break;
    Timer delay(co_await asio::this_coro::executor);
    delay.expires_after(
        std::chrono::milliseconds(static_cast<int64_t>(p.settings_.retry_delay * 1000)));
    co_await delay.async_wait(await_ec);
  }
  if (failure.empty()) {
    p.count("sent", batch.size());
  } else {
    p.count("failed", batch.size());
    log::error("Batch Processor[" + p.settings_.name + "] (" + p.plugin_ + ") dropped " +
               std::to_string(batch.size()) + " entries after " +
               std::to_string(p.settings_.max_retry_count + 1) +
               " attempts: " + log::one_line(failure, 300));
  }
  std::lock_guard lock(p.mutex_);
  p.pending_ -= batch.size();
}

}  // namespace portico::plugins
