// Compiles configuration changes into snapshots on a thread of its own, in the idle scheduling
// class: a big compile (tens of ms for 50k routes) runs on CPU time the workers leave unused,
// so frequent changes do not show up in request latency, and the control thread (Admin API,
// etcd watch, health) never waits for a compile. If the machine is so busy that a compile
// makes no progress for `kStarvationLimit`, it is raised to a normal (niced) priority until done.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "config/snapshot.hpp"
#include "core/asio.hpp"

namespace portico {

class SnapshotCompiler {
 public:
  struct Result {
    std::unique_ptr<config::Snapshot> snapshot;  // null when `errors` is not empty
    config::Errors errors;                       // the config cannot be compiled (nothing applied)
    config::Errors problems;                     // objects left out (unresolvable hosts)
    std::chrono::milliseconds took{0};
    std::chrono::microseconds cpu{0};  // CPU time the compile used (its thread's clock)
  };
  using Done = std::function<void(Result)>;

  static constexpr auto kStarvationLimit = std::chrono::milliseconds(1000);

  // `done` runs on `control` (the control thread's io_context).
  SnapshotCompiler(asio::io_context& control, int workers);
  ~SnapshotCompiler();

  // Queues a compile. A request still queued (not started) is replaced: only the newest
  // config matters.
  void submit(config::ConfigSet set, config::HttpLimits limits, Done done);
  // Frees a retired snapshot on the compile thread: freeing 50k routes is work too.
  void dispose(std::unique_ptr<const config::Snapshot> snapshot);
  // Called from the control thread's timer: raises the compile thread's priority when a
  // compile has been waiting or running for longer than kStarvationLimit.
  void check_starvation();

 private:
  struct Request {
    config::ConfigSet set;
    config::HttpLimits limits;
    Done done;
  };
  void run();
  void set_idle_priority(bool idle);

  asio::io_context& control_;
  int workers_;
  config::CompileCache cache_;  // touched by the compile thread only
  std::mutex mutex_;
  std::condition_variable wake_;
  std::optional<Request> pending_;
  std::vector<std::unique_ptr<const config::Snapshot>> retired_;
  bool busy_ = false;
  bool stopping_ = false;
  bool boosted_ = false;
  std::chrono::steady_clock::time_point waiting_since_{};
  std::atomic<pid_t> tid_{0};  // set by the compile thread when it starts
  std::thread thread_;
};

}  // namespace portico
