// Coarse per-worker timeouts without a timer per operation: a Deadline is a few words in an
// intrusive list; setting one is a store. The worker scans the list every kTick and cancels
// (or closes) the sockets of expired ones; the waiting coroutine sees operation_aborted and
// asks fired() whether it was a timeout. Precision is one tick, plenty for 1 s+ timeouts.
#pragma once

#include <boost/intrusive/list.hpp>
#include <chrono>
#include <cstdint>
#include <ctime>

#include "core/asio.hpp"

namespace portico {

// Monotonic milliseconds from the coarse clock (a few ns, a few ms resolution): deadlines are
// checked once per 100 ms tick anyway.
inline int64_t steady_now_ms() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

// Monotonic microseconds (balancer latencies: ewma, least_conn bookkeeping).
inline int64_t steady_now_us() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// Wall-clock milliseconds since the epoch (rate-limit windows, token expiry).
inline int64_t wall_now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

using DeadlineHook =
    boost::intrusive::list_base_hook<boost::intrusive::link_mode<boost::intrusive::auto_unlink>>;

class Deadline : public DeadlineHook {
 public:
  Deadline() = default;
  Deadline(const Deadline&) = delete;
  Deadline& operator=(const Deadline&) = delete;

  // Cancels the pending operations of `a` (and `b`) after `seconds`. `close` closes them instead
  // (used where nothing more will be written, e.g. a WebSocket idle timeout).
  void arm(double seconds, Socket* a, Socket* b = nullptr, bool close = false) {
    when_ms_ = steady_now_ms() + static_cast<int64_t>(seconds * 1000);
    targets_[0] = a;
    targets_[1] = b;
    close_ = close;
    fired_ = false;
  }
  void disarm() { when_ms_ = 0; }
  bool fired() const { return fired_; }

 private:
  friend class DeadlineList;
  void fire();

  int64_t when_ms_ = 0;  // 0: not armed
  Socket* targets_[2] = {nullptr, nullptr};
  bool fired_ = false;
  bool close_ = false;
};

class DeadlineList {
 public:
  static constexpr std::chrono::milliseconds kTick{100};

  void add(Deadline& d) { list_.push_back(d); }  // unlinks itself when destroyed
  // Fires every armed deadline at or before `now_ms`.
  void scan(int64_t now_ms);

 private:
  boost::intrusive::list<Deadline, boost::intrusive::constant_time_size<false>> list_;
};

}  // namespace portico
