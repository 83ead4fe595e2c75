#include "plugins/limit/breaker_table.hpp"

#include <gtest/gtest.h>

namespace portico::plugins {
namespace {

constexpr int64_t kS = 1000;  // one second in the table's milliseconds

TEST(BreakerFormula, TripsEveryFailuresAndDoublesTheBreakUpToTheMaximum) {
  BreakerRule rule{2, 2, 10};
  BreakerState s;
  int64_t t = 1'000'000;
  count_unhealthy(s, rule, t);
  EXPECT_FALSE(breaker_open(s, rule, t));  // one failure of two
  count_unhealthy(s, rule, t);
  EXPECT_TRUE(breaker_open(s, rule, t));  // first trip: 2 s
  EXPECT_TRUE(breaker_open(s, rule, t + 2 * kS - 1));
  EXPECT_FALSE(breaker_open(s, rule, t + 2 * kS));
  // Closed again: the next failure alone does not trip (failures need not be in a row, and
  // count towards the next multiple).
  t += 3 * kS;
  count_unhealthy(s, rule, t);
  EXPECT_FALSE(breaker_open(s, rule, t));
  count_unhealthy(s, rule, t);  // second trip: 4 s
  EXPECT_TRUE(breaker_open(s, rule, t + 4 * kS - 1));
  EXPECT_FALSE(breaker_open(s, rule, t + 4 * kS));
  for (int trip = 3; trip <= 40; ++trip) {  // 8 s, then capped at 10 s, even past 2^30
    t += 20 * kS;
    count_unhealthy(s, rule, t);
    count_unhealthy(s, rule, t);
    int64_t expected = trip == 3 ? 8 : 10;
    EXPECT_TRUE(breaker_open(s, rule, t + expected * kS - 1)) << trip;
    EXPECT_FALSE(breaker_open(s, rule, t + expected * kS)) << trip;
  }
}

TEST(BreakerFormula, HealthyAnswersInARowForgetTheFailures) {
  BreakerRule rule{3, 2, 300};
  BreakerState s;
  count_unhealthy(s, rule, 1);
  count_unhealthy(s, rule, 2);
  EXPECT_FALSE(count_healthy(s, rule, 3));
  count_unhealthy(s, rule, 4);  // a failure between: the healthy run starts again
  EXPECT_TRUE(breaker_open(s, rule, 5));
  EXPECT_FALSE(count_healthy(s, rule, 6));
  EXPECT_TRUE(count_healthy(s, rule, 7));
  EXPECT_EQ(s.unhealthy, 0);
  EXPECT_FALSE(breaker_open(s, rule, 8));
}

TEST(BreakerTable, KeysAreIndependentAndForgottenWhenHealthy) {
  BreakerTable table;
  BreakerRule rule{1, 1, 300};
  EXPECT_FALSE(table.open("h/a", rule, 10));
  table.healthy("h/a", rule, 10);  // healthy answers before any failure keep nothing
  EXPECT_EQ(table.size(), 0u);
  table.unhealthy("h/a", rule, 10);
  EXPECT_TRUE(table.open("h/a", rule, 11));
  EXPECT_FALSE(table.open("h/b", rule, 11));
  table.healthy("h/a", rule, 12);
  EXPECT_EQ(table.size(), 0u);
  EXPECT_FALSE(table.open("h/a", rule, 13));
}

TEST(BreakerTable, AFloodOfFailingPathsStaysBoundedAndKeepsOpenBreakers) {
  BreakerTable table(160);  // 10 keys per shard
  BreakerRule rule{2, 1, 300};
  table.unhealthy("victim", rule, 1000);
  table.unhealthy("victim", rule, 1000);  // tripped
  for (int i = 0; i < 100000; ++i) table.unhealthy("random/" + std::to_string(i), rule, 1001);
  EXPECT_LE(table.size(), 160u);
  EXPECT_TRUE(table.open("victim", rule, 1002));
}

}  // namespace
}  // namespace portico::plugins
