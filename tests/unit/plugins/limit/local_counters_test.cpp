#include "plugins/limit/local_counters.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <random>
#include <thread>

using namespace portico::limit;

namespace {
constexpr auto kFixed = WindowType::fixed;
constexpr auto kSliding = WindowType::sliding;
}  // namespace

TEST(WindowSemantics, SlidingEstimateWeighsThePreviousWindowByWhatIsLeftOfIt) {
  // 10 in the previous window, 250 ms into a 1000 ms window: 3/4 of them still count -> 7.
  TakeResult r = sliding_decision(10, 0, 10, 1000, 250);
  EXPECT_TRUE(r.allowed);
  EXPECT_EQ(r.remaining, 2);  // 10 - 7 - this one
  EXPECT_EQ(r.reset_ms, 750);
  EXPECT_TRUE(sliding_decision(10, 2, 10, 1000, 250).allowed);
  EXPECT_FALSE(sliding_decision(10, 3, 10, 1000, 250).allowed);
}

TEST(WindowSemantics, SlidingRejectionSaysWhenTheNextRequestFits) {
  // current 3, previous 10: allowed again once floor(10 * (1000 - e) / 1000) <= 6, e >= 301.
  TakeResult r = sliding_decision(10, 3, 10, 1000, 250);
  EXPECT_FALSE(r.allowed);
  EXPECT_EQ(r.remaining, 0);
  EXPECT_EQ(r.reset_ms, 51);
  EXPECT_FALSE(sliding_decision(10, 3, 10, 1000, 300).allowed);
  EXPECT_TRUE(sliding_decision(10, 3, 10, 1000, 301).allowed);
  // The current window alone is full: into the next one, where 10 of 10 weigh until e >= 1.
  r = sliding_decision(0, 10, 10, 1000, 400);
  EXPECT_FALSE(r.allowed);
  EXPECT_EQ(r.reset_ms, 600 + 1);
  EXPECT_FALSE(sliding_decision(10, 0, 10, 1000, 0).allowed);
  EXPECT_TRUE(sliding_decision(10, 0, 10, 1000, 1).allowed);
  EXPECT_EQ(r.reset_seconds(), 1);
}

TEST(WindowSemantics, KeysNameTheScopeNeverAVersion) {
  EXPECT_EQ(limit_count_key("routes/r1", "10.0.0.1"), "portico:limit-count:routes/r1:10.0.0.1");
  EXPECT_EQ(limit_count_key("my-group", ""), "portico:limit-count:my-group:");
}

TEST(LocalCounters, FixedWindowOpensAtTheFirstRequestAndAllowsExactlyTheLimit) {
  LocalCounters c;
  TakeResult r = c.take("k", 3, 1000, kFixed, 500);
  EXPECT_TRUE(r.allowed);
  EXPECT_EQ(r.remaining, 2);
  EXPECT_EQ(r.reset_ms, 1000);
  EXPECT_EQ(c.take("k", 3, 1000, kFixed, 600).remaining, 1);
  r = c.take("k", 3, 1000, kFixed, 700);
  EXPECT_TRUE(r.allowed);
  EXPECT_EQ(r.remaining, 0);
  EXPECT_EQ(r.reset_ms, 800);
  r = c.take("k", 3, 1000, kFixed, 800);
  EXPECT_FALSE(r.allowed);
  EXPECT_EQ(r.remaining, 0);
  EXPECT_EQ(r.reset_ms, 700);
  EXPECT_EQ(r.reset_seconds(), 1);
  EXPECT_FALSE(c.take("k", 3, 1000, kFixed, 1499).allowed);
  // The window opened at 500 closes at 1500; the next opens with the next request.
  r = c.take("k", 3, 1000, kFixed, 1500);
  EXPECT_TRUE(r.allowed);
  EXPECT_EQ(r.remaining, 2);
  EXPECT_EQ(r.reset_ms, 1000);
}

TEST(LocalCounters, RejectedRequestsDoNotConsumeQuota) {
  LocalCounters c;
  for (int i = 0; i < 2; ++i) EXPECT_TRUE(c.take("k", 2, 1000, kFixed, 0).allowed);
  for (int t = 1; t < 1000; ++t) EXPECT_FALSE(c.take("k", 2, 1000, kFixed, t).allowed);
  EXPECT_TRUE(c.take("k", 2, 1000, kFixed, 1000).allowed);
  EXPECT_TRUE(c.take("k", 2, 1000, kFixed, 1000).allowed);

  // Sliding: a client hammering through a whole window is not starved in the next one.
  for (int i = 0; i < 10; ++i) EXPECT_TRUE(c.take("s", 10, 1000, kSliding, 5000).allowed);
  for (int t = 5001; t < 6000; ++t) EXPECT_FALSE(c.take("s", 10, 1000, kSliding, t).allowed);
  EXPECT_TRUE(c.take("s", 10, 1000, kSliding, 6100).allowed);  // 10 * 0.9 = 9 weigh: 1 fits
  EXPECT_FALSE(c.take("s", 10, 1000, kSliding, 6100).allowed);
}

