// Snapshots the workers have let go of, waiting to be freed by a config thread. Pushing is
// lock-free and allocation-free: a worker must never wait on a lock that a lower-priority thread
// (the niced control thread, the idle-class compile thread) may hold while preempted. Taking the
// control thread's io_context lock to post the deletion did that, and stalled workers for up to
// 100 ms on a busy machine.
#pragma once

#include <atomic>
#include <memory>
#include <vector>

#include "config/snapshot.hpp"

namespace portico {

class RetiredSnapshots {
 public:
  ~RetiredSnapshots() { take_all(); }
  // Any thread.
  void push(const config::Snapshot* snapshot) {
    const config::Snapshot* head = head_.load(std::memory_order_relaxed);
    do {
      snapshot->retired_next = head;
    } while (!head_.compare_exchange_weak(head, snapshot, std::memory_order_release,
                                          std::memory_order_relaxed));
  }
  // One consumer thread.
  std::vector<std::unique_ptr<const config::Snapshot>> take_all() {
    std::vector<std::unique_ptr<const config::Snapshot>> out;
    for (const config::Snapshot* s = head_.exchange(nullptr, std::memory_order_acquire); s;) {
      const config::Snapshot* next = s->retired_next;
      out.emplace_back(s);
      s = next;
    }
    return out;
  }

 private:
  std::atomic<const config::Snapshot*> head_{nullptr};
};

}  // namespace portico
