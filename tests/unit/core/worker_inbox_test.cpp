#include "core/worker_inbox.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <thread>
#include <vector>

namespace portico {
namespace {

// An io_context run as the workers run theirs: one thread, no Asio locking.
struct LockFreeLoop {
  asio::io_context io{BOOST_ASIO_CONCURRENCY_HINT_UNSAFE};
  WorkerInbox inbox{io.get_executor()};
};

TEST(WorkerInbox, TasksPostedFromOtherThreadsRunOnTheLoopThreadInOrderPerPoster) {
  LockFreeLoop loop;
  asio::co_spawn(loop.io, loop.inbox.run(), asio::detached);
  constexpr int kPosters = 4, kTasks = 2000;
  std::vector<std::vector<int>> seen(kPosters);
  std::atomic<int> done{0};
  std::thread::id loop_thread;
  std::atomic<bool> wrong_thread{false};
  std::thread runner([&] {
    loop_thread = std::this_thread::get_id();
    auto guard = asio::make_work_guard(loop.io);
    while (done.load() < kPosters * kTasks) loop.io.run_one();
  });
  std::vector<std::thread> posters;
  for (int p = 0; p < kPosters; ++p)
    posters.emplace_back([&, p] {
      for (int i = 0; i < kTasks; ++i)
        loop.inbox.post([&, p, i] {
          if (std::this_thread::get_id() != loop_thread) wrong_thread = true;
          seen[static_cast<size_t>(p)].push_back(i);  // only the loop thread touches seen
          done.fetch_add(1);
        });
    });
  for (auto& t : posters) t.join();
  runner.join();
  EXPECT_FALSE(wrong_thread.load());
  for (const auto& one : seen) {
    ASSERT_EQ(one.size(), static_cast<size_t>(kTasks));
    for (int i = 0; i < kTasks; ++i) ASSERT_EQ(one[static_cast<size_t>(i)], i);
  }
}

TEST(WorkerInbox, ATaskThatThrowsDoesNotStopTheOthers) {
  LockFreeLoop loop;
  asio::co_spawn(loop.io, loop.inbox.run(), asio::detached);
  int ran = 0;
  loop.inbox.post([] { throw std::runtime_error("boom"); });
  loop.inbox.post([&] { ++ran; });
  while (ran == 0) loop.io.run_one();
  EXPECT_EQ(ran, 1);
}

TEST(WorkerInbox, TasksLeftWhenTheLoopStopsAreDestroyedNotRun) {
  auto owned = std::make_shared<int>(0);
  {
    LockFreeLoop loop;
    loop.inbox.post([owned] { ++*owned; });
    EXPECT_EQ(owned.use_count(), 2);
  }
  EXPECT_EQ(*owned, 0);
  EXPECT_EQ(owned.use_count(), 1);
}

}  // namespace
}  // namespace portico
