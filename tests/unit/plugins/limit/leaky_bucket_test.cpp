#include "plugins/limit/leaky_bucket.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <random>
#include <thread>
#include <vector>

using namespace portico::plugins;

namespace {

// resty.limit.req's incoming(), written from its definition and independent of the code under
// test: rate and burst are kept in milli-requests (floor(x * 1000)); with a previous state,
// excess = max(prev_excess - rate * |elapsed_ms| / 1000 + 1000, 0), rejected when excess > burst
// (strictly) and then nothing is stored; without one (the first request) excess is 0. The stored
// excess is an unsigned long (truncated), and the delay is excess / rate seconds.
struct Model {
  bool has_state = false;
  uint64_t excess = 0;
  int64_t last_ms = 0;

  struct Out {
    bool rejected;
    double excess;
    double delay_s;
  };
  Out incoming(double rate, double burst, int64_t now_ms) {
    const double rate_m = std::floor(rate * 1000), burst_m = std::floor(burst * 1000);
    double e = 0;
    if (has_state) {
      double elapsed = std::fabs(static_cast<double>(now_ms - last_ms));
      e = std::max(static_cast<double>(excess) - rate_m * elapsed / 1000 + 1000, 0.0);
      if (e > burst_m) return {true, e, 0};
    }
    has_state = true;
    excess = static_cast<uint64_t>(e);
    last_ms = now_ms;
    return {false, e, e / rate_m};
  }
};

struct Row {
  int64_t t;
  bool rejected;
  int64_t excess;
  int64_t delay_ms;
};

void run_table(double rate, double burst, const std::vector<Row>& rows) {
  BucketState state;
  for (size_t i = 0; i < rows.size(); ++i) {
    const Row& row = rows[i];
    BucketState before = state;
    BucketDecision d = leak_and_add(&state, static_cast<int64_t>(rate * 1000),
                                    static_cast<int64_t>(burst * 1000), row.t);
    SCOPED_TRACE("row " + std::to_string(i) + " t=" + std::to_string(row.t));
    EXPECT_EQ(d.rejected, row.rejected);
    EXPECT_EQ(d.excess_milli, row.excess);
    if (row.rejected) {
      EXPECT_EQ(state.excess_milli, before.excess_milli) << "a rejection changed the state";
      EXPECT_EQ(state.last_ms, before.last_ms) << "a rejection changed the state";
    } else {
      EXPECT_EQ(d.delay_ms, row.delay_ms);
    }
  }
}

}  // namespace

// rate 1 r/s, burst 2, computed by hand from the formula.
TEST(LeakyBucket, HandTableRateOneBurstTwo) {
  run_table(1, 2,
            {
                {1'000'000, false, 0, 0},        // first request free
                {1'000'000, false, 1000, 1000},  // same ms: one over the rate, wait 1 s
                {1'000'000, false, 2000, 2000},  // = burst: still accepted (strictly greater)
                {1'000'000, true, 3000, 0},      // past the burst
                {1'000'500, true, 2500, 0},      // 2000 - 500 + 1000, state unchanged
                {1'001'000, false, 2000, 2000},  // 2000 - 1000 + 1000: exactly burst
                {1'001'000, true, 3000, 0},
                {1'004'000, false, 0, 0},      // 2000 - 3000 + 1000 = 0
                {1'003'990, false, 990, 990},  // clock 10 ms back: |elapsed| still drains
            });
}

