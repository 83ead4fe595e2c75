#include "plugins/trace/b3.hpp"

#include <gtest/gtest.h>

namespace portico::plugins::trace {
namespace {

constexpr std::string_view kTrace128 = "80f198ee56343ba864fe8b2a57d3eff7";
constexpr std::string_view kSpan = "e457b5a2e4d86bd1";
constexpr std::string_view kParent = "05e3ac9a4f6e3b90";

TEST(B3, IdsAreHexOfTheirLengthLowerCased) {
  EXPECT_EQ(b3_id("463AC35C9F6413AD", true), "463ac35c9f6413ad");  // a 64-bit trace id
  EXPECT_EQ(b3_id(kTrace128, true), std::string(kTrace128));
  EXPECT_FALSE(b3_id(kTrace128, false));  // span ids are 64-bit
  EXPECT_FALSE(b3_id("463ac35c9f6413a", true));
  EXPECT_FALSE(b3_id("463ac35c9f6413ag", true));
  EXPECT_FALSE(b3_id("0000000000000000", true));  // Zipkin refuses all-zero ids
  EXPECT_FALSE(b3_id(std::string(32, '0'), true));
  EXPECT_FALSE(b3_id("0000000000000000", false));
}

TEST(B3, SingleHeaderWithEveryPart) {
  auto c = parse_b3_single(std::string(kTrace128) + "-" + std::string(kSpan) + "-1-" +
                           std::string(kParent));
  ASSERT_TRUE(c);
  EXPECT_EQ(c->trace_id, kTrace128);
  EXPECT_EQ(c->span_id, kSpan);
  EXPECT_EQ(c->parent_id, kParent);
  EXPECT_EQ(c->sampled, true);
  EXPECT_FALSE(c->debug);
}

TEST(B3, SingleHeaderDecisionsAndDebug) {
  auto only_no = parse_b3_single("0");
  ASSERT_TRUE(only_no);
  EXPECT_EQ(only_no->sampled, false);
  EXPECT_TRUE(only_no->trace_id.empty());
  auto debug = parse_b3_single(std::string(kTrace128) + "-" + std::string(kSpan) + "-d");
  ASSERT_TRUE(debug);
  EXPECT_TRUE(debug->debug);
  EXPECT_EQ(debug->sampled, true);
  auto unsaid = parse_b3_single(std::string(kTrace128) + "-" + std::string(kSpan));
  ASSERT_TRUE(unsaid);
  EXPECT_FALSE(unsaid->sampled);
}

TEST(B3, SingleHeaderWithoutASpanIsRefusedBadIdsStartANewTrace) {
  EXPECT_FALSE(parse_b3_single(kTrace128));  // APISIX: 400
  EXPECT_FALSE(parse_b3_single("x"));
  EXPECT_FALSE(parse_b3_single("true"));  // alone, only 0, 1 or d
  auto empty_span = parse_b3_single(std::string(kTrace128) + "--1");
  ASSERT_TRUE(empty_span);  // an invalid (empty) id: a new trace, not a 400
  EXPECT_TRUE(empty_span->trace_id.empty());
  EXPECT_EQ(empty_span->sampled, true);
  // The parent is the rest: a fifth field makes it invalid.
  auto five = parse_b3_single(std::string(kTrace128) + "-" + std::string(kSpan) + "-1-" +
                              std::string(kParent) + "-junk");
  ASSERT_TRUE(five);
  EXPECT_TRUE(five->trace_id.empty());
  auto bad = parse_b3_single("nothex-" + std::string(kSpan) + "-1");
  ASSERT_TRUE(bad);
  EXPECT_TRUE(bad->trace_id.empty());
  EXPECT_EQ(bad->sampled, true);  // the decision still counts
}

TEST(B3, MultiHeaders) {
  auto c = parse_b3_multi(kTrace128, kSpan, "", "true");
  EXPECT_EQ(c.trace_id, kTrace128);
  EXPECT_EQ(c.parent_id, "");
  EXPECT_EQ(c.sampled, true);
  EXPECT_EQ(parse_b3_multi("", "", "", "0").sampled, false);
  EXPECT_FALSE(parse_b3_multi("", "", "", "").sampled);
  EXPECT_TRUE(parse_b3_multi(kTrace128, "short", "", "1").trace_id.empty());
  EXPECT_TRUE(parse_b3_multi(kTrace128, kSpan, "bad", "1").trace_id.empty());
  EXPECT_FALSE(parse_b3_multi("", "", "", "d").sampled);  // "d" is the single header's
  // A trace id without a span id stays the caller's trace, with no parent (APISIX).
  auto no_span = parse_b3_multi(kTrace128, "", "", "");
  EXPECT_EQ(no_span.trace_id, kTrace128);
  EXPECT_EQ(no_span.span_id, "");
  EXPECT_TRUE(parse_b3_multi("0000000000000000", kSpan, "", "1").trace_id.empty());
}

}  // namespace
}  // namespace portico::plugins::trace
