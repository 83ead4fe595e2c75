#include "core/worker.hpp"

#include <sys/socket.h>

#include <optional>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>

#include "core/current_worker.hpp"
#include "core/log.hpp"

namespace portico {

namespace {
// Each worker drives its own io_context from one thread and nothing else ever touches it (the
// control thread uses the atomics of the mailbox instead of posting), so Asio can skip all
// locking in its scheduler and reactor.
constexpr int kConcurrencyHint = BOOST_ASIO_CONCURRENCY_HINT_UNSAFE;
constexpr size_t kAccessLogFlushBytes = 64 * 1024;
thread_local std::optional<Executor> t_executor;

}  // namespace

const Executor* current_worker_executor() { return t_executor ? &*t_executor : nullptr; }
void set_current_worker_executor(const Executor& executor) { t_executor.emplace(executor); }

Worker::Worker(int index, ConnectionHandler handler, AccessLogWriter& access_log)
    : index_(index),
      handler_(std::move(handler)),
      access_log_(access_log),
      io_(std::make_unique<asio::io_context>(kConcurrencyHint)),
      inbox_(std::make_unique<WorkerInbox>(io_->get_executor())) {}

Worker::~Worker() {
  stop();
  join();
  // Pending handlers and suspended coroutines (parked connections, requests cut off by the
  // shutdown timeout) refer to the buffers, deadlines and counters of this worker: destroy
  // them while those still exist, after the sockets that need the io_context alive.
  tick_timer_.reset();
  acceptors_.clear();
  inbox_.reset();
  pool_.clear();
  io_.reset();
}

void Worker::adopt_snapshot() {
  SnapshotPtr old;  // released after the lock: its deleter should not run under it
  std::lock_guard lock(mailbox_mutex_);
  snapshot_version_ = published_version_.load(std::memory_order_relaxed);
  if (mailbox_) {
    old = std::move(snapshot_);
    snapshot_ = std::move(mailbox_);
  }
}

void Worker::check_not_in_use(const std::vector<config::ListenAddress>& addresses) {
  for (const auto& a : addresses) {
    if (a.port == 0) continue;
    asio::io_context ctx;
    asio::ip::tcp::acceptor probe(ctx);
    Endpoint ep(asio::ip::make_address(a.host), a.port);
    probe.open(ep.protocol());
    probe.set_option(asio::socket_base::reuse_address(true));
    error_code ec;
    probe.bind(ep, ec);
    if (ec) throw std::runtime_error("cannot listen on " + a.to_string() + ": " + ec.message());
  }
}

void Worker::listen(const std::vector<config::ListenAddress>& addresses) {
  for (const auto& a : addresses) {
    auto acc = std::make_unique<Acceptor>(io_->get_executor());
    Endpoint ep(asio::ip::make_address(a.host), a.port);
    acc->open(ep.protocol());
    acc->set_option(asio::socket_base::reuse_address(true));
    int one = 1;
    if (::setsockopt(acc->native_handle(), SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0)
      throw std::runtime_error("SO_REUSEPORT failed on " + a.to_string());
    error_code ec;
    acc->bind(ep, ec);
    if (ec) throw std::runtime_error("cannot listen on " + a.to_string() + ": " + ec.message());
    acc->listen(4096);
    listeners_.push_back(a);
    listeners_.back().port = acc->local_endpoint().port();
    acceptors_.push_back(std::move(acc));
  }
}

void Worker::start(SnapshotPtr first) {
  heartbeat_ms.store(steady_now_ms(), std::memory_order_relaxed);
  snapshot_ = std::move(first);
  snapshot_version_ = published_version_.load();
  for (size_t i = 0; i < acceptors_.size(); ++i)
    asio::co_spawn(*io_, accept_loop(*acceptors_[i], listeners_[i]), asio::detached);
  asio::co_spawn(*io_, tick_loop(), asio::detached);
  asio::co_spawn(*io_, inbox_->run(), asio::detached);
  thread_ = std::thread([this] {
    series.make_current();
    set_current_worker_executor(io_->get_executor());
    try {
      io_->run();
    } catch (const std::exception& e) {
      log::error("worker " + std::to_string(index_) + " stopped: " + e.what());
    }
    // Flush what is left of the access log before the thread ends.
    access_log_.submit(log_chunk_);
  });
}

void Worker::publish(SnapshotPtr next) {
  std::lock_guard lock(mailbox_mutex_);
  mailbox_ = std::move(next);
  published_version_.fetch_add(1, std::memory_order_release);
}

void Worker::drain_now() {
  draining_ = true;
  for (auto& acc : acceptors_) {
    error_code ec;
    acc->close(ec);
  }
  idle_waits_.scan(INT64_MAX);  // wakes idle keep-alive connections, which then close
}

void Worker::join() {
  if (thread_.joinable()) thread_.join();
}

void Worker::flush_access_log_if_full() {
  if (log_chunk_.size() >= kAccessLogFlushBytes) access_log_.submit(log_chunk_);
}

Task<> Worker::accept_loop(Acceptor& acceptor, const config::ListenAddress& listener) {
  while (acceptor.is_open()) {
    auto [ec, socket] = co_await acceptor.async_accept(await_ec);
    if (ec) {
      if (ec == asio::error::operation_aborted || !acceptor.is_open()) break;
      // Out of file descriptors or similar: back off instead of spinning.
      log::warn("accept failed: " + ec.message());
      Timer t(io_->get_executor(), std::chrono::milliseconds(100));
      co_await t.async_wait(await_ec);
      continue;
    }
    socket.set_option(asio::ip::tcp::no_delay(true), ec);
    handler_(*this, std::move(socket), listener);
  }
}

Task<> Worker::tick_loop() {
  tick_timer_ = std::make_unique<Timer>(io_->get_executor());
  int64_t last_pool_scan = 0;
  while (true) {
    auto due = std::chrono::steady_clock::now() + DeadlineList::kTick;
    tick_timer_->expires_at(due);
    auto [ec] = co_await tick_timer_->async_wait(await_ec);
    if (ec) break;
    int64_t late = std::chrono::duration_cast<std::chrono::microseconds>(
                       std::chrono::steady_clock::now() - due)
                       .count();
    heartbeat_ms.store(steady_now_ms(), std::memory_order_relaxed);
    if (late > max_stall_us.load(std::memory_order_relaxed))
      max_stall_us.store(late, std::memory_order_relaxed);
    if (stop_requested_.load(std::memory_order_acquire)) {
      io_->stop();
      break;
    }
    if (!draining_ && drain_requested_.load(std::memory_order_acquire)) drain_now();
    int64_t now = steady_now_ms();
    deadlines_.scan(now);
    idle_waits_.scan(now);
    peer_watches_.scan();
    if (now - last_pool_scan >= 1000) {
      pool_.expire(now);
      last_pool_scan = now;
    }

    access_log_.submit(log_chunk_);
    if (draining_ && connections.load(std::memory_order_relaxed) == 0) pool_.clear();
  }
}

}  // namespace portico
