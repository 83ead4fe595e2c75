// A worker thread: its own io_context, SO_REUSEPORT listeners, upstream connection pool,
// buffers, deadlines and access-log buffer. Nothing here is shared with other workers except
// the snapshot pointer (published by the control thread) and a few counters.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "config/node_config.hpp"
#include "config/snapshot.hpp"
#include "core/access_log.hpp"
#include "core/asio.hpp"
#include "core/deadline.hpp"
#include "core/io_buffer.hpp"
#include "core/peer_watch.hpp"
#include "core/worker_inbox.hpp"
#include "metrics/stream_metrics.hpp"
#include "metrics/worker_metrics.hpp"
#include "upstream/connection_pool.hpp"

namespace portico {

class Worker {
 public:
  using SnapshotPtr = std::shared_ptr<const config::Snapshot>;
  // `listener` is the node.listen entry the connection came in on (its port the bound one); it
  // lives as long as the worker.
  using ConnectionHandler =
      std::function<void(Worker&, Socket&&, const config::ListenAddress& listener)>;

  Worker(int index, ConnectionHandler handler, AccessLogWriter& access_log);
  ~Worker();
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  // Opens the listeners before the thread starts, so a busy port fails start-up loudly.
  void listen(const std::vector<config::ListenAddress>& addresses);
  // SO_REUSEPORT would let this process bind a port another process is serving, and the kernel
  // would then split connections between the two without a word: a plain bind first makes that
  // the usual "address already in use" error.
  static void check_not_in_use(const std::vector<config::ListenAddress>& addresses);
  void start(SnapshotPtr first);
  // Thread-safe: the worker takes the new snapshot at its next request.
  void publish(SnapshotPtr next);
  // Thread-safe: stop accepting and close idle connections; in-flight requests finish.
  void begin_drain() { drain_requested_.store(true, std::memory_order_release); }
  // Thread-safe: the worker's loop ends within one tick.
  void stop() { stop_requested_.store(true, std::memory_order_release); }
  // Thread-safe: runs `task` on this worker's thread soon (see WorkerInbox for the rules).
  void post(std::function<void()> task) { inbox_->post(std::move(task)); }
  // Every worker of the process, index i at [i]; set once before the workers start.
  void set_siblings(const std::vector<std::unique_ptr<Worker>>* all) { siblings_ = all; }
  // Thread-safe: the worker with `index` (its post() may be called), or nullptr.
  Worker* sibling(int index) const {
    if (!siblings_ || index < 0 || static_cast<size_t>(index) >= siblings_->size()) return nullptr;
    return (*siblings_)[static_cast<size_t>(index)].get();
  }
  void join();

  // Worker-thread only from here on.
  int index() const { return index_; }
  Executor executor() { return io_->get_executor(); }
  // The newest published snapshot. One relaxed load per call unless a new one is waiting.
  const SnapshotPtr& snapshot() {
    if (published_version_.load(std::memory_order_acquire) != snapshot_version_) adopt_snapshot();
    return snapshot_;
  }
  bool draining() const { return draining_; }
  DeadlineList& deadlines() { return deadlines_; }
  DeadlineList& idle_waits() { return idle_waits_; }
  PeerWatchList& peer_watches() { return peer_watches_; }
  BufferPool& buffers() { return buffers_; }
  upstream::ConnectionPool& pool() { return pool_; }
  bool access_log_enabled() const { return access_log_.enabled(); }
  std::string& access_log_chunk() { return log_chunk_; }
  void flush_access_log_if_full();

  // Read by the control thread (drain progress, status).
  std::atomic<int64_t> connections{0};
  std::atomic<uint64_t> requests{0};
  // Longest time the event loop was late for its tick (a stall of the worker), in microseconds;
  // the control thread reads and resets it.
  std::atomic<int64_t> max_stall_us{0};
  // steady_now_ms() of the last tick: a worker whose tick stops is stuck.
  std::atomic<int64_t> heartbeat_ms{0};
  // Written by this worker only, summed by the control thread at scrape time.
  metrics::WorkerMetrics metrics;
  metrics::SeriesCounters series;  // plugins' and streams' labelled counters
  metrics::ProxyProtocolRejections proxy_protocol_rejections;
  metrics::StreamCounters stream_metrics;

 private:
  Task<> accept_loop(Acceptor& acceptor, const config::ListenAddress& listener);
  Task<> tick_loop();
  void adopt_snapshot();
  void drain_now();

  int index_;
  ConnectionHandler handler_;
  AccessLogWriter& access_log_;
  std::unique_ptr<asio::io_context> io_;  // destroyed first, see ~Worker
  std::vector<std::unique_ptr<Acceptor>> acceptors_;
  std::vector<config::ListenAddress> listeners_;  // acceptors_[i] listens on listeners_[i]
  std::thread thread_;
  SnapshotPtr snapshot_;
  uint64_t snapshot_version_ = 0;
  // The control thread talks to the worker only through these (no posting: the io_context runs
  // without any locking, see worker.cpp).
  std::mutex mailbox_mutex_;
  SnapshotPtr mailbox_;
  std::atomic<uint64_t> published_version_{0};
  std::atomic<bool> drain_requested_{false};
  std::atomic<bool> stop_requested_{false};
  bool draining_ = false;
  DeadlineList deadlines_;
  DeadlineList idle_waits_;
  PeerWatchList peer_watches_;
  BufferPool buffers_;
  upstream::ConnectionPool pool_;
  std::string log_chunk_;
  std::unique_ptr<Timer> tick_timer_;
  std::unique_ptr<WorkerInbox> inbox_;  // destroyed before io_, like the acceptors
  const std::vector<std::unique_ptr<Worker>>* siblings_ = nullptr;
};

}  // namespace portico