TEST(LocalCounters, KeysCountSeparately) {
  LocalCounters c;
  EXPECT_TRUE(c.take("a", 1, 1000, kFixed, 0).allowed);
  EXPECT_FALSE(c.take("a", 1, 1000, kFixed, 1).allowed);
  EXPECT_TRUE(c.take("b", 1, 1000, kFixed, 1).allowed);
}

TEST(LocalCounters, SlidingWindowWeighsThePreviousWindow) {
  LocalCounters c;
  // Windows are aligned on multiples of 1000 ms. Ten requests in [0, 1000).
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(c.take("k", 10, 1000, kSliding, 100 + i).allowed);
  EXPECT_FALSE(c.take("k", 10, 1000, kSliding, 999).allowed);
  // At 1250, 7 of the previous 10 still weigh: 3 more fit.
  for (int i = 0; i < 3; ++i) {
    TakeResult r = c.take("k", 10, 1000, kSliding, 1250);
    ASSERT_TRUE(r.allowed) << i;
    EXPECT_EQ(r.remaining, 2 - i);
    EXPECT_EQ(r.reset_ms, 750);
  }
  TakeResult r = c.take("k", 10, 1000, kSliding, 1250);
  EXPECT_FALSE(r.allowed);
  EXPECT_EQ(r.reset_ms, 51);  // floor(10 * 699 / 1000) = 6: at 1301
  EXPECT_FALSE(c.take("k", 10, 1000, kSliding, 1300).allowed);
  EXPECT_TRUE(c.take("k", 10, 1000, kSliding, 1301).allowed);
  // Two windows later nothing of [0, 1000) or [1000, 2000) weighs... except [2000, 3000)'s
  // previous, [1000, 2000), which held 4.
  r = c.take("k", 10, 1000, kSliding, 2500);
  EXPECT_TRUE(r.allowed);
  EXPECT_EQ(r.remaining, 10 - 2 - 1);         // floor(4 * 0.5) = 2
  r = c.take("k", 10, 1000, kSliding, 4000);  // [2000, 3000) is two windows back by now
  EXPECT_EQ(r.remaining, 9);
}

TEST(LocalCounters, ChangingTheWindowStartsAfresh) {
  LocalCounters c;
  EXPECT_TRUE(c.take("k", 1, 1000, kFixed, 0).allowed);
  EXPECT_FALSE(c.take("k", 1, 1000, kFixed, 1).allowed);
  EXPECT_TRUE(c.take("k", 1, 2000, kFixed, 2).allowed);
  EXPECT_TRUE(c.take("k", 1, 2000, kSliding, 3).allowed);
}

TEST(LocalCounters, AFloodOfRandomKeysStaysWithinTheCap) {
  LocalCounters c(64 * 10);
  std::mt19937_64 rng(42);
  for (int i = 0; i < 100000; ++i)
    c.take(std::to_string(rng()), 5, 60000, kFixed, 1000);  // none expire during the flood
  EXPECT_LE(c.size(), c.max_keys());
  EXPECT_GE(c.size(), c.max_keys() / 2);  // the cap is per stripe; the hash spreads the keys
}

TEST(LocalCounters, ARecentlyUsedKeySurvivesAFlood) {
  LocalCounters c(64 * 4);
  constexpr int64_t kHigh = 1'000'000;
  ASSERT_TRUE(c.take("hot", kHigh, 60000, kFixed, 0).allowed);
  std::mt19937_64 rng(7);
  for (int i = 0; i < 20000; ++i) {
    c.take(std::to_string(rng()), 5, 60000, kFixed, 10);
    // Its stripe sees one new key in 64: touched every 10, it is never the least recent.
    if (i % 10 == 0) {
      ASSERT_TRUE(c.take("hot", kHigh, 60000, kFixed, 10).allowed);
    }
  }
  // 1 + 2000 taken so far: a limit of 2002 leaves exactly one.
  EXPECT_TRUE(c.take("hot", 2002, 60000, kFixed, 20).allowed);
  EXPECT_FALSE(c.take("hot", 2002, 60000, kFixed, 20).allowed);
}

TEST(LocalCounters, ExpiredKeysAreDroppedAsNewKeysArrive) {
  LocalCounters c;  // far from the cap
  for (int i = 0; i < 1000; ++i) c.take("old" + std::to_string(i), 5, 1000, kFixed, 0);
  for (int i = 0; i < 1000; ++i) c.take("sliding" + std::to_string(i), 5, 1000, kSliding, 10);
  EXPECT_EQ(c.size(), 2000u);
  // Long after: each take drops up to 8 expired keys from its stripe's LRU end.
  for (int i = 0; i < 1000; ++i) c.take("new" + std::to_string(i), 5, 1000, kFixed, 10000);
  EXPECT_EQ(c.size(), 1000u);
}

TEST(LocalCounters, WorkersShareOneExactCount) {
  LocalCounters c;
  constexpr int kThreads = 4;
  constexpr int kPerThread = 2000;
  std::atomic<int> allowed{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < kPerThread; ++i) {
        if (c.take("shared", 2500, 60000, kFixed, 1).allowed) ++allowed;
        c.take("other" + std::to_string(i % 50), 100, 60000, kSliding, 1);
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(allowed.load(), 2500);
}

TEST(LocalCounters, ProcessWideIsOneInstance) {
  EXPECT_EQ(&LocalCounters::process_wide(), &LocalCounters::process_wide());
}
