#include "plugins/limit/redis_bucket.hpp"

#include <gtest/gtest.h>

#include "redis_test_server.hpp"

using namespace portico;
using namespace portico::limit;
using portico::testing::RedisTestServer;
using portico::testing::run;

namespace {

// The Redis bucket against the local formula (leak_and_add), state written by hand relative to
// Redis's own clock so the elapsed time is exact.
class RedisBucketTest : public portico::testing::RedisScriptTest {
 protected:
  plugins::BucketDecision take(const std::string& key, int64_t rate, int64_t burst) {
    RedisBucketTake t = run(io_, take_redis_bucket(client_, key, rate, burst));
    EXPECT_TRUE(t.ok()) << t.error;
    return t.decision;
  }
  // A bucket whose last accepted request was `ago_ms` before Redis's now, with `excess`.
  int64_t plant(const std::string& key, int64_t excess, int64_t ago_ms) {
    int64_t last = redis_now_ms() - ago_ms;
    call({"HSET", key, "e", std::to_string(excess), "l", std::to_string(last)});
    return last;
  }
};

}  // namespace

TEST_F(RedisBucketTest, FirstRequestIsFreeThenTheBurstThenRejectionWithoutChange) {
  // rate 1/s, burst 2: three pass at once (delays 0, 1 s, 2 s), the fourth is refused.
  std::vector<int64_t> delays;
  for (int i = 0; i < 3; ++i) {
    auto d = take("b1", 1000, 2000);
    ASSERT_FALSE(d.rejected) << i;
    delays.push_back(d.delay_ms);
  }
  EXPECT_LE(delays[0], 0);
  EXPECT_NEAR(delays[1], 1000, 20);
  EXPECT_NEAR(delays[2], 2000, 40);
  RedisReply before = call({"HGETALL", "b1"});
  EXPECT_TRUE(take("b1", 1000, 2000).rejected);
  RedisReply after = call({"HGETALL", "b1"});
  ASSERT_EQ(before.elements.size(), after.elements.size());
  for (size_t i = 0; i < before.elements.size(); ++i)
    EXPECT_EQ(before.elements[i].str, after.elements[i].str);  // a rejection changes nothing
}

TEST_F(RedisBucketTest, LeaksLikeTheLocalFormula) {
  struct Case {
    int64_t excess, ago_ms, rate, burst;
  } cases[] = {{2000, 500, 1000, 2000},    // half a request leaked: 2500 > 2000, refused
               {2000, 1500, 1000, 2000},   // 1500 leaked: 1500, accepted
               {500, 100000, 1000, 0},     // drained long ago: 0
               {0, 400, 500, 0},           // rate 0.5/s: 0.2 leaked of 1, refused
               {3000, 10, 100000000, 0}};  // a high rate empties it at once
  int n = 0;
  for (const Case& c : cases) {
    std::string key = "parity" + std::to_string(n++);
    int64_t last = plant(key, c.excess, c.ago_ms);
    int64_t now = redis_now_ms();
    plugins::BucketState local{c.excess, last, last};
    plugins::BucketDecision want = plugins::leak_and_add(&local, c.rate, c.burst, now);
    plugins::BucketDecision got = take(key, c.rate, c.burst);
    EXPECT_EQ(got.rejected, want.rejected) << key;
    // (Redis's clock moved on by a millisecond or two between the two readings.)
    EXPECT_NEAR(static_cast<double>(got.excess_milli), static_cast<double>(want.excess_milli),
                static_cast<double>(c.rate) * 5 / 1000 + 1)
        << key;
  }
}

TEST_F(RedisBucketTest, ASlowBucketLivesUntilItHasDrained) {
  ASSERT_FALSE(take("slow", 500, 0).rejected);  // 0.5 request a second
  int64_t ttl = call({"PTTL", "slow"}).integer;
  EXPECT_GE(ttl, 1900);  // the next request weighs a whole one until 2 s have passed
  EXPECT_LE(ttl, 2000);
}

TEST_F(RedisBucketTest, AKeyOfAnotherTypeIsReplaced) {
  call({"SET", "typed", "x"});
  EXPECT_FALSE(take("typed", 1000, 0).rejected);
  EXPECT_EQ(call({"TYPE", "typed"}).str, "hash");
}
