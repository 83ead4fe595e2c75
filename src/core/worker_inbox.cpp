#include "core/worker_inbox.hpp"

#include <sys/eventfd.h>
#include <unistd.h>

#include <boost/asio/posix/stream_descriptor.hpp>
#include <stdexcept>

#include "core/log.hpp"

namespace portico {

struct WorkerInbox::Wakeup {
  asio::posix::basic_stream_descriptor<Executor> fd;
  explicit Wakeup(Executor executor) : fd(executor) {}
};

WorkerInbox::WorkerInbox(Executor executor) : wakeup_(std::make_unique<Wakeup>(executor)) {
  int fd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (fd < 0) throw std::runtime_error("eventfd failed: cannot create a worker's inbox");
  wakeup_->fd.assign(fd);
}

WorkerInbox::~WorkerInbox() = default;

void WorkerInbox::post(std::function<void()> task) {
  bool wake = false;
  {
    std::lock_guard lock(mutex_);
    queue_.push_back(std::move(task));
    wake = !signalled_;
    signalled_ = true;
  }
  if (wake) {
    // A write to an eventfd is thread-safe and never blocks short of 2^64 - 2 pending wake-ups.
    uint64_t one = 1;
    [[maybe_unused]] ssize_t n = ::write(wakeup_->fd.native_handle(), &one, sizeof(one));
  }
}

Task<> WorkerInbox::run() {
  std::vector<std::function<void()>> batch;
  while (true) {
    auto [ec] = co_await wakeup_->fd.async_wait(asio::posix::descriptor_base::wait_read, await_ec);
    if (ec) co_return;
    uint64_t count = 0;
    [[maybe_unused]] ssize_t n = ::read(wakeup_->fd.native_handle(), &count, sizeof(count));
    {
      std::lock_guard lock(mutex_);
      batch.swap(queue_);
      signalled_ = false;
    }
    for (auto& task : batch) {
      try {
        task();
      } catch (const std::exception& e) {
        log::error(std::string("a task handed to this worker failed: ") + e.what());
      } catch (...) {  // one bad task must not end the worker's thread (std::terminate)
        log::error("a task handed to this worker failed");
      }
    }
    batch.clear();
  }
}

}  // namespace portico
