#include "plugins/waf/scanner.hpp"

#include <gtest/gtest.h>

#include <thread>

using namespace portico::plugins::waf;
using nlohmann::json;
using portico::config::Errors;

namespace {

std::shared_ptr<const Policy> compile(const std::string& conf) {
  Errors errors;
  auto policy = Policy::compile(json::parse(conf), "plugins.waf", errors);
  EXPECT_TRUE(errors.empty()) << errors.to_string();
  return policy;
}

const char* kUserRules = R"({"rulesets": [], "headers": ["X-Trace"], "max_body": 64, "rules": [
    {"id": "evil-path", "pattern": "/evil\\b", "targets": ["uri"]},
    {"id": "evil-arg", "pattern": "evil=1", "targets": ["args"]},
    {"id": "hdr", "pattern": "badbot", "targets": ["headers"]},
    {"id": "cookie", "pattern": "admin=true", "targets": ["cookies"]},
    {"id": "body", "pattern": "attack", "targets": ["body"]},
    {"id": "watch", "pattern": "suspicious", "action": "log"},
    {"id": "watch2", "pattern": "odd", "action": "log"}]})";

}  // namespace

TEST(WafScanner, RulesOnlyMatchTheirTargets) {
  auto policy = compile(kUserRules);
  ASSERT_TRUE(policy);
  auto blocker = [&](auto&& scan) {
    Scanner s(*policy);
    scan(s);
    return s.blocked() ? s.blocking_rule()->id + "@" + std::string(target_name(s.blocking_target()))
                       : "";
  };
  EXPECT_EQ(blocker([](Scanner& s) { s.scan_uri("/evil"); }), "evil-path@uri");
  EXPECT_EQ(blocker([](Scanner& s) { s.scan_query("evil=1"); }), "evil-arg@args");
  EXPECT_EQ(blocker([](Scanner& s) { s.scan_uri("/devil=1"); }), "");
  EXPECT_EQ(blocker([](Scanner& s) { s.scan_query("q=/evil"); }), "");
  EXPECT_EQ(blocker([](Scanner& s) { s.scan_header("x-trace", "BadBot/1.0"); }), "hdr@headers");
  EXPECT_EQ(blocker([](Scanner& s) { s.scan_header("User-Agent", "badbot"); }), "");  // not chosen
  EXPECT_EQ(blocker([](Scanner& s) { s.scan_header("Cookie", "a=1; admin=true"); }),
            "cookie@cookies");
  EXPECT_EQ(blocker([](Scanner& s) { s.scan_header("X-Trace", "admin=true"); }), "");
  EXPECT_EQ(blocker([](Scanner& s) { s.scan_body("text/plain", "an attack"); }), "body@body");
  EXPECT_EQ(blocker([](Scanner& s) { s.scan_query("attack"); }), "");
}

TEST(WafScanner, LogRulesAreReportedOnceAndCountedWithoutBlocking) {
  auto policy = compile(kUserRules);
  ASSERT_TRUE(policy);
  Scanner s(*policy);
  EXPECT_TRUE(s.scan_uri("/suspicious"));
  EXPECT_TRUE(s.scan_query("a=suspicious&b=odd"));
  EXPECT_TRUE(s.scan_header("X-Trace", "suspicious"));
  EXPECT_FALSE(s.blocked());
  ASSERT_EQ(s.logged().size(), 2u);
  EXPECT_EQ(policy->rules()[s.logged()[0].rule].id, "watch");
  EXPECT_EQ(s.logged()[0].target, Target::Uri);
  EXPECT_EQ(policy->rules()[s.logged()[1].rule].id, "watch2");
  EXPECT_EQ(policy->matches(5), 1u);  // one request, counted once
  EXPECT_EQ(policy->matches(6), 1u);
}

TEST(WafScanner, ABlockStopsTheScanAndIsCounted) {
  auto policy = compile(kUserRules);
  ASSERT_TRUE(policy);
  Scanner s(*policy);
  EXPECT_FALSE(s.scan_uri("/evil"));
  EXPECT_FALSE(s.scan_query("suspicious"));  // not scanned any more
  EXPECT_TRUE(s.logged().empty());
  EXPECT_EQ(s.blocking_rule()->id, "evil-path");
  EXPECT_EQ(policy->matches(0), 1u);
}

TEST(WafScanner, BodyBeyondMaxBodyIsNotScanned) {
  auto policy = compile(kUserRules);  // max_body 64
  ASSERT_TRUE(policy);
  const std::string padding(60, 'x');
  Scanner whole(*policy);
  EXPECT_TRUE(whole.scan_body("text/plain", padding + "attack"));
  Scanner streamed(*policy);
  streamed.begin_body("text/plain");
  EXPECT_TRUE(streamed.feed_body(padding));
  EXPECT_TRUE(streamed.feed_body("attack"));
  EXPECT_TRUE(streamed.end_body());
  Scanner inside(*policy);
  EXPECT_FALSE(inside.scan_body("text/plain", padding.substr(0, 50) + "attack"));
}

