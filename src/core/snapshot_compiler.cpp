#include "core/snapshot_compiler.hpp"

#include <sched.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <boost/asio/post.hpp>

#include "core/log.hpp"
#include "core/private_arena.hpp"

namespace portico {

namespace {
constexpr int kBoostedNice = 10;  // the control thread's niceness

std::chrono::microseconds thread_cpu_time() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return std::chrono::microseconds(int64_t{ts.tv_sec} * 1000000 + ts.tv_nsec / 1000);
}
}  // namespace

SnapshotCompiler::SnapshotCompiler(asio::io_context& control, int workers)
    : control_(control), workers_(workers) {
  thread_ = std::thread([this] { run(); });
}

SnapshotCompiler::~SnapshotCompiler() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_one();
  thread_.join();
}

void SnapshotCompiler::set_idle_priority(bool idle) {
  pid_t tid = tid_.load();
  if (tid == 0) return;  // not started yet: 0 would mean the calling thread
  sched_param param{};
  if (idle) {
    if (sched_setscheduler(tid, SCHED_IDLE, &param) != 0)
      log::warn("could not put the compile thread in the idle scheduling class");
  } else {
    sched_setscheduler(tid, SCHED_OTHER, &param);
    setpriority(PRIO_PROCESS, static_cast<id_t>(tid), kBoostedNice);
  }
}

void SnapshotCompiler::submit(config::ConfigSet set, config::HttpLimits limits, Done done) {
  {
    std::lock_guard lock(mutex_);
    if (!pending_ && !busy_) waiting_since_ = std::chrono::steady_clock::now();
    pending_ = Request{std::move(set), limits, std::move(done)};
  }
  wake_.notify_one();
}

void SnapshotCompiler::dispose(std::unique_ptr<const config::Snapshot> snapshot) {
  {
    std::lock_guard lock(mutex_);
    retired_.push_back(std::move(snapshot));
  }
  wake_.notify_one();
}

void SnapshotCompiler::check_starvation() {
  std::lock_guard lock(mutex_);
  if (boosted_ || (!pending_ && !busy_)) return;
  if (std::chrono::steady_clock::now() - waiting_since_ < kStarvationLimit) return;
  boosted_ = true;
  set_idle_priority(false);
  log::warn("config compile starved by a busy machine for over 1 s: running it at normal priority");
}

void SnapshotCompiler::run() {
  tid_ = ::gettid();
  use_private_arena("compile thread");
  set_idle_priority(true);
  while (true) {
    Request req;
    std::vector<std::unique_ptr<const config::Snapshot>> retired;
    {
      std::unique_lock lock(mutex_);
      wake_.wait(lock, [this] { return stopping_ || pending_ || !retired_.empty(); });
      if (stopping_) return;
      retired.swap(retired_);
      if (!pending_) {
        lock.unlock();
        retired.clear();
        continue;
      }
      req = std::move(*pending_);
      pending_.reset();
      busy_ = true;
    }
    retired.clear();
    Result result;
    auto started = std::chrono::steady_clock::now();
    auto cpu_started = thread_cpu_time();
    try {
      result.snapshot = config::build_snapshot(req.set, req.limits, workers_, result.errors,
                                               &result.problems, &cache_);
    } catch (const std::exception& e) {  // a bug: this config is refused, the running one stays
      result.errors.add("", std::string("the config could not be compiled: ") + e.what());
    }
    if (!result.errors.empty()) result.snapshot.reset();
    result.took = std::chrono::duration_cast<std::chrono::milliseconds>(
        std::chrono::steady_clock::now() - started);
    result.cpu = thread_cpu_time() - cpu_started;
    // The objects of this set may be the last references to replaced routes: dropping them here
    // keeps that work off the control thread too.
    req.set = {};
    {
      std::lock_guard lock(mutex_);
      busy_ = false;
      if (pending_) waiting_since_ = std::chrono::steady_clock::now();
      if (boosted_) {
        boosted_ = false;
        set_idle_priority(true);
      }
    }
    asio::post(control_,
               [done = std::move(req.done), r = std::make_shared<Result>(std::move(result))] {
                 done(std::move(*r));
               });
  }
}

}  // namespace portico
