#include "plugins/limit/redis_counters.hpp"

#include <gtest/gtest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <set>
#include <thread>

#include "redis_test_server.hpp"

using namespace portico;
using namespace portico::limit;
using portico::testing::RedisTestServer;
using portico::testing::run;

namespace {

using Args = std::vector<std::string>;

class RedisCountersTest : public portico::testing::RedisScriptTest {
 protected:
  RedisSettings settings() { return settings_for(server_.port()); }
  TakeResult take(const std::string& key, int64_t limit, int64_t window_ms, WindowType type) {
    RedisTake t = run(io_, take_redis(client_, key, limit, window_ms, type));
    EXPECT_TRUE(t.ok()) << t.error;
    return t.take;
  }
};

}  // namespace

TEST_F(RedisCountersTest, FixedWindowAllowsTheLimitThenRejectsWithoutCounting) {
  const std::string key = limit_count_key("routes/r1", "1.2.3.4");
  for (int i = 0; i < 3; ++i) {
    TakeResult r = take(key, 3, 10000, WindowType::fixed);
    ASSERT_TRUE(r.allowed) << i;
    EXPECT_EQ(r.remaining, 2 - i);
    EXPECT_GT(r.reset_ms, 9000);
    EXPECT_LE(r.reset_ms, 10000);
  }
  for (int i = 0; i < 5; ++i) {
    TakeResult r = take(key, 3, 10000, WindowType::fixed);
    EXPECT_FALSE(r.allowed);
    EXPECT_EQ(r.remaining, 0);
    EXPECT_EQ(r.reset_seconds(), 10);
  }
  EXPECT_EQ(call({"GET", key}).str, "3");  // rejections were not counted
  const int64_t ttl = call({"PTTL", key}).integer;
  EXPECT_GT(ttl, 9000);
  EXPECT_LE(ttl, 10000);

  // The window ends with the key; the next request opens a new one.
  call({"PEXPIRE", key, "1"});
  std::this_thread::sleep_for(std::chrono::milliseconds(5));
  TakeResult r = take(key, 3, 10000, WindowType::fixed);
  EXPECT_TRUE(r.allowed);
  EXPECT_EQ(r.remaining, 2);
}

TEST_F(RedisCountersTest, FixedWindowRejectionSaysWhenToRetry) {
  const std::string key = limit_count_key("routes/r1", "retry");
  ASSERT_TRUE(take(key, 1, 300, WindowType::fixed).allowed);
  TakeResult r = take(key, 1, 300, WindowType::fixed);
  ASSERT_FALSE(r.allowed);
  EXPECT_GT(r.reset_ms, 0);
  std::this_thread::sleep_for(std::chrono::milliseconds(r.reset_ms + 10));
  EXPECT_TRUE(take(key, 1, 300, WindowType::fixed).allowed);
}

TEST_F(RedisCountersTest, AKeyWithoutTtlNeverCountsForever) {
  const std::string key = limit_count_key("g", "stale");
  call({"SET", key, "500"});  // e.g. left behind by hand, no TTL
  TakeResult r = take(key, 10, 5000, WindowType::fixed);
  EXPECT_TRUE(r.allowed);
  EXPECT_EQ(r.remaining, 9);
  EXPECT_EQ(call({"GET", key}).str, "1");
  EXPECT_GT(call({"PTTL", key}).integer, 0);
}

TEST_F(RedisCountersTest, SlidingWindowAllowsTheLimitAndSaysWhenTheNextFits) {
  const std::string key = limit_count_key("routes/r2", "client");
  int allowed = 0;
  TakeResult r;
  for (int i = 0; i < 20; ++i) {
    r = take(key, 5, 1000, WindowType::sliding);
    if (!r.allowed) break;
    ++allowed;
  }
  // Nothing weighs from the previous window, unless the burst straddled a boundary.
  EXPECT_GE(allowed, 5);
  ASSERT_FALSE(r.allowed);
  EXPECT_GT(r.reset_ms, 0);
  EXPECT_LE(r.reset_ms, 2000);
  EXPECT_EQ(call({"TYPE", key}).str, "hash");
  const int64_t ttl = call({"PTTL", key}).integer;
  EXPECT_GT(ttl, 0);
  EXPECT_LE(ttl, 2000);
  // The hint is exact (Redis's clock, ms): after it, one more request fits.
  std::this_thread::sleep_for(std::chrono::milliseconds(r.reset_ms + 5));
  EXPECT_TRUE(take(key, 5, 1000, WindowType::sliding).allowed);
}

