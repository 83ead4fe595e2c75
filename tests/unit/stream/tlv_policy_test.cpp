#include "stream/tlv_policy.hpp"

#include <gtest/gtest.h>

#include "stream/tlv_filter.hpp"

namespace portico::stream {
namespace {

using config::Errors;
using config::json;

std::vector<std::string> error_paths(const json& conf) {
  Errors errors;
  parse_tlv_protocol(&conf, "conf", errors);
  std::vector<std::string> out;
  for (const auto& e : errors.list()) out.push_back(e.path);
  std::sort(out.begin(), out.end());
  return out;
}

TEST(CmdSet, ValuesHexStringsAndRangesMerge) {
  Errors errors;
  CmdSet s = parse_cmd_set(json::parse(R"([16385, "0x4002", "0x5000-0x5fff", "0x6000-24577"])"),
                           "cmds", errors);
  EXPECT_TRUE(errors.empty()) << errors.to_string();
  EXPECT_TRUE(s.contains(0x4001));
  EXPECT_TRUE(s.contains(0x4002));
  EXPECT_FALSE(s.contains(0x4003));
  EXPECT_TRUE(s.contains(0x5abc));
  EXPECT_TRUE(s.contains(0x6001));
  EXPECT_FALSE(s.contains(0x6002));
  ASSERT_EQ(s.ranges().size(), 2u);  // 0x4001-0x4002 and 0x5000-0x6001
}

TEST(CmdSet, BadItemsNameTheirPosition) {
  Errors errors;
  parse_cmd_set(json::parse(R"([1, "0x5-0x1", "zz", -3, "0x"])"), "cmds", errors);
  std::vector<std::string> paths;
  for (const auto& e : errors.list()) paths.push_back(e.path);
  EXPECT_EQ(paths, (std::vector<std::string>{"cmds[1]", "cmds[2]", "cmds[3]", "cmds[4]"}));
}

TEST(TlvProtocolConfig, DefaultsWithoutConf) {
  Errors errors;
  auto c = parse_tlv_protocol(nullptr, "conf", errors);
  EXPECT_TRUE(errors.empty());
  EXPECT_EQ(c->framing, TlvFraming{});
  EXPECT_FALSE(c->heartbeat_local);
  EXPECT_FALSE(c->per_connection.enabled());
  EXPECT_EQ(c->idle_timeout, 180);
}

TEST(TlvProtocolConfig, ReadsEveryField) {
  Errors errors;
  json conf = json::parse(R"({
    "framing": {"max_body": "64k"}, "idle_timeout": "90s", "stall_timeout": "5s",
    "heartbeat": {"cmd": "0x9001", "answer_locally": true},
    "rate_limit": {"per_connection": {"rate": 10, "burst": 5}, "per_user": {"rate": 2},
                   "action": "drop", "status": 430},
    "commands": {"allow": ["0x1000-0x9fff"], "deny": [28673], "action": "reply", "status": 403},
    "routes": [{"cmds": ["0x4001"], "upstream_id": "chat", "hash_on": "to"}],
    "send_proxy_protocol": true})");
  auto c = parse_tlv_protocol(&conf, "conf", errors);
  ASSERT_TRUE(errors.empty()) << errors.to_string();
  EXPECT_EQ(c->framing.max_body, 64u * 1024);
  EXPECT_EQ(c->idle_timeout, 90);
  EXPECT_EQ(c->stall_timeout, 5);
  EXPECT_TRUE(c->heartbeat_local);
  EXPECT_EQ(c->per_connection.rate_milli, 10000);
  EXPECT_EQ(c->per_connection.burst_milli, 5000);
  EXPECT_EQ(c->per_user.rate_milli, 2000);
  EXPECT_FALSE(c->rate_refusal.reply);
  EXPECT_EQ(c->rate_refusal.status, 430u);
  EXPECT_TRUE(c->deny.contains(0x7001));
  ASSERT_EQ(c->routes.size(), 1u);
  EXPECT_EQ(c->routes[0].upstream_id, "chat");
  EXPECT_TRUE(c->routes[0].hash_on_to);
  EXPECT_TRUE(c->send_proxy_protocol);
  // Named commands (metric labels): heartbeat, the deny value, the sub-route cmd, and replies.
  for (uint32_t cmd : {0x9001u, 0x9002u, 0x7001u, 0x4001u, 0x4002u})
    EXPECT_TRUE(std::binary_search(c->named_cmds.begin(), c->named_cmds.end(), cmd)) << cmd;
  EXPECT_FALSE(std::binary_search(c->named_cmds.begin(), c->named_cmds.end(), 0x1234u));
}

// Rates are counted in thousandths of a frame: one that would round to none is an error, not a
// limit silently switched off.
TEST(TlvProtocolConfig, RatesTooSmallToCountAreErrors) {
  EXPECT_EQ(error_paths(json::parse(R"({"rate_limit": {"per_connection": {"rate": 0.0005},
                                                      "per_user": {"rate": 0}}})")),
            (std::vector<std::string>{"conf.rate_limit.per_connection.rate",
                                      "conf.rate_limit.per_user.rate"}));
  EXPECT_EQ(error_paths(json::parse(R"({"rate_limit": {"per_connection": {"rate": 0.001}}})")),
            std::vector<std::string>{});
}

