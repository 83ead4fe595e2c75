#include "metrics/histogram.hpp"

#include <gtest/gtest.h>

#include <limits>

using namespace portico::metrics;

namespace {

HistogramTotals totals_of(const Histogram& histogram) {
  HistogramTotals totals;
  histogram.add_to(totals);
  return totals;
}

}  // namespace

TEST(Histogram, BoundsAreInclusiveUpperLimits) {
  EXPECT_EQ(latency_bucket_index(0), 0u);
  EXPECT_EQ(latency_bucket_index(0.001), 0u);
  EXPECT_EQ(latency_bucket_index(0.0011), 1u);
  EXPECT_EQ(latency_bucket_index(0.002), 1u);
  EXPECT_EQ(latency_bucket_index(0.3), 8u);  // le 0.5
  EXPECT_EQ(latency_bucket_index(1), 9u);
  EXPECT_EQ(latency_bucket_index(60), 14u);
  EXPECT_EQ(latency_bucket_index(60.001), 15u);  // +Inf
  EXPECT_EQ(latency_bucket_index(1e6), kLatencyBucketCount - 1);
}

TEST(Histogram, ObservationsLandInTheirBucketAndTheSumInMicroseconds) {
  Histogram histogram;
  histogram.observe(0.0015);
  histogram.observe(0.25);
  histogram.observe(0.25);
  histogram.observe(120);
  HistogramTotals totals = totals_of(histogram);
  EXPECT_EQ(totals.buckets[1], 1u);   // le 0.002
  EXPECT_EQ(totals.buckets[8], 2u);   // le 0.5
  EXPECT_EQ(totals.buckets[15], 1u);  // +Inf
  EXPECT_EQ(totals.count(), 4u);
  EXPECT_EQ(totals.sum_us, 1'500u + 250'000u + 250'000u + 120'000'000u);
  EXPECT_DOUBLE_EQ(totals.sum_seconds(), 120.5015);
}

TEST(Histogram, NegativeAndNanDurationsCountAsZero) {
  Histogram histogram;
  histogram.observe(-3);
  histogram.observe(std::numeric_limits<double>::quiet_NaN());
  HistogramTotals totals = totals_of(histogram);
  EXPECT_EQ(totals.buckets[0], 2u);
  EXPECT_EQ(totals.sum_us, 0u);
}

TEST(Histogram, InfiniteDurationIsCappedNotUndefined) {
  Histogram histogram;
  histogram.observe(std::numeric_limits<double>::infinity());
  HistogramTotals totals = totals_of(histogram);
  EXPECT_EQ(totals.buckets[kLatencyBucketCount - 1], 1u);
  EXPECT_EQ(totals.sum_us, static_cast<uint64_t>(kMaxObservedSeconds * 1e6));
}

TEST(Histogram, TotalsAddBucketByBucket) {
  Histogram fast;
  Histogram slow;
  fast.observe(0.001);
  fast.observe(0.004);
  slow.observe(0.004);
  slow.observe(7);
  HistogramTotals totals;
  fast.add_to(totals);
  slow.add_to(totals);
  EXPECT_EQ(totals.buckets[0], 1u);
  EXPECT_EQ(totals.buckets[2], 2u);   // le 0.005
  EXPECT_EQ(totals.buckets[12], 1u);  // le 10
  EXPECT_EQ(totals.count(), 4u);
  EXPECT_EQ(totals.sum_us, 1'000u + 4'000u + 4'000u + 7'000'000u);

  HistogramTotals doubled = totals;
  doubled += totals;
  EXPECT_EQ(doubled.count(), 8u);
  EXPECT_EQ(doubled.buckets[2], 4u);
  EXPECT_EQ(doubled.sum_us, 2 * totals.sum_us);
}