TEST_F(RedisCountersTest, SlidingWindowWeighsThePreviousWindowLikeTheLocalCounter) {
  constexpr int64_t kWindow = 60000;
  constexpr int64_t kLimit = 100;
  for (int attempt = 0; attempt < 3; ++attempt) {
    const std::string key = limit_count_key("routes/r3", "k" + std::to_string(attempt));
    const int64_t before = redis_now_ms();
    const int64_t index = before / kWindow;
    // The previous window held the whole limit; this one nothing yet.
    call({"HSET", key, "w", std::to_string(index - 1), "c", std::to_string(kLimit), "p", "0"});
    call({"PEXPIRE", key, "120000"});
    int allowed = 0;
    while (take(key, kLimit, kWindow, WindowType::sliding).allowed) ++allowed;
    const int64_t after = redis_now_ms();
    if (after / kWindow != index) continue;  // crossed a boundary: measure again
    // What the local counter allows at the same instants, state for state.
    auto expected_at = [&](int64_t now) {
      int64_t n = 0;
      while (sliding_decision(kLimit, n, kLimit, kWindow, now - index * kWindow).allowed) ++n;
      return n;
    };
    EXPECT_GE(allowed, expected_at(before));
    EXPECT_LE(allowed, expected_at(after));
    RedisReply state = call({"HMGET", key, "w", "c", "p"});
    EXPECT_EQ(state.elements[0].str, std::to_string(index));
    EXPECT_EQ(state.elements[1].str, std::to_string(allowed));  // rejections not counted
    EXPECT_EQ(state.elements[2].str, std::to_string(kLimit));
    return;
  }
  FAIL() << "every attempt crossed a window boundary";
}

TEST_F(RedisCountersTest, SlidingWindowForgetsWindowsTwoBack) {
  constexpr int64_t kWindow = 60000;
  const std::string key = limit_count_key("routes/r4", "k");
  const int64_t index = redis_now_ms() / kWindow;
  call({"HSET", key, "w", std::to_string(index - 2), "c", "100", "p", "100"});
  call({"PEXPIRE", key, "120000"});
  TakeResult r = take(key, 100, kWindow, WindowType::sliding);
  EXPECT_TRUE(r.allowed);
  EXPECT_EQ(r.remaining, 99);
}

TEST_F(RedisCountersTest, SwitchingWindowTypeRestartsTheCountInsteadOfFailing) {
  const std::string key = limit_count_key("routes/r5", "k");
  ASSERT_TRUE(take(key, 1, 10000, WindowType::fixed).allowed);
  ASSERT_FALSE(take(key, 1, 10000, WindowType::fixed).allowed);
  EXPECT_TRUE(take(key, 1, 10000, WindowType::sliding).allowed);  // no WRONGTYPE
  EXPECT_TRUE(take(key, 1, 10000, WindowType::fixed).allowed);
}

TEST_F(RedisCountersTest, ScriptsSurviveAScriptFlush) {
  const std::string fixed = limit_count_key("routes/r6", "fixed");
  const std::string sliding = limit_count_key("routes/r6", "sliding");
  ASSERT_TRUE(take(fixed, 10, 60000, WindowType::fixed).allowed);
  ASSERT_TRUE(take(sliding, 10, 60000, WindowType::sliding).allowed);
  call({"SCRIPT", "FLUSH"});
  // Each ran exactly once more (EVALSHA refused, then EVAL).
  EXPECT_EQ(take(fixed, 10, 60000, WindowType::fixed).remaining, 8);
  EXPECT_EQ(call({"GET", fixed}).str, "2");
  TakeResult r = take(sliding, 10, 60000, WindowType::sliding);
  EXPECT_TRUE(r.allowed);
  RedisReply state = call({"HMGET", sliding, "c", "p"});
  // Two requests in all (one window each if a boundary fell between them).
  EXPECT_EQ(std::stoll(state.elements[0].str) + std::stoll(state.elements[1].str), 2);
}

TEST_F(RedisCountersTest, RedisDownIsAnErrorValue) {
  server_.stop();
  RedisTake t =
      run(io_, take_redis(client_, "portico:limit-count:x:y", 10, 1000, WindowType::fixed));
  EXPECT_FALSE(t.ok());
  EXPECT_EQ(t.error.rfind("redis 127.0.0.1:", 0), 0u) << t.error;
}

// Two "nodes" (threads, each with its own io_context and connection) hammer one key with
// overlapping requests: exactly the limit gets through, across both.
TEST_F(RedisCountersTest, TwoNodesShareOneExactCount) {
  for (WindowType type : {WindowType::fixed, WindowType::sliding}) {
    const std::string key = limit_count_key("shared-group", type == WindowType::fixed ? "f" : "s");
    constexpr int kPerNode = 150;
    std::atomic<int> allowed{0};
    std::atomic<int> errors{0};
    std::mutex remaining_mutex;
    std::multiset<int64_t> remaining;
    auto node = [&] {
      asio::io_context io{1};
      RedisClient client(io.get_executor(), settings());
      int done = 0;
      for (int i = 0; i < kPerNode; ++i) {
        asio::co_spawn(
            io.get_executor(),
            [&]() -> Task<> {
              RedisTake t = co_await take_redis(client, key, 100, 60000, type);
              if (!t.ok()) {
                ++errors;
              } else if (t.take.allowed) {
                ++allowed;
                std::lock_guard lock(remaining_mutex);
                remaining.insert(t.take.remaining);
              }
              if (++done == kPerNode) io.stop();
            },
            asio::detached);
      }
      io.run();
    };
    std::thread a(node), b(node);
    a.join();
    b.join();
    EXPECT_EQ(errors.load(), 0);
    EXPECT_EQ(allowed.load(), 100);
    // Each allowed request saw its own place in the count: remaining 99..0, once each.
    EXPECT_EQ(std::set<int64_t>(remaining.begin(), remaining.end()).size(), 100u);
  }
}