// burst 0, nodelay-style: one request per 1/rate, no queue at all.
TEST(LeakyBucket, HandTableRateTwoBurstZero) {
  run_table(2, 0,
            {
                {5'000, false, 0, 0},
                {5'100, true, 800, 0},  // 0 - 2*100 + 1000
                {5'499, true, 2, 0},    // 0 - 998 + 1000
                {5'500, false, 0, 0},   // 0 - 1000 + 1000
                {6'250, false, 0, 0},   // clamps at 0
                {6'250, true, 1000, 0},
            });
}

// Many rate/burst pairs and timestamp sequences, against the model.
TEST(LeakyBucket, MatchesRestyFormulaOnGeneratedSequences) {
  struct Pair {
    double rate, burst;
    int step;  // timestamps advance by multiples of this (keeps rate * elapsed whole)
  };
  const Pair pairs[] = {{1, 0, 1},   {1, 3, 1},   {0.5, 2, 2},  {10, 5, 1},
                        {3, 1.5, 1}, {100, 0, 1}, {250, 40, 1}, {0.25, 1, 4}};
  std::mt19937 rng(20240601);
  for (const Pair& p : pairs) {
    for (int seq = 0; seq < 20; ++seq) {
      BucketState state;
      Model model;
      int64_t t = 1'700'000'000'000;
      int max_gap = static_cast<int>(std::max(1.0, 3000 / p.rate));
      for (int i = 0; i < 300; ++i) {
        // Bursts of same-ms requests, small gaps, long gaps, and now and then a step back.
        int kind = static_cast<int>(rng() % 10);
        int64_t gap = kind < 3   ? 0
                      : kind < 8 ? static_cast<int64_t>(rng() % (max_gap / 4 + 1))
                      : kind < 9 ? static_cast<int64_t>(rng() % (max_gap * 2))
                                 : -static_cast<int64_t>(rng() % 20);
        t += gap / p.step * p.step;
        Model::Out want = model.incoming(p.rate, p.burst, t);
        BucketDecision got = leak_and_add(&state, static_cast<int64_t>(p.rate * 1000),
                                          static_cast<int64_t>(p.burst * 1000), t);
        SCOPED_TRACE("rate " + std::to_string(p.rate) + " burst " + std::to_string(p.burst) +
                     " seq " + std::to_string(seq) + " request " + std::to_string(i));
        ASSERT_EQ(got.rejected, want.rejected);
        ASSERT_EQ(got.excess_milli, static_cast<int64_t>(want.excess));
        if (!want.rejected) {
          ASSERT_EQ(got.delay_ms, static_cast<int64_t>(std::floor(want.delay_s * 1000 + 1e-9)));
          ASSERT_EQ(state.last_ms, t);
        }
        ASSERT_EQ(state.excess_milli, static_cast<int64_t>(model.excess));
      }
    }
  }
}

// The highest rate and burst the config takes (10^9), after a pause of years: what leaked is
// capped where the bucket is empty, so rate * elapsed never overflows.
TEST(LeakyBucket, HighRatesAfterLongPausesDoNotOverflow) {
  const int64_t rate = 1'000'000'000'000, burst = 1'000'000'000'000;
  BucketState state;
  EXPECT_FALSE(leak_and_add(&state, rate, burst, 1'000).rejected);
  BucketDecision d = leak_and_add(&state, rate, burst, 1'000);
  EXPECT_EQ(d.excess_milli, 1000);  // one request over, in the same ms
  const int64_t years = 100'000'000'000;
  d = leak_and_add(&state, rate, burst, 1'000 + years);
  EXPECT_FALSE(d.rejected);
  EXPECT_EQ(d.excess_milli, 0);
  EXPECT_EQ(d.delay_ms, 0);
  // The slowest rate (0.001/s: one request per 1000 s) still counts.
  BucketState slow;
  EXPECT_FALSE(leak_and_add(&slow, 1, 0, 5'000).rejected);
  EXPECT_TRUE(leak_and_add(&slow, 1, 0, 5'000 + 999'999).rejected);
  EXPECT_FALSE(leak_and_add(&slow, 1, 0, 5'000 + 1'000'000).rejected);
}

TEST(LeakyBucketTable, FirstRequestOfEveryKeyIsFreeAndKeysAreSeparate) {
  LeakyBucketTable table;
  const int64_t now = 1'700'000'000'000;
  for (std::string key : {"a", "b", "c"}) {
    BucketDecision d = table.take(key, 1000, 0, now);
    EXPECT_FALSE(d.rejected) << key;
    EXPECT_EQ(d.delay_ms, 0);
  }
  EXPECT_TRUE(table.take("a", 1000, 0, now).rejected);
  EXPECT_FALSE(table.take("d", 1000, 0, now).rejected);
  EXPECT_FALSE(table.take("a", 1000, 0, now + 1000).rejected);
}

TEST(LeakyBucketTable, FollowsTheFormulaPerKey) {
  LeakyBucketTable table;
  Model a, b;
  const int64_t t0 = 1'700'000'000'000;
  const int64_t times[] = {0, 0, 0, 100, 250, 250, 900, 2000, 2001, 2001, 2001, 5000};
  for (int64_t dt : times) {
    for (auto* m : {&a, &b}) {
      const char* key = m == &a ? "a" : "b";
      double rate = m == &a ? 2 : 5, burst = m == &a ? 1 : 3;
      Model::Out want = m->incoming(rate, burst, t0 + dt);
      BucketDecision got = table.take(key, static_cast<int64_t>(rate * 1000),
                                      static_cast<int64_t>(burst * 1000), t0 + dt);
      EXPECT_EQ(got.rejected, want.rejected) << key << " at +" << dt;
      EXPECT_EQ(got.excess_milli, static_cast<int64_t>(want.excess)) << key << " at +" << dt;
    }
  }
}

TEST(LeakyBucketTable, FloodOfDistinctKeysStaysUnderMaxKeys) {
  LeakyBucketTable table(320);
  const int64_t t0 = 1'700'000'000'000;
  for (int i = 0; i < 20000; ++i) {
    // Same millisecond (nothing drains) and later ones (old keys drain).
    table.take("k" + std::to_string(i), 1000, 5000, t0 + i / 100);
    ASSERT_LE(table.size(), 320u) << "after " << i + 1 << " keys";
  }
  EXPECT_GT(table.size(), 0u);
}

TEST(LeakyBucketTable, DrainedKeysGoBeforeOnesStillHoldingExcess) {
  LeakyBucketTable table(320);  // 10 keys per shard
  const int64_t t0 = 1'700'000'000'000;
  for (int i = 0; i < 1000; ++i) table.take("old" + std::to_string(i), 1000, 5000, t0);
  ASSERT_LE(table.size(), 320u);
  // A key with one request of excess, while every shard is full of (not yet drained) keys.
  EXPECT_EQ(table.take("live", 1000, 5000, t0 + 500).excess_milli, 0);
  EXPECT_EQ(table.take("live", 1000, 5000, t0 + 500).excess_milli, 1000);
  // 2 s later the "old" keys are drained (0 - 2000 <= -1000), "live" is not (1000 - 1500).
  for (int i = 0; i < 100; ++i) table.take("new" + std::to_string(i), 1000, 5000, t0 + 2000);
  BucketDecision d = table.take("live", 1000, 5000, t0 + 2000);
  EXPECT_FALSE(d.rejected);
  EXPECT_EQ(d.excess_milli, 500) << "the live key's state was evicted";
  EXPECT_EQ(d.delay_ms, 500);
  EXPECT_LE(table.size(), 320u);
}

TEST(LeakyBucketTable, ThreadsOnOneKeyAddUp) {
  LeakyBucketTable table;
  const int64_t now = 1'700'000'000'000;
  constexpr int kThreads = 8, kEach = 500;
  std::atomic<int> accepted{0};
  std::vector<std::thread> threads;
  // burst 99: exactly 100 requests in one millisecond (the free one and 99 of excess).
  for (int i = 0; i < kThreads; ++i)
    threads.emplace_back([&] {
      for (int j = 0; j < kEach; ++j)
        if (!table.take("shared", 1000, 99'000, now).rejected) accepted.fetch_add(1);
    });
  for (auto& t : threads) t.join();
  EXPECT_EQ(accepted.load(), 100);

  // With room for all of them, the excess is the sum of every thread's requests.
  LeakyBucketTable big;
  threads.clear();
  for (int i = 0; i < kThreads; ++i)
    threads.emplace_back([&] {
      for (int j = 0; j < kEach; ++j) big.take("shared", 1000, 1'000'000'000, now);
    });
  for (auto& t : threads) t.join();
  EXPECT_EQ(big.take("shared", 1000, 1'000'000'000, now).excess_milli,
            int64_t{kThreads} * kEach * 1000);
}

TEST(LeakyBucketTable, ScopesShareOneTableWhileHeld) {
  auto a = bucket_table("routes/leaky-test#limit-req");
  auto again = bucket_table("routes/leaky-test#limit-req");
  auto other = bucket_table("routes/leaky-other#limit-req");
  EXPECT_EQ(a.get(), again.get());
  EXPECT_NE(a.get(), other.get());
  const int64_t now = 1'700'000'000'000;
  EXPECT_FALSE(a->take("k", 1000, 0, now).rejected);
  EXPECT_TRUE(again->take("k", 1000, 0, now).rejected);
  EXPECT_FALSE(other->take("k", 1000, 0, now).rejected);
}

// A key that keeps being rejected is in use: a flood of fresh keys must evict others first,
// or the rejected client would get a "first request" free pass after the flood.
TEST(LeakyBucketTable, KeysBeingRejectedAreNotTheFirstEvicted) {
  LeakyBucketTable table(64);  // two keys per shard
  const int64_t t0 = 1'700'000'000'000;
  EXPECT_FALSE(table.take("abuser", 1000, 0, t0).rejected);  // 1 r/s, no burst
  for (int i = 1; i <= 900; ++i) {                           // 900 ms: the abuser never drains
    EXPECT_TRUE(table.take("abuser", 1000, 0, t0 + i).rejected) << i;  // rejected, seen again
    table.take("flood" + std::to_string(i), 1000, 0, t0 + i);          // a fresh key each time
  }
}