TEST(TlvProtocolConfig, ErrorsNameTheirField) {
  EXPECT_EQ(error_paths(json::parse(R"({
    "idle_timeout": "soon", "heartbeat": {"cmd": "x", "answer": true},
    "rate_limit": {"per_connection": {"burst": 1}, "action": "delay"},
    "commands": {"allow": "0x1"}, "routes": [{"upstream_id": "u"}, {"cmds": [1], "hash_on": "from"}],
    "framing": {"header_size": 0}, "extra": 1})")),
            (std::vector<std::string>{
                "conf.commands.allow", "conf.extra", "conf.framing.header_size",
                "conf.heartbeat.answer", "conf.heartbeat.cmd", "conf.idle_timeout",
                "conf.rate_limit.action", "conf.rate_limit.per_connection.rate",
                "conf.routes[0].cmds", "conf.routes[1].hash_on", "conf.routes[1].upstream"}));
}

CompiledStreamRoute route_with(const char* conf_text) {
  Errors errors;
  json conf = json::parse(conf_text);
  CompiledStreamRoute r;
  r.tlv = parse_tlv_protocol(&conf, "conf", errors);
  EXPECT_TRUE(errors.empty()) << errors.to_string();
  for (const auto& spec : r.tlv->routes) r.sub_routes.push_back({spec.cmds, nullptr, false});
  if (r.tlv->per_user.enabled()) r.user_buckets = std::make_shared<plugins::LeakyBucketTable>();
  return r;
}

TlvHeader frame(uint32_t cmd, uint64_t from = 0) {
  TlvHeader h;
  h.cmd = cmd;
  h.from = from;
  return h;
}

TEST(JudgeFrame, HeartbeatIsAnsweredLocallyBeforeAnyLimit) {
  auto r = route_with(R"({"heartbeat": {"answer_locally": true},
                          "rate_limit": {"per_connection": {"rate": 1}},
                          "commands": {"allow": [1]}})");
  plugins::BucketState b;
  for (int i = 0; i < 5; ++i) {
    auto v = judge_frame(r, frame(0x9001), b, 1000);
    EXPECT_EQ(v.action, FrameVerdict::Action::Reply);
    EXPECT_TRUE(v.heartbeat);
    EXPECT_EQ(v.status, 0u);
  }
}

TEST(JudgeFrame, DeniedCommandsDoNotUseTheRate) {
  auto r = route_with(R"({"commands": {"deny": ["0x7000-0x7fff"], "status": 403},
                          "rate_limit": {"per_connection": {"rate": 1, "burst": 0}}})");
  plugins::BucketState b;
  auto v = judge_frame(r, frame(0x7001), b, 1000);
  EXPECT_EQ(v.action, FrameVerdict::Action::Reply);
  EXPECT_EQ(v.status, 403u);
  EXPECT_EQ(v.why, metrics::StreamRefusal::CommandDenied);
  EXPECT_EQ(judge_frame(r, frame(0x4001), b, 1000).action, FrameVerdict::Action::Forward);
  v = judge_frame(r, frame(0x4001), b, 1000);  // second within the same second: over the rate
  EXPECT_EQ(v.action, FrameVerdict::Action::Reply);
  EXPECT_EQ(v.status, 429u);
  EXPECT_EQ(v.why, metrics::StreamRefusal::RateLimitConnection);
  EXPECT_EQ(judge_frame(r, frame(0x4001), b, 2001).action, FrameVerdict::Action::Forward);
}

TEST(JudgeFrame, PerUserLimitIsSharedAndSkipsAnonymousFrames) {
  auto r = route_with(R"({"rate_limit": {"per_user": {"rate": 1}, "action": "drop"}})");
  plugins::BucketState b1, b2;
  EXPECT_EQ(judge_frame(r, frame(0x4001, 7), b1, 1000).action, FrameVerdict::Action::Forward);
  auto v = judge_frame(r, frame(0x4001, 7), b2, 1000);  // another connection, same user
  EXPECT_EQ(v.action, FrameVerdict::Action::Drop);
  EXPECT_EQ(v.why, metrics::StreamRefusal::RateLimitUser);
  EXPECT_EQ(judge_frame(r, frame(0x4001, 8), b2, 1000).action, FrameVerdict::Action::Forward);
  EXPECT_EQ(judge_frame(r, frame(0x4001, 0), b2, 1000).action, FrameVerdict::Action::Forward);
  EXPECT_EQ(judge_frame(r, frame(0x4001, 0), b2, 1000).action, FrameVerdict::Action::Forward);
}

TEST(JudgeFrame, SubRoutesByCommandFirstMatchWins) {
  auto r = route_with(R"({"routes": [{"cmds": ["0x4001"], "upstream_id": "a"},
                                     {"cmds": ["0x4000-0x4fff"], "upstream_id": "b"}]})");
  plugins::BucketState b;
  EXPECT_EQ(judge_frame(r, frame(0x4001), b, 1).sub_route, 0);
  EXPECT_EQ(judge_frame(r, frame(0x4003), b, 1).sub_route, 1);
  EXPECT_EQ(judge_frame(r, frame(0x1001), b, 1).sub_route, -1);
}

}  // namespace
}  // namespace portico::stream
