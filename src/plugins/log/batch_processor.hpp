// APISIX's batch processor for the loggers that send (http-logger, tcp-logger, udp-logger):
// entries gather in one batch per plugin config, shared by the workers, and go out together
// when the batch is full (batch_max_size), when no entry came for inactive_timeout, or when the
// oldest has waited buffer_duration. A failed send is retried max_retry_count times,
// retry_delay apart, and then dropped with an error line. Unlike APISIX, what waits is bounded
// (max_pending_entries, and 64 MiB) and at most four sends per config run at once: a dead or
// slow log server never grows the gateway's memory or its sockets without end.
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "config/field_reader.hpp"
#include "core/asio.hpp"
#include "plugins/log/log_entry.hpp"

namespace portico::plugins {

struct BatchSettings {
  std::string name;  // for log lines and metrics ("http logger")
  size_t max_size = 1000;
  double inactive_timeout = 5;
  double buffer_duration = 60;
  int max_retry_count = 0;
  double retry_delay = 1;
  size_t max_pending = 10000;  // entries waiting or being sent; more are dropped and counted
};

// Reads name, batch_max_size, inactive_timeout, buffer_duration, max_retry_count, retry_delay
// and max_pending_entries.
BatchSettings read_batch_settings(config::ObjectReader& r, std::string default_name);

// Where a batch goes. Kept alive by the sends in flight, so a config change never cuts one.
class BatchSink {
 public:
  virtual ~BatchSink() = default;
  // Empty on success, else why it failed.
  virtual Task<std::string> send(const std::vector<std::string>& entries) const = 0;
  // Whether a send that failed with `error` may succeed when tried again (a 400 will not).
  virtual bool worth_retrying(const std::string& /*error*/) const { return true; }
};

// A batch as APISIX's loggers send it: the entry itself when batch_max_size is 1 (`single`),
// else a JSON array; or, with `new_line`, the entries one per line.
std::string join_entries(const std::vector<std::string>& entries, bool single, bool new_line);

class BatchProcessor : public std::enable_shared_from_this<BatchProcessor> {
 public:
  BatchProcessor(BatchSettings settings, std::shared_ptr<const BatchSink> sink, std::string plugin);
  // From a worker's log phase: sends and timers run on that worker.
  void push(std::string entry);

  // At shutdown, once no request is left (on a worker thread): every processor's batch goes out
  // now instead of at its timer, which would come after the workers stopped; entries logged
  // after this go out at once, and failures are not retried.
  static void flush_all();
  // Entries pushed and not yet sent or given up, in every processor.
  static int64_t unsent();

 private:
  static constexpr int kMaxSends = 4;
  static constexpr size_t kMaxPendingBytes = 64 << 20;

  static Task<> wait_and_flush(std::shared_ptr<BatchProcessor> self);
  // Sends `batch`, then the batches that became ready meanwhile, while there are any.
  static Task<> send_all(std::shared_ptr<BatchProcessor> self, std::vector<std::string> batch);
  Task<std::string> send_with_retries(const std::vector<std::string>& batch);
  // Under mutex_: batch_ goes to ready_; returns a batch to send now when a send may start.
  std::vector<std::string> batch_ready_locked();
  void count(std::string_view outcome, size_t n) const;
  void log_failure(size_t entries, const std::string& why);

  const BatchSettings settings_;
  const std::shared_ptr<const BatchSink> sink_;
  const std::string plugin_;
  std::mutex mutex_;
  std::vector<std::string> batch_;
  int64_t first_ms_ = 0;  // steady time the batch's first entry came
  int64_t last_ms_ = 0;   // and its latest
  bool timer_armed_ = false;
  bool registered_ = false;                     // in the list flush_all() walks
  std::deque<std::vector<std::string>> ready_;  // batches waiting for a send to end
  int sending_ = 0;
  size_t pending_ = 0;                     // entries in batch_, ready_ or sends not finished
  size_t pending_bytes_ = 0;               // and their bytes
  std::atomic<int64_t> last_error_ms_{0};  // one error line a second at most
};

// A logger whose entries go out in batches (http-logger, tcp-logger, udp-logger).
class BatchingLogger final : public LoggerPlugin {
 public:
  std::shared_ptr<BatchProcessor> batches;

 protected:
  void write(Context&, std::string entry) const override { batches->push(std::move(entry)); }
};

}  // namespace portico::plugins
