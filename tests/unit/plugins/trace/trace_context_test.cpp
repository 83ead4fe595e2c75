#include "plugins/trace/trace_context.hpp"

#include <gtest/gtest.h>

namespace portico::plugins::trace {
namespace {

constexpr std::string_view kTrace = "4bf92f3577b34da6a3ce929d0e0e4736";
constexpr std::string_view kSpan = "00f067aa0ba902b7";

std::string header(std::string_view version, std::string_view trace, std::string_view span,
                   std::string_view flags) {
  return std::string(version) + "-" + std::string(trace) + "-" + std::string(span) + "-" +
         std::string(flags);
}

TEST(TraceParent, ParsesTheSpecExampleAndFormatsItBack) {
  auto p = parse_traceparent(header("00", kTrace, kSpan, "01"));
  ASSERT_TRUE(p);
  EXPECT_TRUE(p->sampled());
  EXPECT_EQ(p->trace_id[0], 0x4b);
  EXPECT_EQ(p->trace_id[15], 0x36);
  EXPECT_EQ(p->span_id[7], 0xb7);
  EXPECT_EQ(format_traceparent(p->trace_id, p->span_id, p->flags),
            header("00", kTrace, kSpan, "01"));
}

TEST(TraceParent, KeepsUnknownFlagBitsAndTrimsBlanks) {
  auto p = parse_traceparent(" \t" + header("00", kTrace, kSpan, "ff") + " ");
  ASSERT_TRUE(p);
  EXPECT_EQ(p->flags, 0xff);
  EXPECT_TRUE(p->sampled());
  EXPECT_FALSE(parse_traceparent(header("00", kTrace, kSpan, "02"))->sampled());
}

TEST(TraceParent, RefusesWhatTheSpecRefuses) {
  std::string zeros_trace(32, '0'), zeros_span(16, '0');
  for (const std::string& bad : {
           std::string(), header("00", kTrace, kSpan, "0"),                // short
           header("00", kTrace, kSpan, "01") + "-extra",                   // version 00: exactly 55
           header("ff", kTrace, kSpan, "01"),                              // forbidden version
           header("0g", kTrace, kSpan, "01"),                              // not hex
           header("00", "4BF92F3577B34DA6A3CE929D0E0E4736", kSpan, "01"),  // upper case
           header("00", zeros_trace, kSpan, "01"),                         // invalid trace id
           header("00", kTrace, zeros_span, "01"),                         // invalid span id
           header("00", kTrace.substr(1), std::string(kSpan) + "0", "01"),  // misplaced dash
           header("01", kTrace, kSpan, "01") + "x",  // later version: '-' next
       })
    EXPECT_FALSE(parse_traceparent(bad)) << bad;
}

TEST(TraceParent, ALaterVersionMayCarryMoreFields) {
  EXPECT_TRUE(parse_traceparent(header("01", kTrace, kSpan, "01") + "-what-comes-next"));
  EXPECT_TRUE(parse_traceparent(header("cc", kTrace, kSpan, "00")));
}

TEST(TraceIds, RandomIdsAreNeverZeroAndDiffer) {
  TraceId a = random_trace_id(), b = random_trace_id();
  EXPECT_NE(a, b);
  EXPECT_NE(a, TraceId{});
  EXPECT_NE(random_span_id(), SpanId{});
}

TEST(TraceIds, FromRequestIdsOf32HexDigitsOrUuids) {
  auto plain = trace_id_from_request_id("4BF92F3577B34DA6A3CE929D0E0E4736");
  ASSERT_TRUE(plain);
  EXPECT_EQ(format_traceparent(*plain, SpanId{1}, 0).substr(3, 32), kTrace);
  auto uuid = trace_id_from_request_id("4bf92f35-77b3-4da6-a3ce-929d0e0e4736");
  ASSERT_TRUE(uuid);
  EXPECT_EQ(*uuid, *plain);
  for (std::string_view bad :
       {"", "abc", "4bf92f35-77b3-4da6-a3ce929d0e0e4736-", "4bf92f3577b34da6a3ce929d0e0e473z",
        "00000000-0000-0000-0000-000000000000", "4bf92f3577b34da6-a3ce-929d0e0e4736xx"})
    EXPECT_FALSE(trace_id_from_request_id(bad)) << bad;
}

TraceId trace_starting(uint32_t first_four) {
  TraceId t{};
  t[0] = static_cast<uint8_t>(first_four >> 24);
  t[1] = static_cast<uint8_t>(first_four >> 16);
  t[2] = static_cast<uint8_t>(first_four >> 8);
  t[3] = static_cast<uint8_t>(first_four);
  t[15] = 1;
  return t;
}

TEST(Sampler, RatioReadsTheFirstFourBytesBigEndian) {
  Sampler s{Sampler::Kind::TraceIdRatio, 0.25};
  // The bound is 0.25 x 0xffffffff = 1073741823.75: below it sampled, from it on not.
  EXPECT_TRUE(s.sample(trace_starting(0), {}));
  EXPECT_TRUE(s.sample(trace_starting(0x3fffffff), {}));
  EXPECT_FALSE(s.sample(trace_starting(0x40000000), {}));
  EXPECT_FALSE(s.sample(trace_starting(0xffffffff), {}));
  // The caller's decision does not count.
  TraceParent unsampled{trace_starting(0), SpanId{1}, 0};
  EXPECT_TRUE(s.sample(unsampled.trace_id, unsampled));
  EXPECT_TRUE((Sampler{Sampler::Kind::TraceIdRatio, 1}).sample(trace_starting(0xffffffff), {}));
  EXPECT_FALSE((Sampler{Sampler::Kind::TraceIdRatio, 0}).sample(trace_starting(0), {}));
}

TEST(Sampler, ParentBasedFollowsTheCallerElseTheRoot) {
  Sampler s{Sampler::Kind::ParentBased, 0, Sampler::Kind::AlwaysOn};
  TraceId t = trace_starting(0xffffffff);
  EXPECT_TRUE(s.sample(t, {}));
  EXPECT_FALSE(s.sample(t, TraceParent{t, SpanId{1}, 0}));
  s.root = Sampler::Kind::AlwaysOff;
  EXPECT_FALSE(s.sample(t, {}));
  EXPECT_TRUE(s.sample(t, TraceParent{t, SpanId{1}, 1}));
  s.root = Sampler::Kind::TraceIdRatio;
  s.root_fraction = 0.5;
  EXPECT_TRUE(s.sample(trace_starting(1), {}));
  EXPECT_FALSE(s.sample(t, {}));
}

TEST(Sampler, NamesAsApisixSpellsThem) {
  EXPECT_EQ(sampler_kind("always_on", false), Sampler::Kind::AlwaysOn);
  EXPECT_EQ(sampler_kind("parent_base", true), Sampler::Kind::ParentBased);
  EXPECT_FALSE(sampler_kind("parent_base", false));  // not as parent_base's root
  EXPECT_FALSE(sampler_kind("parent_based", true));
}

}  // namespace
}  // namespace portico::plugins::trace