TEST(WafScanner, StreamedBodyMatchesAcrossChunksAndStopsEarly) {
  auto policy = compile(R"({"max_body": "1m"})");
  ASSERT_TRUE(policy);
  Scanner s(*policy);
  s.begin_body("application/json");
  EXPECT_TRUE(s.feed_body(R"({"a":"sys)"));
  EXPECT_TRUE(s.feed_body(R"(tem\u00)"));
  EXPECT_FALSE(s.feed_body(R"(28'id')"));  // blocked here, before the body ends
  EXPECT_EQ(s.blocking_rule()->id, "php-system");
  EXPECT_EQ(s.blocking_target(), Target::Body);
  EXPECT_FALSE(s.feed_body("more"));
  EXPECT_FALSE(s.end_body());
}

TEST(WafScanner, EndOfBodyCompletesHeldEscapesAndEndAnchoredMatches) {
  auto policy = compile(R"({"rulesets": [], "rules": [{"id": "tail", "pattern": "ab\\b"}]})");
  ASSERT_TRUE(policy);
  Scanner s(*policy);
  s.begin_body("application/x-www-form-urlencoded");
  EXPECT_TRUE(s.feed_body("x=a%6"));
  EXPECT_TRUE(s.feed_body("2"));  // "ab" is complete, but \b needs what follows: the end
  EXPECT_FALSE(s.end_body());
  EXPECT_EQ(s.blocking_rule()->id, "tail");
}

TEST(WafScanner, UnfinishedStreamsAreReleased) {
  auto policy = compile("{}");
  ASSERT_TRUE(policy);
  for (int i = 0; i < 1000; ++i) {  // leaks would show under ASan/valgrind
    Scanner s(*policy);
    s.begin_body("application/json");
    s.feed_body(R"({"a": "b)");
  }
}

TEST(WafScanner, BodyIsSkippedWhenThePolicyDoesNotScanIt) {
  auto policy = compile(R"({"max_body": 0})");
  ASSERT_TRUE(policy);
  Scanner s(*policy);
  EXPECT_TRUE(s.scan_body("text/plain", "system('id')"));
  s.begin_body("text/plain");
  EXPECT_TRUE(s.feed_body("system('id')"));
  EXPECT_TRUE(s.end_body());
  EXPECT_FALSE(s.blocked());
}

TEST(WafScanner, BodyDecodingFollowsContentTypeAndSniffsJson) {
  EXPECT_EQ(body_decoding("application/x-www-form-urlencoded; charset=UTF-8", ""), Decoding::Form);
  EXPECT_EQ(body_decoding("Application/JSON", ""), Decoding::Json);
  EXPECT_EQ(body_decoding("application/vnd.api+json", ""), Decoding::Json);
  EXPECT_EQ(body_decoding("text/plain", "  \n{\"a\":1}"), Decoding::Json);
  EXPECT_EQ(body_decoding("", "[1,2]"), Decoding::Json);
  EXPECT_EQ(body_decoding("multipart/form-data; boundary=x", "--x\r\n"), Decoding::Url);
  // JSON sent as a form (curl -d), or behind a byte order mark: read as JSON too.
  EXPECT_EQ(body_decoding("application/x-www-form-urlencoded", "{\"a\":1}"), Decoding::JsonForm);
  EXPECT_EQ(body_decoding("text/plain", "\xEF\xBB\xBF{\"a\":1}"), Decoding::Json);
}

TEST(WafScanner, WorkerThreadsEachGetScratchForNewerPolicies) {
  auto first = compile("{}");
  std::thread([&] {
    Scanner s(*first);
    EXPECT_FALSE(s.scan_query("x=system('id')"));
    // A policy compiled after this thread's scratch was made: the scratch must grow.
    auto later = compile(R"({"rules": [{"id": "big", "pattern": "(a|b|c){20}[0-9]{30}zz"}]})");
    Scanner t(*later);
    EXPECT_FALSE(t.scan_query(std::string(20, 'a') + std::string(30, '1') + "zz"));
    EXPECT_FALSE(t.failed());
    EXPECT_EQ(t.blocking_rule()->id, "big");
  }).join();
}

// The plugin scans the head in one batched call: each match must still count only for the
// target it falls in, exactly as value-by-value scanning does.
TEST(WafScanner, BatchedHeadAttributesMatchesToTheirTargets) {
  auto policy = compile(kUserRules);
  ASSERT_TRUE(policy);
  auto batched = [&](std::string_view path, std::string_view query, std::string_view name,
                     std::string_view value) {
    Scanner s(*policy);
    s.begin_head();
    s.scan_uri(path);
    s.scan_query(query);
    s.scan_header(name, value);
    s.end_head();
    return s.blocked() ? s.blocking_rule()->id + "@" + std::string(target_name(s.blocking_target()))
                       : "";
  };
  EXPECT_EQ(batched("/evil", "a=1", "X-Trace", "ok"), "evil-path@uri");
  EXPECT_EQ(batched("/fine", "evil=1", "X-Trace", "ok"), "evil-arg@args");
  EXPECT_EQ(batched("/devil=1", "q=/evil", "X-Trace", "ok"), "");  // each in the wrong target
  EXPECT_EQ(batched("/fine", "a=1", "X-Trace", "BadBot/1.0"), "hdr@headers");
  EXPECT_EQ(batched("/fine", "a=1", "Cookie", "admin=true"), "cookie@cookies");
  EXPECT_EQ(batched("/fine", "admin=true", "X-Trace", "evil=1"), "");
  EXPECT_EQ(batched("/fine", "", "", ""), "");
}
