// Work handed to a worker by other threads. The workers' io_contexts run without locking (see
// worker.cpp), so Asio's own post() must never be called on one from another thread: tasks go
// through a locked queue instead, and an eventfd wakes the owning worker, which runs them on its
// own thread. Used where a request on one worker needs state that lives on another (tlv-bridge's
// long-polling sessions).
#pragma once

#include <functional>
#include <memory>
#include <mutex>
#include <vector>

#include "core/asio.hpp"

namespace portico {

class WorkerInbox {
 public:
  explicit WorkerInbox(Executor executor);
  ~WorkerInbox();
  WorkerInbox(const WorkerInbox&) = delete;
  WorkerInbox& operator=(const WorkerInbox&) = delete;

  // Thread-safe. `task` runs on the worker's thread; tasks still queued when the worker stops
  // are destroyed without running (on whichever thread destroys the inbox), so they must own
  // nothing that belongs to a worker's io_context.
  void post(std::function<void()> task);
  // The worker's side: runs posted tasks until the worker's io_context stops.
  Task<> run();

 private:
  struct Wakeup;
  std::unique_ptr<Wakeup> wakeup_;  // the eventfd, as an Asio descriptor of the worker
  std::mutex mutex_;
  std::vector<std::function<void()>> queue_;
  bool signalled_ = false;  // a wake-up is pending: later posts need not write the eventfd
};

}  // namespace portico
